"""Health that tells the truth (issue 12): readiness follows each service's backend and the services it
needs, liveness does not; an outgoing call that gets no answer names the service and how long it waited;
and the bounds on resources (offsets past a blob's end, concurrent uploads, one ONNX export at a time, large
tables parsed from a sample).

In-process servers on loopback ports; the kill -9 / SIGSTOP cases, which need processes, are in
test_faults.py.
"""

from __future__ import annotations

import contextlib
import gc
import io
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polling import eventually

from modsnet.embedded import LOOPBACK, EmbeddedCluster
from modsnet.features.tabular import read_table_sample, tabular_features
from modsnet.runtime.deadline import reset_deadline, set_deadline, timeout_for
from modsnet.runtime.errors import Busy, DeadlineExceeded, InvalidArgument, OutOfRange, Unavailable
from modsnet.runtime.metrics import GRPC_REQUESTS
from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient, StorageClient
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2, knowledge_pb2_grpc, storage_pb2, storage_pb2_grpc
from services.query.core import QueryCore, SearchOptions
from services.recommender.config import RecommenderConfig
from services.recommender.estimators.gnn.config import GnnConfig
from services.recommender.estimators.gnn.network import INPUTS
from services.recommender.estimators.gnn.onnx_export import export_onnx
from services.recommender.server import create_server as recommender_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as running:
        yield running


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a frozen service, as a caller sees it."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_readiness_follows_dependencies_and_liveness_does_not(embedded: EmbeddedCluster) -> None:
    query, address = embedded.servers["query"], embedded.addresses["query"]
    for name in ("", "readiness", "liveness", "modsnet.v1.Query"):
        assert status(address, name) == SERVING, name
    port = embedded.servers["recommender"].port
    embedded.servers.pop("recommender").stop(0)
    assert query.check_now() is False
    assert "recommender" in " ".join(query.failures.values())
    for name in ("", "readiness", "modsnet.v1.Query"):
        assert status(address, name) == NOT_SERVING, name
    assert status(address, "liveness") == SERVING  # a liveness probe must not restart the query pod for this
    # The recommender is back on its port: so is the query service.
    config = RecommenderConfig(
        knowledge_addr=embedded.addresses["knowledge"],
        storage_addr=embedded.addresses["storage"],
        estimator="knn",
        host=LOOPBACK,
        port=port,
    )
    embedded.servers["recommender"] = recommender_server(config)
    embedded.servers["recommender"].start()
    assert eventually(query.check_now, seconds=15)  # the channel reconnects within its 2 s backoff
    assert query.failures == {} and status(address, "") == SERVING


def test_a_dead_storage_turns_knowledge_and_the_recommender_not_serving(embedded: EmbeddedCluster) -> None:
    embedded.servers.pop("storage").stop(0)
    for name in ("knowledge", "recommender", "query"):
        assert embedded.servers[name].check_now() is False, name
        assert status(embedded.addresses[name], "") == NOT_SERVING, name
        assert status(embedded.addresses[name], "liveness") == SERVING, name


def test_a_call_nobody_answers_names_the_service_and_the_wait(silent_port: int) -> None:
    client = KnowledgeClient(f"{LOOPBACK}:{silent_port}")
    try:
        with pytest.raises(DeadlineExceeded) as caught:
            client.call("ListLibraries", pb.ListLibrariesRequest(), timeout=0.5)
        assert str(caught.value) == f"knowledge service did not answer within 0.5 s ({LOOPBACK}:{silent_port})"
        with pytest.raises(Unavailable) as refused:
            client.check_ready(0.3)
        assert str(refused.value) == f"knowledge service did not answer within 0.3 s ({LOOPBACK}:{silent_port})"
    finally:
        client.close()


def test_outgoing_calls_keep_a_margin_of_the_callers_deadline() -> None:
    token = set_deadline(5.0)
    try:
        assert 4.3 < timeout_for(60.0, "knowledge service") <= 4.5  # a tenth kept back, at most 0.5 s
        assert timeout_for(1.0, "knowledge service") == 1.0  # its own default when that is shorter
    finally:
        reset_deadline(token)
    token = set_deadline(0.01)
    try:
        with pytest.raises(DeadlineExceeded, match="before calling knowledge service"):
            timeout_for(60.0, "knowledge service")
    finally:
        reset_deadline(token)


def test_get_blob_past_the_end_is_out_of_range(embedded: EmbeddedCluster) -> None:
    storage = StorageClient(embedded.addresses["storage"])
    try:
        blob_id = storage.put_bytes(b"0123456789").blob_id
        with pytest.raises(OutOfRange, match="past the end"):
            list(storage.get_chunks(blob_id, offset=11))
        assert b"".join(storage.get_chunks(blob_id, offset=10)) == b""
        stub = storage_pb2_grpc.StorageStub(storage.channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.GetBlob(storage_pb2.GetBlobRequest(blob_id=blob_id, offset=1 << 40), timeout=5))
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        storage.close()


def test_uploads_beyond_the_limit_wait_their_turn_and_beyond_the_queue_are_told_to_retry() -> None:
    nowhere = f"{LOOPBACK}:1"  # the refused upload never gets as far as a downstream call
    core = QueryCore(
        StorageClient(nowhere),
        KnowledgeClient(nowhere),
        RecommenderClient(nowhere),
        max_upload_bytes=1 << 20,
        max_concurrent_uploads=1,
        max_waiting_uploads=1,
        upload_wait_seconds=60,
    )
    inside, release = threading.Event(), threading.Event()

    def slow_upload() -> Iterator[bytes]:
        yield b"a,b,class\n"
        inside.set()  # the first search is now receiving: it holds the one slot
        release.wait(30)
        yield b"1,2,x\n"

    waited: list[BaseException] = []

    def second() -> None:  # waits for the slot, then is parsed (and refused for what it is, one column)
        try:
            core.search(SearchOptions(filename="t.csv"), iter([b"a\n1\n"]))
        except BaseException as exc:
            waited.append(exc)

    first = threading.Thread(target=lambda: _ignore_errors(core, slow_upload()), daemon=True)
    first.start()
    queued = threading.Thread(target=second, daemon=True)
    try:
        assert inside.wait(30)
        queued.start()
        assert eventually(lambda: core._uploads.queued == 1, seconds=30)
        # One running, one waiting: a third is refused at once, told when to retry.
        with pytest.raises(Busy, match="retry") as busy:
            core.search(SearchOptions(filename="t.csv"), iter([b"a,b\n"]))
        assert busy.value.retry_after > 0 and busy.value.code == "RESOURCE_EXHAUSTED"
    finally:
        release.set()
        first.join(30)
        queued.join(30)
    assert len(waited) == 1 and isinstance(waited[0], InvalidArgument) and "only one column" in str(waited[0])
    core.close()


class _BusyStorage(storage_pb2_grpc.StorageServicer):
    def StatBlob(self, request: storage_pb2.StatBlobRequest, context: grpc.ServicerContext) -> storage_pb2.BlobInfo:
        raise Busy("storage is busy", retry_after=1.5)


def test_a_busy_refusal_reaches_the_caller_with_its_retry_hint() -> None:
    server = ServiceServer("storage", host=LOOPBACK)
    server.add_service(
        "modsnet.v1.Storage", lambda s: storage_pb2_grpc.add_StorageServicer_to_server(_BusyStorage(), s)
    )
    client = StorageClient(f"{LOOPBACK}:{server.start()}")
    try:
        with pytest.raises(Busy, match="storage is busy") as busy:
            client.stat("0" * 64)
        assert busy.value.retry_after == 1.5
    finally:
        client.close()
        server.stop(0)


def _ignore_errors(core: QueryCore, chunks: Iterator[bytes]) -> None:
    with contextlib.suppress(Exception):  # the services it would call do not exist; only its slot matters
        core.search(SearchOptions(filename="t.csv"), chunks)


class _SlowScorer(torch.nn.Module):
    """A stand-in query module whose tracing waits for a signal, so a second export can try to overlap."""

    data_relations: ClassVar[list[tuple[str, str, str]]] = []
    model_relations: ClassVar[list[tuple[str, str, str]]] = []

    def __init__(self, entered: threading.Event | None = None, release: threading.Event | None = None):
        super().__init__()
        self.entered, self.release = entered, release

    def forward(self, features, dataset_weights, model_index, model_weights):  # type: ignore[no-untyped-def]
        if self.entered is not None and self.release is not None:
            self.entered.set()
            self.release.wait(10)
        mean = features.sum() + dataset_weights.sum() + model_weights.sum() * model_index.shape[0]
        return mean.reshape(1), mean.reshape(1)


def test_onnx_exports_take_turns() -> None:
    example = {
        "features": np.ones((1, 4), np.float32),
        "dataset_weights": np.ones((1, 3), np.float32),
        "model_index": np.zeros(2, np.int64),
        "model_weights": np.ones((1, 2), np.float32),
    }
    assert set(example) == set(INPUTS)
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def export(module: torch.nn.Module) -> None:
        try:
            export_onnx(module, example, io.BytesIO(), feature_names=["a"], config=GnnConfig())  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=export, args=(_SlowScorer(entered, release),))
    first.start()
    assert entered.wait(30)  # the first export is tracing, torch's process-wide export flag set
    second = threading.Thread(target=export, args=(_SlowScorer(),))
    second.start()
    second.join(1.0)  # without the lock it fails at once (`GLOBALS.in_onnx_export must be False`)
    release.set()
    first.join(60)
    second.join(60)
    assert errors == []


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_large_table_is_checked_whole_and_parsed_from_a_sample(quoted: bool) -> None:
    quote = '"' if quoted else ""
    rows = [f"{i},{i % 7}.5,{quote}c{i % 3}{quote}\n" for i in range(30_000)]
    data = ("a,b,class\n" + "".join(rows)).encode()
    table, counted = read_table_sample(data, name="big.csv", keep_cells=30)  # 30 cells: the 10,000-row floor
    assert counted == 30_000 and len(table) == 10_000 and list(table.columns) == ["a", "b", "class"]
    assert table["a"].is_monotonic_increasing and table["a"].nunique() == 10_000  # file order, no repeats
    assert set(table["class"]) == {"c0", "c1", "c2"}
    features = tabular_features(table, "class", table_rows=counted)
    assert features["log_rows"] == pytest.approx(np.log10(30_000))
    # A bad row is found wherever it is, sampled or not, by its line in the file.
    with pytest.raises(InvalidArgument, match="row 30002 has 2 fields, the header has 3"):
        read_table_sample(data + b"1,2\n", name="big.csv", keep_cells=30)


def snapshot_during_stop(
    embedded: EmbeddedCluster, synth_bundle: Path, monkeypatch: pytest.MonkeyPatch, drain: float
) -> tuple[list[object], list[grpc.StatusCode], float]:
    """Stop the knowledge server (grace 0.1 s) while a GraphSnapshot handler is held in its SQLite read.

    The handler is held inside its read transaction (its connection open) until the store's close has run
    (what the old stop did right after the grace) or, with a long `drain`, until its caller has been answered
    (the grace ran out). Returns what the read gave, the caller's status, and how long stop took.
    """
    library = embedded.client.import_library(synth_bundle).library.name
    knowledge = embedded.servers.pop("knowledge")
    knowledge.drain = drain
    store = knowledge.cores["modsnet.v1.Knowledge"].store
    entered, release, answered = threading.Event(), threading.Event(), threading.Event()
    read: list[object] = []
    real_snapshot, real_library, real_close = store.snapshot, store._library, store.close
    in_snapshot = threading.local()

    def held_snapshot(name: str):  # type: ignore[no-untyped-def]
        in_snapshot.yes = True
        try:
            snap = real_snapshot(name)  # reads SQLite
        except BaseException as exc:
            read.append(exc)
            raise
        read.append(snap)
        return snap

    def held_library(db, name: str):  # type: ignore[no-untyped-def]
        if getattr(in_snapshot, "yes", False):  # in the snapshot's read transaction, its connection open
            entered.set()
            release.wait(30)
        return real_library(db, name)

    def close_then_release() -> None:
        real_close()
        release.set()

    monkeypatch.setattr(store, "_library", held_library)
    monkeypatch.setattr(store, "snapshot", held_snapshot)
    monkeypatch.setattr(store, "close", close_then_release)
    outcome: list[grpc.StatusCode] = []

    def call() -> None:
        with grpc.insecure_channel(embedded.addresses["knowledge"]) as channel:
            stub = knowledge_pb2_grpc.KnowledgeStub(channel)
            try:
                for _ in stub.GraphSnapshot(knowledge_pb2.GraphSnapshotRequest(library=library), timeout=30):
                    pass
                outcome.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                outcome.append(exc.code())
        answered.set()

    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(10)
    started = time.monotonic()
    stopper = threading.Thread(target=knowledge.stop, args=(0.1,))
    stopper.start()
    assert answered.wait(10)
    if drain > 5:
        release.set()  # else the read stays held until the close (drain runs out first)
    stopper.join(30)
    caller.join(5)
    assert not stopper.is_alive()
    took = time.monotonic() - started
    # Past a short drain the handler resumes only once the store has closed, and ends on its own thread after
    # the stop returned: wait for its read to end.
    assert eventually(lambda: len(read) == 1, seconds=10), read
    return read, outcome, took


def internal_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records]
    return [m for m in messages if "internal error" in m or "failed (incident" in m]


def test_stop_waits_for_a_call_in_flight_before_closing_its_backend(
    embedded: EmbeddedCluster, synth_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A GraphSnapshot still reading SQLite when the grace runs out: the store closes after it, not under it."""
    read, outcome, _ = snapshot_during_stop(embedded, synth_bundle, monkeypatch, drain=30)
    assert len(read) == 1 and not isinstance(read[0], BaseException), read  # the read ran on an open store
    assert outcome == [grpc.StatusCode.UNAVAILABLE]  # what gRPC answers a call cancelled by the shutdown
    assert not internal_errors_logged(caplog)


def test_a_handler_still_running_after_the_drain_fails_as_unavailable_not_internal(
    embedded: EmbeddedCluster, synth_bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The wait for handlers is bounded: past it the backends close under the handler, whose failure is the
    shutdown's doing (UNAVAILABLE in the metrics and the log), not an internal error."""
    before = GRPC_REQUESTS.labels("knowledge", "GraphSnapshot", "UNAVAILABLE")._value.get()
    read, outcome, took = snapshot_during_stop(embedded, synth_bundle, monkeypatch, drain=0.3)
    assert len(read) == 1 and isinstance(read[0], sqlite3.ProgrammingError), read  # closed under it, as said
    assert outcome == [grpc.StatusCode.UNAVAILABLE]
    assert eventually(
        lambda: GRPC_REQUESTS.labels("knowledge", "GraphSnapshot", "UNAVAILABLE")._value.get() > before, seconds=10
    )
    assert not internal_errors_logged(caplog)
    assert any("stopped by the shutdown" in r.getMessage() for r in caplog.records)
    assert took < 25  # bounded: not the 30 s the handler would have waited


def test_a_started_cluster_keeps_its_startup_objects_out_of_the_collectors_scans(embedded: EmbeddedCluster) -> None:
    """A full collection scans every tracked object; those of the imports and the servers are frozen once."""
    assert gc.get_freeze_count() > 0
