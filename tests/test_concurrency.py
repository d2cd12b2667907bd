"""Concurrency by design: cheap calls answer while every search slot is held, CPU work runs in worker processes
whose failures keep their status, and the Recommend fast path ranks exactly as the full path does."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polling import dead, eventually
from synthetic import make_table, write_library

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import QUERY_DATASET, Constraints, ProbeRecord, Snapshot
from modsnet.data.graph_build import snapshot_from_bundle
from modsnet.embedded import EmbeddedCluster
from modsnet.features.tabular import tabular_features
from modsnet.runtime.errors import DeadlineExceeded, InvalidArgument, Unavailable
from modsnet.runtime.workers import Cancelled, WorkerFailed, WorkerPool, report
from modsnet.v1 import common_pb2, query_pb2_grpc
from modsnet.v1 import query_pb2 as qpb
from services.query.config import QueryConfig
from services.recommender.core import Ranked, Served, top_k
from services.recommender.estimators.base import Prediction, Scored
from services.recommender.estimators.gnn import GnnConfig, GnnEstimator
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.probes import MEASURED
from services.recommender.recommendation import answer_positions, recommend_one

RUNNING = QueryConfig.__dataclass_fields__["max_concurrent_uploads"].default
WAITING = QueryConfig.__dataclass_fields__["max_waiting_uploads"].default


def _held_search(header: qpb.SearchRequest, data: bytes, release: threading.Event) -> Iterator[qpb.SearchRequest]:
    """A search whose file arrives only once `release` is set: it holds its slot (or its place in the queue)."""
    yield header
    release.wait(120)
    yield qpb.SearchRequest(chunk=data)


def _refused(future: grpc.Future) -> bool:
    error = future.exception()
    return error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def cluster(tmp_path: Path, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    """The synthetic library on an embedded cluster whose query service has its worker processes."""
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, worker_processes=0) as running:
        running.client.import_library(synth_bundle)
        yield running


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
            # Every slot is held when one more search gets no turn: refused at once (RUNNING parsing, WAITING
            # queued behind them), or queued and refused as busy when its deadline came. The second happens on a
            # loaded machine: a held search that waited `upload_wait_seconds` in line gives up, frees its place,
            # and the next one takes it (2026-12-07: two such 30 s waits used up the minute below). Until the held
            # searches have all arrived, one more may still get a slot and answer.
            give_up = time.monotonic() + 60
            while True:
                try:
                    query.Search(iter([header, qpb.SearchRequest(chunk=data)]), timeout=10)
                except grpc.RpcError as refused:
                    no_turn = refused.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "busy" in str(refused.details())
                    if refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or no_turn:
                        break
                assert time.monotonic() < give_up, "the searches never filled their slots"
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
            # The cheap calls did not wait for the searches: the running ones still hold their slots (a waiting
            # one may have given up after `upload_wait_seconds` on a slow machine: refused, RESOURCE_EXHAUSTED).
            assert sum(not f.done() for f in held) >= RUNNING
            assert all(_refused(f) for f in held if f.done())
        finally:
            release.set()
        answered = [f for f in held if not _refused(f)]
        assert len(answered) >= RUNNING
        for future in answered:
            assert len(future.result().models) == 3
    # Parsed in a worker process, a bad file is still INVALID_ARGUMENT naming it.
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b,class\n1,2,x\n3,4\n" + "5,6,y\n" * 50 + '7,"8,z\n')
    with pytest.raises(InvalidArgument) as refused:
        cluster.client.search(broken, k=3, probe_budget=0)
    assert "broken.csv" in refused.value.message


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


def counting(n: int) -> int:
    for i in range(n):
        report(i)
    return n


def report_then_hang(pid_file: str) -> None:
    report("started")
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def test_a_task_reports_progress_and_a_cancel_or_a_close_stops_its_worker(tmp_path: Path) -> None:
    pool = WorkerPool("test", size=1)
    try:
        got: list[object] = []
        assert pool.run(counting, 3, progress=got.append, timeout=60) == 3
        assert got == [0, 1, 2]  # in order, on the caller's thread, before the answer
        cancel = threading.Event()
        outcome: list[BaseException] = []
        pid_file = tmp_path / "pid"

        def hang(cancel: threading.Event | None = cancel) -> None:
            try:
                pool.run(report_then_hang, str(pid_file), progress=got.append, cancel=cancel)
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=hang)
        caller.start()
        assert eventually(lambda: pid_file.exists() and pool.busy() != [], seconds=60)
        hung = int(pid_file.read_text())
        # The report reaches the caller's thread through the worker's pipe: it may trail the pid file.
        assert eventually(lambda: got[-1] == "started", seconds=60) and pool.busy() == [hung]
        cancel.set()
        caller.join(60)
        assert not caller.is_alive() and isinstance(outcome[0], Cancelled) and outcome[0].code == "UNAVAILABLE"
        assert eventually(lambda: dead(hung), seconds=30) and pool.busy() == []
        assert pool.run(pid, timeout=60) not in (hung, os.getpid())  # a fresh worker took its place
        # A close kills a busy worker at once (a task with no timeout and no cancel would otherwise run on).
        pid_file.unlink()
        outcome.clear()
        caller = threading.Thread(target=hang, args=(None,))
        caller.start()
        assert eventually(lambda: pid_file.exists(), seconds=60)
        hung = int(pid_file.read_text())
    finally:
        pool.close()
    caller.join(60)
    assert not caller.is_alive() and isinstance(outcome[0], Unavailable)
    assert eventually(lambda: dead(hung), seconds=30)


def test_a_worker_ended_by_several_threads_at_once_is_ended_once() -> None:
    # A close and the caller of the task it interrupts both kill a busy worker: a second os.close of its pipe
    # failed (EBADF) under load, and could close a descriptor another file had taken meanwhile.
    pool = WorkerPool("test", size=1)
    assert pool.run(pid, timeout=60) != os.getpid()
    (worker,) = pool._all
    real_close = worker.conn._close

    def slow_close() -> None:  # widens the window in which another thread finds the pipe still open
        time.sleep(0.3)
        real_close()

    worker.conn._close = slow_close
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def end(how: str) -> None:
        start.wait()
        try:
            getattr(worker, how)()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=end, args=("kill" if i % 2 else "stop",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and dead(worker.process.pid)
    pool.close()


# -- the Recommend fast path ----------------------------------------------------------------------------------


def reference_top_k(served, predictions, constraints, probes, *, k, higher_is_better):  # type: ignore[no-untyped-def]
    """The path before the fast one: every prediction built, filtered one by one, fully sorted."""
    allowed = [p for p in predictions if constraints.allows(served.models[p.model_id])]
    sign = served.estimator.sign
    allowed.sort(key=lambda p: (-sign * p.score, p.uncertainty, p.model_id))
    pick = recommend_one(allowed, probes, higher_is_better=higher_is_better, k=k)
    keep = next(i for i, p in enumerate(allowed) if p.model_id == pick.model_id) if pick else None
    ranked = [
        Ranked(i + 1, allowed[i], served.models[allowed[i].model_id]) for i in answer_positions(len(allowed), k, keep)
    ]
    return ranked, len(predictions) - len(allowed), pick


@pytest.fixture(scope="module")
def fast_path_library(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder = write_library(tmp_path_factory.mktemp("fast") / "fast", n_models=40, n_datasets=12, seed=3)
    return snapshot_from_bundle(read_bundle(folder))


def served_by(estimator, snapshot: Snapshot) -> Served:  # type: ignore[no-untyped-def]
    models = {m.model_id: m for m in snapshot.models}
    return Served(estimator, snapshot.library, models, "trained", 1, len(snapshot.interactions), 0.0, 0.0, "test")


CASES = [
    # (k, constraints, probes, known dataset)
    (5, Constraints(), [], ""),
    (1, Constraints(), [], ""),
    (40, Constraints(), [], ""),
    (100, Constraints(), [], ""),
    (5, Constraints(max_train_seconds=2.05, exclude_models=frozenset({"m0", "m3", "nope"})), [], ""),
    (3, Constraints(require_metadata={"family": "down"}, max_memory_bytes=30_000), [], ""),
    (5, Constraints(require_metadata={"family": "sideways"}), [], ""),
    # a measured model that beats every prediction, from deep in the ranking; one the constraints leave out
    (3, Constraints(exclude_models=frozenset({"m7"})), [("m1", 0.999), ("m7", 0.9999), ("m30", 0.2)], ""),
    (5, Constraints(), [("m2", 0.1), ("m5", 0.15), ("m9", 0.12)], ""),
    (4, Constraints(), [], "d4"),  # transductive: the dataset's records are its models' scores
    (4, Constraints(max_train_seconds=1.0), [("m2", 0.5)], "d6"),
]


@pytest.mark.parametrize("kind", ["gnn", "knn"])
def test_the_fast_path_answers_what_sorting_every_prediction_did(fast_path_library: Snapshot, kind: str) -> None:
    snapshot = fast_path_library
    if kind == "gnn":
        estimator = GnnEstimator(snapshot, config=GnnConfig(members=2, steps=40))
    else:
        estimator = KnnPopularityEstimator(snapshot)
    served = served_by(estimator, snapshot)
    features = tabular_features(make_table(250, 7, 2, 11), "class")
    for k, constraints, measured, dataset_id in CASES:
        probes = [ProbeRecord(m, QUERY_DATASET, MEASURED, v) for m, v in measured]
        if kind == "gnn":
            arguments = {"known_dataset": dataset_id or None, "probes": probes}
        else:
            arguments = {"known_dataset": dataset_id or None}
        expected = reference_top_k(
            served, estimator.predict(features, **arguments), constraints, probes, k=k, higher_is_better=True
        )
        got = top_k(served, estimator.score_all(features, **arguments), constraints, probes, k=k, higher_is_better=True)
        assert got == expected, (k, constraints, measured, dataset_id)
        assert got[0] or got[1] == 40


def test_ties_are_broken_by_uncertainty_then_id_as_the_full_sort_does(fast_path_library: Snapshot) -> None:
    snapshot = fast_path_library
    served = served_by(KnnPopularityEstimator(snapshot), snapshot)
    ids = served.table.ids
    rng = np.random.default_rng(0)
    for trial in range(30):
        scores = rng.choice([0.5, 0.6, 0.7], size=len(ids))  # many equal scores, and equal uncertainties
        spread = rng.choice([0.0, 0.1], size=len(ids))
        vectors = Scored(scores, spread, lambda j, s=scores, u=spread: Prediction(ids[j], float(s[j]), float(u[j])))
        probes = [ProbeRecord(ids[j], QUERY_DATASET, MEASURED, float(scores[j])) for j in rng.choice(40, 2)]
        for k in (1, 3, 7, 39):
            expected = reference_top_k(served, vectors.predictions(), Constraints(), probes, k=k, higher_is_better=True)
            assert top_k(served, vectors, Constraints(), probes, k=k, higher_is_better=True) == expected, (trial, k)


def test_an_upload_storage_already_holds_is_not_sent_to_it_again(tmp_path: Path, synth_bundle: Path) -> None:
    from services.storage.metrics import BLOB_BYTES_IN

    csv, other = tmp_path / "table.csv", tmp_path / "other.csv"
    make_table(120, 4, 2, 3).to_csv(csv, index=False)
    make_table(100, 3, 2, 4).to_csv(other, index=False)
    size = csv.stat().st_size
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as cluster:
        cluster.client.import_library(synth_bundle)
        cluster.client.search(other, library="synth")  # what a first search stores besides its upload is done
        received = BLOB_BYTES_IN._value.get()
        first = cluster.client.search(csv, library="synth")
        assert BLOB_BYTES_IN._value.get() - received == size  # the first search stores the file
        second = cluster.client.search(csv, library="synth")
        assert BLOB_BYTES_IN._value.get() - received == size  # the second finds it there and sends nothing
        assert first.dataset.fingerprint == second.dataset.fingerprint
        assert cluster.client.storage.size(first.dataset.fingerprint) == size
        cluster.client.storage.delete(first.dataset.fingerprint)  # gone: the next search stores it again
        cluster.client.search(csv, library="synth")
        assert BLOB_BYTES_IN._value.get() - received == 2 * size
        assert cluster.client.storage.size(first.dataset.fingerprint) == size


def test_a_worker_left_idle_is_stopped_and_the_next_task_starts_another() -> None:
    pool = WorkerPool("test", size=1, idle_seconds=2.0)
    try:
        first = pool.run(pid, timeout=60)
        assert pool.run(pid, timeout=60) == first  # reused while it is not idle that long
        assert eventually(lambda: dead(first), seconds=30), "the idle worker was not stopped"
        assert not pool.busy() and pool.started == 1
        second = pool.run(pid, timeout=60)
        assert second != first and pool.started == 2
    finally:
        pool.close()
