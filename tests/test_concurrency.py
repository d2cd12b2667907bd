"""Concurrency by design: cheap calls answer while every search slot is held, CPU work runs in worker processes
whose failures keep their status, and the Recommend fast path ranks exactly as the full path does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synthetic import make_table

from modsnet.embedded import EmbeddedCluster
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
