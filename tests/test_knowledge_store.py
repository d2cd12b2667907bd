"""Conformance suite of the knowledge store: every backend must pass it (the SQLite file, and Redis on a real
redis-server started by a fixture)."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import astuple
from pathlib import Path

import pytest
from knowledge_bundles import fingerprint, make_bundle
from redis_server import redis_cluster, redis_cluster_url, redis_server, redis_url  # noqa: F401 - fixtures used by name

from modsnet.data.bundle import Bundle, canonical, pack_bundle, read_bundle
from modsnet.data.graph import Cost, DatasetNode, InteractionRecord, LibraryInfo, QueryRecord, apply_delta
from modsnet.runtime.errors import AlreadyExists, InvalidArgument, NotFound
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.backends.sqlite import (
    _BULK_REBUILT,
    _BY_REQUEST,
    _INTERACTION_INDEXES,
    SqliteKnowledgeStore,
)
from services.knowledge.store import KnowledgeStore
from services.recommender.evaluation import graph_from_bundle

BLOB_A = "a" * 64
BLOB_B = "b" * 64


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    backend: KnowledgeStore
    if request.param == "redis":
        backend = RedisKnowledgeStore(request.getfixturevalue("redis_url"))
    elif request.param == "redis-cluster":  # three primaries: a library's keys on one, the query log's on another
        backend = RedisKnowledgeStore(request.getfixturevalue("redis_cluster_url"))
    else:
        backend = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    yield backend
    backend.close()


def test_import_counts_and_snapshot(store: KnowledgeStore, synth_bundle: Path) -> None:
    info, unchanged = store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    assert not unchanged
    assert (info.models, info.datasets, info.interactions, info.graph_version) == (6, 10, 60, 1)
    snap = store.snapshot("synth")
    assert snap.graph_version == 1 and len(snap.interactions) == 60
    d0 = next(d for d in snap.datasets if d.dataset_id == "d0")
    assert "log_rows" in d0.features and d0.interactions == 6
    m0 = next(m for m in snap.models if m.model_id == "m0")
    assert m0.cost.train_seconds == pytest.approx(0.1) and m0.metadata["family"] == "up"


def test_same_blob_again_is_unchanged_and_another_needs_replace(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    _, unchanged = store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    assert unchanged and store.graph_version("synth") == 1
    with pytest.raises(AlreadyExists, match="synth"):
        store.import_bundle(bundle, blob_id=BLOB_B, replace=False, artifacts={})
    info, _ = store.import_bundle(bundle, blob_id=BLOB_B, replace=True, artifacts={})
    assert info.graph_version == 2 and info.interactions == 60


def test_versions_only_increase_even_across_delete(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    store.delete_library("synth")
    with pytest.raises(NotFound):
        store.graph_version("synth")
    info, _ = store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    assert info.graph_version == 3


def test_graph_head_is_what_get_library_says(store: KnowledgeStore, synth_bundle: Path) -> None:
    def head_of(info: LibraryInfo) -> tuple[int, str, float]:
        return info.graph_version, info.bundle_blob_id, info.imported_unix

    with pytest.raises(NotFound):
        store.graph_head("synth")
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    assert store.graph_head("synth") == head_of(store.get_library("synth"))
    store.import_bundle(bundle, blob_id=BLOB_B, replace=True, artifacts={})
    store.add_interactions("synth", [], [InteractionRecord("m0", "d1", 0.5, Cost(), "feedback")], "req-1")
    head = store.graph_head("synth")
    assert head == head_of(store.get_library("synth")) and head[:2] == (3, BLOB_B)
    assert store.graph_version("synth") == 3
    store.delete_library("synth")
    with pytest.raises(NotFound):
        store.graph_head("synth")


def test_export_round_trips(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    exported, artifacts = store.export_bundle("synth")
    assert canonical(exported) == canonical(bundle) and artifacts == {}


def test_artifacts_are_recorded_by_path(store: KnowledgeStore, synth_bundle: Path) -> None:
    store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={"m0.onnx": BLOB_B})
    assert store.artifact_blob("synth", "m0.onnx") == BLOB_B
    assert store.export_bundle("synth")[1] == {"m0.onnx": BLOB_B}
    with pytest.raises(NotFound, match=r"m1\.onnx"):
        store.artifact_blob("synth", "m1.onnx")
    with pytest.raises(NotFound):
        store.artifact_blob("nope", "m0.onnx")


def test_add_interactions_is_all_or_nothing(store: KnowledgeStore, synth_bundle: Path) -> None:
    store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    new = DatasetNode("synth", "q1", {"origin": "feedback"}, {"log_rows": 2.0}, "tabular/v1", "f" * 64)
    good = InteractionRecord("m1", "q1", 0.9, provenance="feedback")
    bad = InteractionRecord("ghost", "q1", 0.9, provenance="feedback")
    with pytest.raises(NotFound, match="ghost"):
        store.add_interactions("synth", [new], [good, bad])
    assert store.graph_version("synth") == 1
    with pytest.raises(NotFound):
        store.get_dataset("synth", "q1")
    version, added = store.add_interactions("synth", [new], [good])
    assert (version, added) == (2, 1)
    assert store.find_dataset("f" * 64).dataset_id == "q1"
    exported, _ = store.export_bundle("synth")
    assert "provenance" in exported.interactions.columns


def test_query_log(store: KnowledgeStore, synth_bundle: Path) -> None:
    store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    record = QueryRecord("q-1", "synth", "c" * 64, "x.csv", "tabular/v1", {"log_rows": 1.0}, "tabular", ["m1"], 1)
    store.log_query(record)
    assert store.get_query("q-1").answer_model_ids == ["m1"]
    with pytest.raises(AlreadyExists):
        store.log_query(record)
    with pytest.raises(NotFound):
        store.get_query("q-2")


def test_readers_never_see_a_half_imported_library(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(store.snapshot("synth").interactions))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(10):
        store.import_bundle(bundle, blob_id=f"{i:064d}", replace=True, artifacts={})
    stop.set()
    reader.join()
    assert seen == {60}


class _BreaksOff(list):  # type: ignore[type-arg]
    """Rows that break off before their last one, as a bundle's streamed file that cannot be read to its end."""

    def __iter__(self) -> Iterator[dict[str, str]]:
        yield from list.__iter__(self[:-1])
        raise ValueError("the interactions broke off before their last row")


def _broken(name: str, interactions: int, seed: int = 0) -> Bundle:
    """A bundle whose interactions break off at the last row: an import of it fails after writing the rest."""
    bundle = make_bundle(name, interactions=interactions, seed=seed)
    bundle.interactions.rows = _BreaksOff(bundle.interactions.rows)
    return bundle


def test_a_failed_import_leaves_nothing_visible(store: KnowledgeStore) -> None:
    """An import that fails at its last record (a new library, or one replacing a library) leaves the store as
    it was: no new library, the replaced one whole at its version, and the store takes the next writes as before.
    (In SQLite an import larger than the table loads without its indexes, made again after: the failed one's
    rollback brings them back, `test_sqlite_a_large_import_makes_the_indexes_after_its_rows`.)"""
    store.import_bundle(make_bundle("keep", interactions=12), blob_id=BLOB_A, replace=False, artifacts={})
    before = store.snapshot("keep"), store.list_libraries(), store.export_bundle("keep")
    with pytest.raises(ValueError):
        store.import_bundle(_broken("new", 40), blob_id=BLOB_B, replace=False, artifacts={})
    with pytest.raises(ValueError):
        store.import_bundle(_broken("keep", 40, seed=1), blob_id=BLOB_B, replace=True, artifacts={})
    with pytest.raises(NotFound):
        store.get_library("new")
    with pytest.raises(NotFound):
        store.snapshot("new")
    assert (store.snapshot("keep"), store.list_libraries(), store.export_bundle("keep")) == before
    info, _ = store.import_bundle(make_bundle("new", interactions=40), blob_id=BLOB_B, replace=False, artifacts={})
    assert info.interactions == 40 and len(store.snapshot("new").interactions) == 40
    added = InteractionRecord("m1", "d1", 0.5, provenance="feedback")
    assert store.add_interactions("keep", [], [added], "req-1")[0] == before[0].graph_version + 1
    assert store.get_library("new") == info and store.get_library("keep").interactions == 13


def test_every_kind_of_row_round_trips(store: KnowledgeStore) -> None:
    bundle = make_bundle("rich", interactions=30)
    info, _ = store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={"m0.onnx": BLOB_B})
    assert (info.models, info.datasets, info.interactions) == (5, 6, 30)
    exported, artifacts = store.export_bundle("rich")
    assert canonical(exported) == canonical(bundle) and artifacts == {"m0.onnx": BLOB_B}
    assert exported.meta == bundle.meta
    snap = store.snapshot("rich")
    assert len(snap.similarities) == len(bundle.similarity.rows if bundle.similarity else [])
    d0, d1 = (next(d for d in snap.datasets if d.dataset_id == i) for i in ("d0", "d1"))
    assert d0.feature_set == "extra,tabular" and d0.features == {"log_rows": pytest.approx(4.60517), "skew": 0.0}
    assert d1.feature_set == "extra,tabular" and "skew" not in d1.features
    assert d0.fingerprint == fingerprint("d0", salt="rich")


def test_nodes_costs_and_fingerprints(store: KnowledgeStore) -> None:
    for name in ("lib-b", "lib-a"):
        store.import_bundle(make_bundle(name), blob_id=BLOB_A, replace=False, artifacts={})
    model = store.get_model("lib-a", "m1")
    # m1 has 6 records of train 0.2 s; inference is blank in every fifth record, which the mean leaves out
    assert model.interactions == 6 and model.metadata == {"family": "down, odd"}
    assert astuple(model.cost) == pytest.approx((0.2, 0.01, 2000.0))
    assert store.get_dataset("lib-a", "d2").interactions == 4
    shared = make_bundle("lib-c", extras=False)
    shared.datasets.columns.append("fingerprint")
    for row in shared.datasets.rows:
        row["fingerprint"] = fingerprint("d3", salt="lib-a") if row["dataset_id"] in ("d1", "d3") else ""
    store.import_bundle(shared, blob_id=BLOB_A, replace=False, artifacts={})
    found = store.find_dataset(fingerprint("d3", salt="lib-a"))
    assert (found.library, found.dataset_id) == ("lib-a", "d3")
    found = store.find_dataset(fingerprint("d3", salt="lib-a"), "lib-c")
    assert (found.library, found.dataset_id) == ("lib-c", "d1")
    for elsewhere in ("lib-b", "ghost"):
        with pytest.raises(NotFound, match="no dataset with fingerprint"):
            store.find_dataset(fingerprint("d3", salt="lib-a"), elsewhere)
    with pytest.raises(InvalidArgument):
        store.find_dataset("")
    for call in (
        lambda: store.get_model("lib-a", "ghost"),
        lambda: store.get_model("ghost", "m1"),
        lambda: store.get_dataset("lib-a", "ghost"),
        lambda: store.snapshot("ghost"),
        lambda: store.export_bundle("ghost"),
    ):
        with pytest.raises(NotFound):
            call()


def test_feedback_counts_and_costs_match_the_snapshot(store: KnowledgeStore) -> None:
    store.import_bundle(make_bundle("fb"), blob_id=BLOB_A, replace=False, artifacts={})
    metadata = {"origin": "feedback", "filename": "x.csv"}
    new = DatasetNode("fb", "q1", metadata, {"log_rows": 2.0}, "tabular/v1", "f" * 64)
    records = [
        InteractionRecord("m1", "q1", 0.5, Cost(train_seconds=1.0, inference_seconds=0.0), "feedback"),
        InteractionRecord("m1", "d0", 0.75, Cost(memory_bytes=500.0), "probe"),
    ]
    version, added = store.add_interactions("fb", [new, new], records)
    assert (version, added) == (2, 2)
    # the same node again is no change; another fingerprint under its id is refused, and nothing is written
    assert store.add_interactions("fb", [new], [])[0] == 3
    clash = DatasetNode("fb", "q1", {}, fingerprint="e" * 64)
    with pytest.raises(AlreadyExists, match="q1"):
        store.add_interactions("fb", [clash], [InteractionRecord("m0", "q1", 0.1)])
    model = store.get_model("fb", "m1")
    # train: six imported 0.2 s and one 1.0 s; a zero cost given in feedback is no measurement
    assert model.interactions == 8
    assert model.cost.train_seconds == pytest.approx((6 * 0.2 + 1.0) / 7)
    assert model.cost.inference_seconds == pytest.approx(0.01)
    assert model.cost.memory_bytes == pytest.approx((6 * 2000 + 500) / 7)
    snap = store.snapshot("fb")
    assert snap.graph_version == 3 and snap.library.interactions == 26 == len(snap.interactions)
    in_snapshot = next(m for m in snap.models if m.model_id == "m1")
    assert in_snapshot.interactions == model.interactions
    assert astuple(in_snapshot.cost) == pytest.approx(astuple(model.cost))
    q1 = store.get_dataset("fb", "q1")
    assert q1 == next(d for d in snap.datasets if d.dataset_id == "q1")
    assert (q1.interactions, q1.features, q1.metadata["filename"]) == (1, {"log_rows": 2.0}, "x.csv")
    assert [i.provenance for i in snap.interactions[-2:]] == ["feedback", "probe"]
    with pytest.raises(NotFound):
        store.add_interactions("ghost", [], [records[1]])


def test_listed_counts_follow_every_write(store: KnowledgeStore) -> None:
    # SQLite keeps the counts of a committed graph version: every write that changes one must show at once.
    def counts(name: str) -> tuple[int, int, int, int]:
        (info,) = [i for i in store.list_libraries() if i.name == name]
        assert info == store.get_library(name)
        return info.models, info.datasets, info.interactions, info.graph_version

    store.import_bundle(make_bundle("c"), blob_id=BLOB_A, replace=False, artifacts={})
    models, datasets, interactions, _ = start = counts("c")
    new = DatasetNode("c", "q1", {"origin": "feedback"}, {"log_rows": 2.0}, "tabular/v1", "f" * 64)
    store.add_interactions("c", [new], [InteractionRecord("m0", "q1", 0.5, provenance="feedback")], "req-1")
    if isinstance(store, SqliteKnowledgeStore):  # carried by the write itself: the next listing scans nothing
        assert store._counts["c"] == (2, (models, datasets + 1, interactions + 1))
    assert counts("c") == (models, datasets + 1, interactions + 1, 2)
    with pytest.raises(InvalidArgument):  # refused: its rolled-back version is not the next write's counts
        store.add_interactions("c", [], [InteractionRecord("m0", "q1", math.nan, provenance="feedback")], "req-2")
    store.add_interactions("c", [], [InteractionRecord("m1", "q1", 0.6, provenance="feedback")], "req-3")
    assert counts("c") == (models, datasets + 1, interactions + 2, 3)
    store.retract("c", "req-3", "tester")
    assert counts("c") == (models, datasets + 1, interactions + 1, 4)
    store.delete_library("c")
    store.import_bundle(make_bundle("c"), blob_id=BLOB_B, replace=False, artifacts={})
    assert counts("c")[:3] == start[:3] and counts("c")[3] > 4


def test_delete_and_list(store: KnowledgeStore) -> None:
    for name in ("zeta", "alpha", "mid"):
        store.import_bundle(make_bundle(name), blob_id=BLOB_A, replace=False, artifacts={})
    assert [i.name for i in store.list_libraries()] == ["alpha", "mid", "zeta"]
    store.delete_library("mid")
    assert [i.name for i in store.list_libraries()] == ["alpha", "zeta"]
    with pytest.raises(NotFound):
        store.delete_library("mid")
    with pytest.raises(NotFound):
        store.get_library("mid")
    assert store.get_library("alpha").graph_version == 1


def test_query_log_lists_newest_first_and_purges(store: KnowledgeStore) -> None:
    def record(query_id: str, library: str, logged: float) -> QueryRecord:
        return QueryRecord(query_id, library, "c" * 64, "x.csv", "tabular/v1", {"a": 1.0}, "tabular", ["m1"], 1, logged)

    for query_id, library, logged in [("q1", "a", 100.0), ("q2", "b", 200.0), ("q3", "a", 300.0), ("q4", "b", 300.0)]:
        store.log_query(record(query_id, library, logged))
    assert [q.query_id for q in store.list_queries()] == ["q4", "q3", "q2", "q1"]
    assert [q.query_id for q in store.list_queries("a")] == ["q3", "q1"]
    assert store.list_queries("b", limit=1) == [record("q4", "b", 300.0)]
    assert store.list_queries("nobody") == []
    with pytest.raises(InvalidArgument):
        store.list_queries(limit=0)
    assert store.purge_queries(older_than_unix=200.0) == 1
    assert [q.query_id for q in store.list_queries("a")] == ["q3"]
    with pytest.raises(NotFound):
        store.get_query("q1")
    assert store.purge_queries() == 3
    assert store.list_queries() == [] and store.purge_queries() == 0
    store.log_query(record("q1", "a", 100.0))  # a purged id can be logged again
    assert store.get_query("q1").logged_unix == 100.0


# ----------------------------------------------------------------------------------------------------
# The evaluation's graph (modsnet.data.graph_build) is what every store serves


def _graph_bundle() -> Bundle:
    """make_bundle's extras (similarities, probes, two feature tables, empty cost cells) and a few more shapes."""
    bundle = make_bundle("built", interactions=60, models=6, seed=3)
    bundle.models.rows.append({"model_id": "m-unused", "family": "up"})  # no record: cost 0, count 0
    bundle.datasets.rows.append({"dataset_id": "d-bare", "n_rows": "7", "fingerprint": ""})  # no features
    for k, row in enumerate(bundle.interactions.rows):
        if row["model_id"] == "m1" and k % 4 == 1:
            row["train_seconds"] = ""  # m1: some records measured no train time
        if k % 9 == 0:
            row["memory_bytes"] = ""
    bundle.interactions.columns.append("provenance")
    for k, row in enumerate(bundle.interactions.rows):
        row["provenance"] = "feedback" if k % 7 == 0 else ""
    assert bundle.similarity is not None
    bundle.similarity.columns.append("similarity")
    for row in bundle.similarity.rows:
        row["similarity"] = ""
    bundle.similarity.rows.append({"dataset_a": "d0", "dataset_b": "d-bare", "distance": "", "similarity": "0.25"})
    return bundle


def _by_id(nodes: list, key: str) -> dict:  # type: ignore[type-arg]
    return {getattr(n, key): n for n in nodes}


def test_the_evaluation_graph_is_the_store_snapshot(store: KnowledgeStore) -> None:
    bundle = _graph_bundle()
    store.import_bundle(bundle, blob_id="c" * 64, replace=False, artifacts={})
    served = store.snapshot("built")
    built, probes = graph_from_bundle(bundle)

    def library(info: LibraryInfo) -> tuple:  # type: ignore[type-arg]
        return info.name, info.meta, info.models, info.datasets, info.interactions

    assert library(built.library) == library(served.library)
    assert bundle.probes is not None and len(probes) == len(bundle.probes.rows)

    built_models, served_models = _by_id(built.models, "model_id"), _by_id(served.models, "model_id")
    assert sorted(built_models) == sorted(served_models)
    for model_id, model in built_models.items():
        other = served_models[model_id]
        assert (model.metadata, model.interactions, model.artifact_blob_id) == (
            other.metadata,
            other.interactions,
            other.artifact_blob_id,
        )
        assert model.cost.train_seconds == pytest.approx(other.cost.train_seconds, rel=1e-12)
        assert model.cost.inference_seconds == pytest.approx(other.cost.inference_seconds, rel=1e-12)
        assert model.cost.memory_bytes == pytest.approx(other.cost.memory_bytes, rel=1e-12)
    assert built_models["m-unused"].cost == Cost() and built_models["m-unused"].interactions == 0

    assert _by_id(built.datasets, "dataset_id") == _by_id(served.datasets, "dataset_id")
    assert built.interactions == served.interactions  # import order, costs and provenance included
    assert sorted(built.similarities, key=repr) == sorted(served.similarities, key=repr)
    bare = _by_id(built.datasets, "dataset_id")["d-bare"]
    assert (bare.features, bare.feature_set) == ({}, "")
    assert any(s.dataset_b == "d-bare" and s.distance == pytest.approx(0.75) for s in built.similarities)


# -- validated, atomic, idempotent writes ----------------------------------------------------------------


def _state(store: KnowledgeStore, name: str) -> tuple[int, dict[str, bytes]]:
    return store.graph_version(name), canonical(store.export_bundle(name)[0])


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (InteractionRecord("m1", "d0", 0.5, Cost(train_seconds=-1.0, inference_seconds=math.nan), "feedback"), "cost"),
        (InteractionRecord("m1", "d0", 0.5, Cost(inference_seconds=math.nan), "feedback"), "cost.inference_seconds"),
        (InteractionRecord("m1", "d0", 0.5, Cost(memory_bytes=1e300), "feedback"), "cost.memory_bytes"),
        (InteractionRecord("m1", "d0", math.inf, provenance="feedback"), "score"),
        (InteractionRecord("m1", "d0", math.nan, provenance="feedback"), "score"),
        (InteractionRecord("m1", "d0", 0.5, provenance="rumour"), "provenance"),
    ],
)
def test_a_refused_write_changes_nothing(store: KnowledgeStore, bad: InteractionRecord, field: str) -> None:
    # Redis does not undo a MULTI's other commands when one fails (HINCRBYFLOAT of a NaN): checked before.
    store.import_bundle(make_bundle("w"), blob_id=BLOB_A, replace=False, artifacts={})
    before = _state(store, "w")
    new = DatasetNode("w", "q1", {"origin": "feedback"}, {"log_rows": 2.0}, "tabular/v1", "f" * 64)
    good = InteractionRecord("m0", "q1", 0.5, provenance="feedback")
    with pytest.raises(InvalidArgument, match=rf"interaction 1: {field}"):
        store.add_interactions("w", [new], [good, bad], "req-1")
    assert _state(store, "w") == before
    assert store.request_records("w", "req-1") == ([], "")
    assert store.add_interactions("w", [new], [good], "req-1") == (2, 1)  # the id was not used up


def test_a_retried_request_applies_once(store: KnowledgeStore) -> None:
    store.import_bundle(make_bundle("r"), blob_id=BLOB_A, replace=False, artifacts={})
    record = InteractionRecord("m1", "d0", 0.5, Cost(train_seconds=2.0), "feedback")
    assert store.add_interactions("r", [], [record, record], "req-1") == (2, 2)
    assert store.add_interactions("r", [], [record, record], "req-1") == (2, 2)
    assert store.get_library("r").interactions == 26 and store.get_model("r", "m1").interactions == 8
    stored, state = store.request_records("r", "req-1")
    assert state == "applied" and stored == [dataclasses.replace(record, request_id="req-1")] * 2
    assert store.add_interactions("r", [], [record], "req-2") == (3, 1)


def test_sqlite_finds_a_requests_records_by_its_index(tmp_path: Path) -> None:
    """Every feedback looks up its request id first (a retry is answered, not stored twice): by the partial
    index on request ids, not by scanning the library's records (27 ms a feedback on TabZoo's 52k)."""
    store = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    try:
        store.import_bundle(make_bundle("r"), blob_id=BLOB_A, replace=False, artifacts={})
        db = store._db()
        for statement in (
            f"SELECT row_json FROM interactions WHERE library = ? AND {_BY_REQUEST} ORDER BY id",
            f"DELETE FROM interactions WHERE library = ? AND {_BY_REQUEST}",
            f"SELECT id, row_json FROM interactions WHERE library = ? AND {_BY_REQUEST} AND quarantine != ''",
        ):
            plan = " ".join(str(row) for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", ("r", "req-1")))
            assert "USING INDEX interactions_request" in plan, (statement, plan)
        with pytest.raises(NotFound, match="ghost"):
            store.request_records("ghost", "req-1")
    finally:
        store.close()


def test_sqlite_a_large_import_makes_the_indexes_after_its_rows(tmp_path: Path) -> None:
    """An import bringing more records than the interactions table holds loads them without the table's two
    random-order indexes (by dataset, by model) and makes them once after its rows, in its one transaction (a sort,
    where inserting into them row by row was 64% of the 1M import); a smaller one inserts into the indexes as they
    are. Either way every index is there after, used by the reads, and a failed import's rollback brings back the
    ones it dropped."""
    store = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    try:
        db = store._db()
        (cache,) = db.execute("PRAGMA cache_size").fetchone()
        statements: list[str] = []
        db.set_trace_callback(statements.append)

        def indexes() -> set[str]:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'interactions'")
            return {r[0] for r in rows}

        def dropped() -> list[str]:
            return [s for s in statements if s.startswith("DROP INDEX")]

        every = set(_INTERACTION_INDEXES)
        assert indexes() == every
        with pytest.raises(ValueError):
            store.import_bundle(_broken("big", 40), blob_id=BLOB_A, replace=False, artifacts={})
        assert len(dropped()) == len(_BULK_REBUILT) and indexes() == every  # dropped, back with the rollback
        statements.clear()
        store.import_bundle(make_bundle("big", interactions=40), blob_id=BLOB_A, replace=False, artifacts={})
        inserted = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO interactions"))
        made = [i for i, s in enumerate(statements) if s.startswith("CREATE INDEX")]
        assert len(dropped()) == len(made) == len(_BULK_REBUILT) == 2 and min(made) > inserted
        assert indexes() == every
        statements.clear()
        store.import_bundle(make_bundle("small", interactions=12), blob_id=BLOB_B, replace=False, artifacts={})
        assert dropped() == [] and indexes() == every  # 12 records into 40: the indexes as they are
        db.set_trace_callback(None)
        for statement, index in (
            ("SELECT id FROM interactions WHERE library = ? AND dataset_id = ?", "interactions_dataset"),
            ("SELECT id FROM interactions WHERE library = ? AND model_id = ?", "interactions_model"),
        ):
            plan = " ".join(str(row) for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", ("big", "d1")))
            assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA cache_size").fetchone() == (cache,)  # the import's larger cache given back
        assert len(store.snapshot("big").interactions) == 40 and store.get_model("big", "m1").interactions > 0
    finally:
        store.close()


def test_quarantine_confirmation_and_retraction_are_audited(store: KnowledgeStore) -> None:
    store.import_bundle(make_bundle("q"), blob_id=BLOB_A, replace=False, artifacts={})
    m1, m2 = store.get_model("q", "m1"), store.get_model("q", "m2")
    held = InteractionRecord("m1", "d0", 0.9, Cost(train_seconds=5.0), "feedback", quarantine="far off")
    learned = InteractionRecord("m2", "d1", 0.4, Cost(train_seconds=3.0), "feedback")
    assert store.add_interactions("q", [], [held], "held")[0] == 2
    assert store.add_interactions("q", [], [learned], "ok")[0] == 3

    def consistent() -> list[InteractionRecord]:
        snap = store.snapshot("q")
        for model in snap.models:  # the nodes' counts and mean costs are those of the learned records
            assert store.get_model("q", model.model_id) == model
            assert model.interactions == sum(1 for r in snap.interactions if r.model_id == model.model_id)
        return [r for r in snap.interactions if r.request_id]

    # Held: stored, counted in the library and exported with its reason, but not learned from.
    assert consistent() == [dataclasses.replace(learned, request_id="ok")]
    assert store.get_model("q", "m1") == m1 and store.get_library("q").interactions == 26
    rows = store.export_bundle("q")[0].interactions
    assert "quarantine" in rows.columns and [r.get("quarantine", "") for r in rows.rows if r.get("request_id")] == [
        "far off",
        "",
    ]
    assert store.confirm("q", "held", "alice", "checked the run") == (4, 1)
    assert store.confirm("q", "held", "alice") == (4, 0)  # nothing more to release: no write
    assert [r.request_id for r in consistent()] == ["held", "ok"]
    assert store.get_model("q", "m1").cost.train_seconds == pytest.approx((6 * 0.2 + 5.0) / 7)
    assert store.request_records("q", "held") == (
        [dataclasses.replace(held, request_id="held", quarantine="")],
        "confirmed",
    )

    assert store.retract("q", "ok", "bob") == (5, 1)
    assert store.retract("q", "ok", "bob") == (5, 0)
    assert [r.request_id for r in consistent()] == ["held"]
    assert store.get_model("q", "m2") == m2 and store.get_library("q").interactions == 25
    assert store.add_interactions("q", [], [learned], "ok")[0] == 5  # a late retry does not bring it back
    assert all(r.get("request_id") != "ok" for r in store.export_bundle("q")[0].interactions.rows)
    with pytest.raises(NotFound, match="retracted"):
        store.confirm("q", "ok", "alice")
    for call in (lambda: store.retract("q", "ghost", "bob"), lambda: store.retract("ghost", "ok", "bob")):
        with pytest.raises(NotFound):
            call()
    entries = store.audit_log("q")
    assert [(e.action, e.principal, e.request_id, e.records, e.note) for e in entries] == [
        ("retract", "bob", "ok", 1, ""),
        ("confirm", "alice", "held", 1, "checked the run"),
    ]
    assert entries[0].unix >= entries[1].unix > 0 and store.audit_log("q", limit=1) == entries[:1]


def test_export_round_trips_after_any_accepted_writes(store: KnowledgeStore) -> None:
    """Random feedback (new datasets with features among it), quarantines, confirmations and retractions:
    the export imports back to the same graph and exports the same bundle."""
    rng = random.Random(7)
    store.import_bundle(make_bundle("rt"), blob_id=BLOB_A, replace=False, artifacts={})
    datasets = [d.dataset_id for d in store.snapshot("rt").datasets]
    requests: list[str] = []
    for step in range(30):
        action = rng.choice(["add", "add", "add", "retract", "confirm"]) if requests else "add"
        if action == "add":
            new = []
            if rng.random() < 0.3:
                features = {"log_rows": rng.uniform(1, 9), "skew": rng.gauss(0, 1)}
                node = DatasetNode(
                    "rt",
                    f"query-{step}",
                    {"origin": "feedback", "filename": f"f{step}.csv"},
                    features,
                    "tabular/v1",
                    fingerprint(f"q{step}"),
                )
                new, datasets = [node], [*datasets, node.dataset_id]
            records = [
                InteractionRecord(
                    f"m{rng.randrange(4)}",
                    rng.choice(datasets[-1:] if new else datasets),
                    round(rng.random(), 6),
                    Cost(train_seconds=rng.choice([0.0, 1.5]), memory_bytes=rng.choice([0.0, 4096.0])),
                    "feedback",
                    quarantine="far off" if rng.random() < 0.3 else "",
                )
                for _ in range(rng.randint(1, 2))
            ]
            store.add_interactions("rt", new, records, f"req-{step}")
            requests.append(f"req-{step}")
        elif action == "retract":
            store.retract("rt", rng.choice(requests), "bob")
        else:
            with suppress(NotFound):  # a retracted one
                store.confirm("rt", rng.choice(requests), "alice")
    before, (exported, _) = store.snapshot("rt"), store.export_bundle("rt")
    store.delete_library("rt")
    store.import_bundle(read_bundle(pack_bundle(exported)), blob_id=BLOB_B, replace=False, artifacts={})
    after = store.snapshot("rt")
    assert canonical(store.export_bundle("rt")[0]) == canonical(exported)

    # A CSV column is there for every row: a cell empty after the round trip was absent before. A bundle's
    # rows are in a canonical order (`bundle_members`), so records are compared in one order.
    def filled(nodes: list[DatasetNode]) -> list[DatasetNode]:
        return [dataclasses.replace(n, metadata={k: v for k, v in n.metadata.items() if v}) for n in nodes]

    def ordered(records: list[InteractionRecord]) -> list[InteractionRecord]:
        return sorted(records, key=lambda r: (r.dataset_id, r.model_id, r.request_id, r.score))

    assert (after.models, filled(after.datasets), ordered(after.interactions), after.similarities) == (
        before.models,
        filled(before.datasets),
        ordered(before.interactions),
        before.similarities,
    )
    assert after.library.interactions == before.library.interactions
    held = next(r["request_id"] for r in exported.interactions.rows if r.get("quarantine"))
    assert store.confirm("rt", held, "alice")[1] >= 1  # still held, still releasable after the round trip


def _feedback(rng: random.Random, k: int, known: list[str]) -> tuple[list[DatasetNode], list[InteractionRecord]]:
    """A random write: maybe a new dataset node (ids that sort before, among and after the imported ones), a few
    records on it and on known datasets, some quarantined, some costs left out, feedback and probes."""
    new = []
    if rng.random() < 0.6:
        dataset_id = rng.choice(["a", "d0", "d5", "q", "z"]) + f"-{k}"
        new.append(DatasetNode("dl", dataset_id, {"origin": "feedback"}, {"log_rows": float(k)}, "tabular/v1"))
        known.append(dataset_id)
    records = [
        InteractionRecord(
            f"m{rng.randrange(4)}",
            rng.choice(known[-2:] if new else known),
            rng.random(),
            Cost(train_seconds=rng.choice([0.0, 1.5]), memory_bytes=rng.choice([0.0, 2e3])),
            rng.choice(["feedback", "probe"]),
            quarantine="far off" if rng.random() < 0.2 else "",
        )
        for _ in range(rng.randrange(0 if new else 1, 4))
    ]
    return new, records


def test_a_delta_on_the_snapshot_it_starts_from_is_the_whole_graph(store: KnowledgeStore) -> None:
    """After each of many random writes, the change since the last version put on the last snapshot is the
    store's whole graph (nodes, their counts and mean costs, the records in order); so is the change since
    the import put on the first."""
    store.import_bundle(make_bundle("dl"), blob_id=BLOB_A, replace=False, artifacts={})
    rng = random.Random(7)
    first = held = store.snapshot("dl")
    known = [d.dataset_id for d in first.datasets]
    for k in range(15):
        new, records = _feedback(rng, k, known)
        store.add_interactions("dl", new, records, f"req-{k}")
        delta = store.delta("dl", held.graph_version)
        assert delta is not None and delta.since_version == held.graph_version
        assert len(delta.interactions) == sum(1 for r in records if not r.quarantine)
        held = apply_delta(held, delta)
        assert held == store.snapshot("dl"), k
    whole = store.delta("dl", first.graph_version)
    assert whole is not None and apply_delta(first, whole) == held
    unchanged = store.delta("dl", held.graph_version)  # nothing since: an empty change
    assert unchanged is not None and len(unchanged.interactions) == 0 and apply_delta(held, unchanged) == held


def test_what_is_not_only_additions_is_no_delta(store: KnowledgeStore) -> None:
    """A retraction, a confirmation or a re-import since the caller's version: no delta (the caller reads the
    whole graph); from the version after it, deltas again. A version the store never had: none either."""
    store.import_bundle(make_bundle("dl"), blob_id=BLOB_A, replace=False, artifacts={})
    record = InteractionRecord("m1", "d0", 0.5, Cost(train_seconds=2.0), "feedback")
    held = InteractionRecord("m2", "d1", 0.9, Cost(), "feedback", quarantine="far off")
    v2, _ = store.add_interactions("dl", [], [record], "ok")
    v3, _ = store.add_interactions("dl", [], [held], "held")
    assert store.delta("dl", 1) is not None
    v4, _ = store.retract("dl", "ok", "bob")
    for since in (1, v2, v3):
        assert store.delta("dl", since) is None
    assert store.delta("dl", v4) is not None
    v5, _ = store.confirm("dl", "held", "alice")
    assert store.delta("dl", v4) is None
    v6, _ = store.add_interactions("dl", [], [record], "again")
    snap5 = store.snapshot("dl")
    assert snap5.graph_version == v6
    delta = store.delta("dl", v5)
    assert delta is not None and len(delta.interactions) == 1
    info, _ = store.import_bundle(make_bundle("dl"), blob_id=BLOB_B, replace=True, artifacts={})
    for since in (v5, v6):
        assert store.delta("dl", since) is None
    assert store.delta("dl", info.graph_version + 1) is None  # ahead of the store
    fresh = store.delta("dl", info.graph_version)
    assert fresh is not None and fresh.library.bundle_blob_id == BLOB_B and len(fresh.interactions) == 0
    with pytest.raises(NotFound):
        store.delta("ghost", 1)
    with pytest.raises(ValueError, match="another import"):
        apply_delta(snap5, dataclasses.replace(fresh, since_version=snap5.graph_version))
    with pytest.raises(ValueError, match="since version"):
        apply_delta(snap5, fresh)


def test_sqlite_a_file_from_before_deltas_gets_none_across_the_upgrade(tmp_path: Path) -> None:
    """A file written before records carried their version: opened now, its records are unstamped, so no delta
    reaches back past the upgrade (they would be missed); from the version at the upgrade on, deltas again."""
    path = tmp_path / "k.sqlite3"
    store = SqliteKnowledgeStore(path)
    store.import_bundle(make_bundle("old"), blob_id=BLOB_A, replace=False, artifacts={})
    record = InteractionRecord("m1", "d0", 0.5, Cost(train_seconds=2.0), "feedback")
    assert store.add_interactions("old", [], [record], "before")[0] == 2
    db = store._db()
    db.execute("DROP INDEX interactions_version")  # the file as the code before left it
    for table, column in (("interactions", "graph_version"), ("datasets", "graph_version"), ("graph_versions", "base")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    store.close()
    store = SqliteKnowledgeStore(path)
    try:
        assert store.delta("old", 1) is None
        held = store.snapshot("old")
        store.add_interactions("old", [], [record], "after")
        delta = store.delta("old", held.graph_version)
        assert delta is not None and apply_delta(held, delta) == store.snapshot("old")
    finally:
        store.close()
