"""What only the Redis knowledge store has to prove: atomicity under concurrency and crashes, persistence,
notifications and failures, on real redis-server processes started by the fixtures."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from knowledge_bundles import fingerprint, make_bundle, row_digest
from redis_server import RedisServer, free_port, redis_server, redis_url, start_or_skip  # noqa: F401 - fixtures

from modsnet.data.bundle import Bundle
from modsnet.data.graph import Cost, DatasetNode, InteractionRecord, QueryRecord, apply_delta
from modsnet.runtime.errors import ConfigError, ModsnetError, Unavailable
from services.knowledge.backends.redis import CHANNEL, RETIRED_GRACE_S, RedisKnowledgeStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[RedisKnowledgeStore]:
    backend = RedisKnowledgeStore(request.getfixturevalue("redis_url"))
    yield backend
    backend.close()


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A plain client of the same (emptied) server, to look at the keys behind the store's back."""
    with redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True) as plain:
        yield plain


def _run_all(*targets: Callable[[], Any]) -> list[Any]:
    """Run the callables in threads released together; their results or the exceptions they raised."""
    results: list[Any] = [None] * len(targets)
    start = threading.Barrier(len(targets))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = targets[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _imported_digest(store: RedisKnowledgeStore, name: str) -> str:
    """The checksum of the library's imported interaction rows, as export gives them back."""
    rows = store.export_bundle(name)[0].interactions.rows
    return row_digest(
        [
            {k: v for k, v in r.items() if k != "provenance"}
            for r in rows
            if r.get("provenance", "imported") == "imported"
        ]
    )


def _check_whole(store: RedisKnowledgeStore, name: str) -> None:
    snap = store.snapshot(name)
    models, datasets = {m.model_id for m in snap.models}, {d.dataset_id for d in snap.datasets}
    assert all(i.model_id in models and i.dataset_id in datasets for i in snap.interactions)
    assert (snap.library.interactions, snap.library.datasets) == (len(snap.interactions), len(snap.datasets))


def test_feedback_while_reimporting_stays_whole_and_serial(store: RedisKnowledgeStore) -> None:
    bundles = [make_bundle("live", interactions=3000, models=30, seed=seed) for seed in (1, 2)]
    digests = {row_digest(b.interactions.rows) for b in bundles}
    store.import_bundle(bundles[0], blob_id="blob-0", replace=False, artifacts={})
    feedback_versions: list[int] = []
    import_versions: list[int] = []
    snapshots_seen: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def give_feedback(worker: int) -> None:
        for i in range(25):
            dataset_id = f"q-{worker}-{i}"
            node = DatasetNode("live", dataset_id, {"origin": "feedback"}, {"x": 1.0}, "t/v1", fingerprint(dataset_id))
            record = InteractionRecord(f"m{i % 30}", dataset_id, 0.5, provenance="feedback")
            version, _ = store.add_interactions("live", [node], [record])
            with lock:
                feedback_versions.append(version)

    def reimport() -> None:
        for i in range(1, 6):
            info, _ = store.import_bundle(bundles[i % 2], blob_id=f"blob-{i}", replace=True, artifacts={})
            with lock:
                import_versions.append(info.graph_version)

    def read() -> None:
        # Every feedback adds one dataset and one interaction: any consistent snapshot shows as many of each.
        while not stop.is_set():
            snap = store.snapshot("live")
            feedback = sum(1 for i in snap.interactions if i.provenance == "feedback")
            assert feedback == sum(1 for d in snap.datasets if d.dataset_id.startswith("q-"))
            assert len(snap.interactions) - feedback == 3000
            snapshots_seen.append(snap.graph_version)

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                failures.append(exc)

        return run

    reader = threading.Thread(target=guarded(read))
    reader.start()
    _run_all(*(guarded(functools.partial(give_feedback, w)) for w in range(3)), guarded(reimport))
    stop.set()
    reader.join()
    assert not failures, failures
    # One graph version per change, never shared, none skipped: the changes were serial.
    assert sorted(feedback_versions + import_versions) == list(range(2, 2 + 75 + 5))
    assert snapshots_seen == sorted(snapshots_seen) and len(snapshots_seen) > 1
    _check_whole(store, "live")
    # What survives is the last import, whole, plus exactly the feedback that came after it.
    last = max(import_versions)
    snap = store.snapshot("live")
    assert snap.graph_version == 2 + 75 + 4
    assert sum(1 for i in snap.interactions if i.provenance == "feedback") == sum(v > last for v in feedback_versions)
    assert _imported_digest(store, "live") in digests


@pytest.mark.slow
@pytest.mark.parametrize("replace", [False, True])
def test_two_concurrent_imports_never_mix(store: RedisKnowledgeStore, replace: bool) -> None:
    bundles = [make_bundle("race", interactions=20_000, seed=seed) for seed in (1, 2)]
    digests = [row_digest(b.interactions.rows) for b in bundles]
    version = 0
    for round_ in range(3):
        blobs = [f"blob-{round_}-{k}" for k in range(2)]
        results = _run_all(
            *(
                lambda b=b, blob=blob: store.import_bundle(b, blob_id=blob, replace=replace, artifacts={})
                for b, blob in zip(bundles, blobs, strict=True)
            )
        )
        if replace:  # both win, one after the other: the last one is what stays
            assert all(not isinstance(r, BaseException) for r in results), results
            version += 2
        else:
            assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "tuple"]
            version += 1
        assert store.graph_version("race") == version
        winner = store.get_library("race").bundle_blob_id
        assert _imported_digest(store, "race") == digests[int(winner[-1])]
        _check_whole(store, "race")
        store.delete_library("race")
        version += 1


def test_a_replaced_version_stays_readable_for_the_grace_and_staging_leaves_nothing(
    store: RedisKnowledgeStore, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_bundle(make_bundle("lib", seed=1), blob_id="one", replace=False, artifacts={})
    store.import_bundle(make_bundle("lib", seed=2), blob_id="two", replace=True, artifacts={})
    assert 0 < client.ttl("modsnet:{lib:lib}:v1:interactions") <= RETIRED_GRACE_S
    assert client.ttl("modsnet:{lib:lib}:v2:interactions") == -1
    before = set(client.keys("*"))

    def fail(*args: object) -> None:
        raise Unavailable("switch failed")

    monkeypatch.setattr(RedisKnowledgeStore, "_switch", fail)
    with pytest.raises(Unavailable):
        store.import_bundle(make_bundle("lib", seed=3), blob_id="three", replace=True, artifacts={})
    assert set(client.keys("*")) == before  # the staged version was removed (and would have expired)
    assert store.get_library("lib").bundle_blob_id == "two"


def test_subscribers_learn_every_new_version(store: RedisKnowledgeStore, client: redis.Redis) -> None:
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # listening before anything is published
    store.import_bundle(make_bundle("news"), blob_id="one", replace=False, artifacts={})
    store.add_interactions("news", [], [InteractionRecord("m0", "d0", 0.5, provenance="feedback")])
    store.delete_library("news")
    messages: list[str] = []
    deadline = time.monotonic() + 10
    while len(messages) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message:
            messages.append(message["data"])
    assert messages == ["news 1", "news 2", "news 3"]
    pubsub.close()


def test_refuses_a_redis_that_persists_nothing(tmp_path: Path) -> None:
    server = start_or_skip(tmp_path / "bare", persistent=False)
    try:
        with pytest.raises(ConfigError, match="appendonly yes"):
            RedisKnowledgeStore(server.url)
        RedisKnowledgeStore(server.url, allow_no_persistence=True).check()
    finally:
        server.stop()


@pytest.mark.parametrize("persistent", [True, False])
def test_persistence_is_read_from_info_when_config_is_disabled(tmp_path: Path, persistent: bool) -> None:
    server = start_or_skip(tmp_path / "managed", persistent=persistent, extra_args=["--rename-command", "CONFIG", ""])
    try:
        if persistent:
            RedisKnowledgeStore(server.url).check()
        else:
            with pytest.raises(ConfigError, match="INFO persistence"):
                RedisKnowledgeStore(server.url)
    finally:
        server.stop()


def test_unreachable_redis_is_unavailable_and_the_password_stays_secret() -> None:
    port = free_port()
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}") as raised:
        RedisKnowledgeStore(f"redis://:s3cret@127.0.0.1:{port}/0", socket_timeout=2)
    assert "s3cret" not in str(raised.value)


def _kill_mid_import(server: RedisServer, store: RedisKnowledgeStore, bundle: Bundle, fraction: float) -> Any:
    """Start importing `bundle` as version 2 of library `big`, SIGKILL redis once `fraction` of it is staged."""
    outcome: list[Any] = [None]

    def run() -> None:
        try:
            outcome[0] = store.import_bundle(bundle, blob_id="new", replace=True, artifacts={})
        except ModsnetError as exc:
            outcome[0] = exc

    watcher = server.client()
    thread = threading.Thread(target=run)
    thread.start()
    target = int(fraction * len(bundle.interactions.rows))
    while thread.is_alive() and watcher.llen("modsnet:{lib:big}:v2:interactions") < target:
        time.sleep(0.002)
    server.kill()
    thread.join(timeout=60)
    watcher.close()
    return outcome[0]


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.05, 0.9])
def test_a_crash_mid_import_leaves_the_old_version_or_the_new_whole(tmp_path: Path, fraction: float) -> None:
    server = start_or_skip(tmp_path / "crash")
    try:
        old, new = make_bundle("big", interactions=2_000, seed=1), make_bundle("big", interactions=200_000, seed=2)
        store = RedisKnowledgeStore(server.url)
        store.import_bundle(old, blob_id="old", replace=False, artifacts={})
        outcome = _kill_mid_import(server, store, new, fraction)
        store.close()
        # killed while staging, the import failed; killed near the end, it may have switched just before
        assert isinstance(outcome, Unavailable if fraction < 0.5 else (Unavailable, tuple)), outcome
        server.restart()
        store = RedisKnowledgeStore(server.url)
        info = store.get_library("big")
        expected = {"old": (1, old), "new": (2, new)}[info.bundle_blob_id]
        assert info.graph_version == expected[0]
        assert info.interactions == len(expected[1].interactions.rows)
        assert _imported_digest(store, "big") == row_digest(expected[1].interactions.rows)
        _check_whole(store, "big")
        # Anything not part of the live version expires: a crash leaves no garbage that stays.
        with server.client() as client:
            live = f"modsnet:{{lib:big}}:v{1 if info.bundle_blob_id == 'old' else 2}:"
            lasting = {k for k in client.keys("*") if client.ttl(k) == -1 and not k.startswith(live)}
            assert lasting == {
                "modsnet:libraries",
                "modsnet:{lib:big}:current",
                "modsnet:{lib:big}:graph_version",
                "modsnet:{lib:big}:data_seq",
            }
        # and the store works on: the interrupted import can simply run again
        info, _ = store.import_bundle(new, blob_id="new", replace=True, artifacts={})
        assert info.interactions == 200_000
        store.close()
    finally:
        server.stop()


def test_acknowledged_writes_survive_a_kill(tmp_path: Path) -> None:
    """appendfsync always: what the store acknowledged is on disk before the reply, so SIGKILL loses none of it."""
    server = start_or_skip(tmp_path / "durable")
    try:
        store = RedisKnowledgeStore(server.url)
        store.import_bundle(make_bundle("kept"), blob_id="one", replace=False, artifacts={})
        versions = [
            store.add_interactions("kept", [], [InteractionRecord("m1", "d1", i / 10, provenance="feedback")])[0]
            for i in range(5)
        ]
        store.log_query(QueryRecord("q-1", "kept", "c" * 64, "x.csv", "t/v1", {}, "tabular", ["m1"], versions[-1]))
        server.kill()
        store.close()
        server.restart()
        store = RedisKnowledgeStore(server.url)
        snap = store.snapshot("kept")
        assert snap.graph_version == versions[-1] == 6
        assert [i.score for i in snap.interactions if i.provenance == "feedback"] == [i / 10 for i in range(5)]
        assert store.get_query("q-1").graph_version == 6
        store.close()
    finally:
        server.stop()


def test_concurrent_tries_of_one_request_apply_once(store: RedisKnowledgeStore) -> None:
    """A retry racing its first attempt (a lost reply resent at once): the requests hash is watched, so
    whichever commits second sees the first and writes nothing."""
    store.import_bundle(make_bundle("race"), blob_id="a" * 64, replace=False, artifacts={})
    record = InteractionRecord("m1", "d0", 0.5, provenance="feedback")
    results = _run_all(*[functools.partial(store.add_interactions, "race", [], [record], "one") for _ in range(8)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert {added for _, added in results} == {1} and len({version for version, _ in results}) == 1
    assert store.get_library("race").interactions == 25 and store.get_model("race", "m1").interactions == 7


def test_a_library_from_before_marks_gets_deltas_from_its_next_write(
    store: RedisKnowledgeStore, client: redis.Redis
) -> None:
    """A data version imported before marks were kept (its marks hash absent): no delta reaches back before the
    upgrade; its first write after it becomes the base, and deltas from there are the whole graph again."""
    store.import_bundle(make_bundle("old"), blob_id="a" * 64, replace=False, artifacts={})
    record = InteractionRecord("m1", "d0", 0.5, Cost(train_seconds=2.0), "feedback")
    store.add_interactions("old", [], [record], "before")
    (marks,) = client.keys("modsnet:{lib:old}:v*:marks")
    client.delete(marks)  # the library as the code before left it
    assert store.delta("old", 1) is None and store.delta("old", 2) is None
    version, _ = store.add_interactions("old", [], [record], "first-after")
    assert store.delta("old", 2) is None  # still before the first mark
    held = store.snapshot("old")
    assert held.graph_version == version
    store.add_interactions("old", [], [record], "second-after")
    delta = store.delta("old", held.graph_version)
    assert delta is not None and apply_delta(held, delta) == store.snapshot("old")


def test_only_the_last_versions_keep_their_mark(
    store: RedisKnowledgeStore, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steady feedback does not grow the marks hash for good: past the window a reader gets the whole graph,
    within it the delta as before."""
    import services.knowledge.backends.redis as backend

    monkeypatch.setattr(backend, "MARKS_KEPT", 3)
    store.import_bundle(make_bundle("busy"), blob_id="a" * 64, replace=False, artifacts={})
    held = {}
    for i in range(8):
        held[store.snapshot("busy").graph_version] = store.snapshot("busy")
        store.add_interactions("busy", [], [InteractionRecord("m1", "d0", i / 10, provenance="feedback")], f"r{i}")
    (marks,) = client.keys("modsnet:{lib:busy}:v*:marks")
    now = store.snapshot("busy").graph_version
    assert sorted(int(v) for v in client.hkeys(marks) if v != "base") == [now - 2, now - 1, now]
    for version, snapshot in held.items():
        delta = store.delta("busy", version)
        if version > now - 3:
            assert delta is not None and apply_delta(snapshot, delta) == store.snapshot("busy")
        else:
            assert delta is None


def _round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts what the stores send to Redis: one packed send is one round trip (a pipeline is one)."""
    sent = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return sent


def test_a_feedback_costs_a_few_round_trips_however_many_checks(
    store: RedisKnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine each round trip waits for Redis and then for the GIL: a feedback's write is WATCH,
    one pipeline of reads, MULTI/EXEC, and a read of the library is one MULTI, once the store has seen it."""
    store.import_bundle(make_bundle("trips"), blob_id="a" * 64, replace=False, artifacts={})
    # The store has seen the live version, and its pool holds the two connections a write uses (a new one's
    # handshake is a few round trips of its own, once).
    store.add_interactions("trips", [], [InteractionRecord("m1", "d0", 0.5, provenance="feedback")], "r0")
    sent = _round_trips(monkeypatch)
    node = DatasetNode("trips", "q-new", {"origin": "feedback"}, {"x": 1.0}, "t/v1", fingerprint("q-new"))
    store.add_interactions("trips", [node], [InteractionRecord("m1", "q-new", 0.5, provenance="feedback")], "r1")
    assert sent[0] == 3
    sent[0] = 0
    store.get_library("trips")
    store.request_records("trips", "r1")
    assert store.find_dataset(fingerprint("q-new"), "trips").dataset_id == "q-new"  # two reads
    assert sent[0] == 4


def test_a_store_behind_another_replicas_import_or_delete_reads_and_writes_the_live_version(
    store: RedisKnowledgeStore, request: pytest.FixtureRequest
) -> None:
    """The live version a store remembers is a hint: another knowledge replica's re-import or delete is seen
    by the next read or write, which never touches the replaced version."""
    other = RedisKnowledgeStore(request.getfixturevalue("redis_url"))
    try:
        first, second = make_bundle("moved", seed=1), make_bundle("moved", seed=2)
        store.import_bundle(first, blob_id="a" * 64, replace=False, artifacts={})
        assert store.get_library("moved").bundle_blob_id == "a" * 64
        other.import_bundle(second, blob_id="b" * 64, replace=True, artifacts={})
        record = InteractionRecord(second.interactions.rows[0]["model_id"], second.datasets.rows[0]["dataset_id"], 0.5)
        version, added = store.add_interactions("moved", [], [record], "after-replace")
        assert added == 1 and version == other.graph_version("moved")
        assert store.get_library("moved").bundle_blob_id == "b" * 64
        assert other.request_records("moved", "after-replace")[1] == "applied"
        other.delete_library("moved")
        with pytest.raises(ModsnetError) as refused:
            store.add_interactions("moved", [], [record], "after-delete")
        assert refused.value.code == "NOT_FOUND"
        with pytest.raises(ModsnetError) as gone:
            store.get_library("moved")
        assert gone.value.code == "NOT_FOUND"
    finally:
        other.close()


def test_a_snapshot_reads_a_long_list_in_short_slices_one_per_round_trip(
    store: RedisKnowledgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis serves one client's pipeline before anyone else's: a snapshot's reads of a long interactions list
    go in slices of at most READ_SLICE items, one per round trip, so a feedback never waits behind the whole."""
    import re

    from services.knowledge.backends.redis import READ_SLICE

    store.import_bundle(
        make_bundle("long", interactions=5_000, models=100), blob_id="a" * 64, replace=False, artifacts={}
    )
    slices: list[list[tuple[int, int]]] = []
    send = redis.connection.AbstractConnection.send_packed_command
    lrange = re.compile(rb"\$6\r\nLRANGE\r\n\$\d+\r\n[^\r]*\r\n\$\d+\r\n(-?\d+)\r\n\$\d+\r\n(-?\d+)\r\n")

    def recorded(self: Any, command: Any, check_health: bool = True) -> None:
        packed = b"".join(command) if isinstance(command, list) else bytes(command)
        found = [(int(a), int(b)) for a, b in lrange.findall(packed)]
        if found:
            slices.append(found)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", recorded)
    assert len(store.snapshot("long").interactions) == 5_000
    assert all(len(sent) == 1 for sent in slices), slices
    assert all(stop - start + 1 <= READ_SLICE for ((start, stop),) in slices), slices
    assert sum(stop - start + 1 for ((start, stop),) in slices if stop >= 0) >= 5_000
