"""Concurrency by design: cheap calls answer while every search slot is held, CPU work runs in worker processes
whose failures keep their status, and the Recommend fast path ranks exactly as the full path does."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synthetic import make_table

from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import DeadlineExceeded, InvalidArgument, Unavailable
from modsnet.runtime.workers import WorkerFailed, WorkerPool
from modsnet.v1 import common_pb2
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc
from services.query.config import QueryConfig

RUNNING = QueryConfig.__dataclass_fields__["max_concurrent_uploads"].default
WAITING = QueryConfig.__dataclass_fields__["max_waiting_uploads"].default


def _held_search(header: qpb.SearchRequest, data: bytes, release: threading.Event) -> Iterator[qpb.SearchRequest]:
    """A search whose file arrives only once `release` is set: it holds its slot (or its place in the queue)."""
    yield header
    release.wait(120)
    yield qpb.SearchRequest(chunk=data)


def test_cheap_calls_answer_while_every_search_slot_is_held(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    path = tmp_path / "query.csv"
    make_table(200, 9, 2, 7).to_csv(path, index=False)
    data = path.read_bytes()
    answered = cluster.client.search(path, k=3, probe_budget=0)  # a query id to report feedback on
    header = qpb.SearchRequest(header=qpb.SearchHeader(library="synth", k=3, filename="query.csv"))
    release = threading.Event()
    with grpc.insecure_channel(cluster.addresses["query"]) as channel:
        query = query_pb2_grpc.QueryStub(channel)
        held = [query.Search.future(_held_search(header, data, release), timeout=180) for _ in range(RUNNING + WAITING)]
        try:
            # Full when one more search is refused at once (RUNNING parsing, WAITING queued behind them).
            give_up = time.monotonic() + 60
            while True:
                with pytest.raises(grpc.RpcError) as refused:
                    query.Search(iter([header, qpb.SearchRequest(chunk=data)]), timeout=30)
                if refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    break
                assert time.monotonic() < give_up, refused.value.details()
                time.sleep(0.2)
            libraries = query.ListLibraries(common_pb2.ListLibrariesRequest(), timeout=30)
            assert [lib.name for lib in libraries.libraries] == ["synth"]
            model_id = answered.models[0].model_id
            feedback = query.ReportPerformance(
                qpb.ReportPerformanceRequest(query_id=answered.query_id, model_id=model_id, score=0.8), timeout=30
            )
            assert feedback.graph_version > 0
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            # The cheap calls did not wait for the searches: those are all still holding their slots.
            assert not any(f.done() for f in held)
        finally:
            release.set()
        for future in held:
            assert len(future.result().models) == 3


# -- the worker pool ------------------------------------------------------------------------------------------


def refuse(name: str) -> None:
    raise InvalidArgument(f"{name}: row 3, column 'x': not a number")


def crash() -> None:
    raise KeyError("secret detail")


def hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def pid() -> int:
    return os.getpid()


def test_worker_failures_map_to_their_status_and_a_stuck_worker_is_killed(tmp_path: Path) -> None:
    pool = WorkerPool("test", size=1)
    try:
        with pytest.raises(InvalidArgument) as refused:
            pool.run(refuse, "data.csv", timeout=60)
        assert refused.value.message == "data.csv: row 3, column 'x': not a number"
        with pytest.raises(WorkerFailed) as failed:
            pool.run(crash, timeout=60, what="reading data.csv")
        assert failed.value.code == "INTERNAL" and "secret detail" not in failed.value.message
        assert "reading data.csv" in failed.value.message and "incident" in failed.value.message
        first = pool.run(pid, timeout=60)
        assert first != os.getpid()  # a worker process, reused after errors
        assert pool.run(pid, timeout=60) == first and pool.started == 1
        pid_file = tmp_path / "pid"
        with pytest.raises(DeadlineExceeded):
            pool.run(hang, str(pid_file), timeout=2.0)
        stuck = int(pid_file.read_text())
        assert stuck == first
        assert not psutil.pid_exists(stuck) or psutil.Process(stuck).status() == psutil.STATUS_ZOMBIE
        assert pool.run(pid, timeout=60) not in (first, os.getpid())  # a fresh worker took its place
    finally:
        pool.close()
    with pytest.raises(Unavailable):
        pool.run(pid, timeout=5)


def test_a_bad_upload_is_invalid_argument_through_the_worker(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text("a,b,class\n1,2,x\n3,4\n" + "5,6,y\n" * 50 + '7,"8,z\n')
    with pytest.raises(InvalidArgument) as refused:
        cluster.client.search(path, k=3, probe_budget=0)
    assert "broken.csv" in refused.value.message
