"""GNN trainings run in a worker process, not on the serving process's threads (issue 13): the worker sends back
what rebuilds the served estimator without a fit, its progress shows in `trainings()`, a worker that dies is a
failed training the service survives, and a closing service kills its workers."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from polling import dead, eventually

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import ProbeRecord
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import InvalidArgument
from modsnet.runtime.stubs import KnowledgeClient
from services.recommender.core import RecommenderCore, TrainingProgress, training_pool
from services.recommender.estimators.gnn import GnnConfig
from services.recommender.evaluation import graph_from_bundle
from services.recommender.probes import MEASURED
from services.recommender.training import fit_gnn, train_in_worker


def fitting(core: RecommenderCore) -> list[int]:
    """The training workers' process ids, once a training of `core` is fitting in one (else [])."""
    under_way = [p for p in core.trainings() if p.phase == "fitting" and p.step > 0]
    assert core._pool is not None
    return core._pool.busy() if under_way else []


def test_a_worker_trains_what_this_process_would_and_sends_what_rebuilds_it_exactly(
    synth_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.recommender.estimators.knn import KnnPopularityEstimator

    snapshot, _ = graph_from_bundle(read_bundle(synth_bundle))
    config = GnnConfig(members=2, steps=20)
    messages: list[tuple[int, int, int, int, str]] = []
    trained = training_pool(0).run(train_in_worker, snapshot, config, 8, progress=messages.append, timeout=600)
    assert trained.pid != os.getpid()
    local = fit_gnn(snapshot, config, neighbours=8)  # in this process, as with training_processes -1
    # Deterministic where the old code was: the same weights to the bit, the same blend and interval scales.
    for mine, theirs in zip(local.state(), trained.weights, strict=True):
        assert mine.keys() == theirs.keys()
        for name, tensor in mine.items():
            assert np.array_equal(tensor.numpy(), theirs[name]), name
    assert trained.blend == local.blend.to_dict()
    # The kNN beside it is rebuilt with the worker's choices (same graph: the same kNN), not chosen again here.
    assert trained.knn_choices == local.knn.choices

    def chooses(*args: object, **kwargs: object) -> None:
        raise AssertionError("the serving process chose the kNN's settings again")

    monkeypatch.setattr(KnnPopularityEstimator, "_conditioning_pays", chooses)
    rebuilt = trained.estimator(snapshot, config, neighbours=8)
    monkeypatch.undo()
    assert rebuilt.blend == local.blend and rebuilt.interval_scale == local.interval_scale
    queries = [
        ({"n_rows": 300.0, "n_features": 5.0}, None, []),
        ({}, "d3", []),  # transductive
        ({"n_rows": 300.0, "n_features": 5.0}, None, [ProbeRecord("m1", "q", MEASURED, 0.8)]),  # the probed scale
    ]
    for features, known, probes in queries:
        ours, worker = (e.score_all(features, known_dataset=known, probes=probes) for e in (local, rebuilt))
        np.testing.assert_array_equal(worker.scores, ours.scores)
        np.testing.assert_array_equal(worker.uncertainty, ours.uncertainty)
    # The worker's ONNX export serves as it is, and scores as this process's own export does.
    local.serve_onnx(providers=["CPUExecutionProvider"])
    rebuilt.serve_onnx(providers=["CPUExecutionProvider"], model=trained.onnx_model)
    assert rebuilt.primary.onnx_model is trained.onnx_model  # type: ignore[union-attr]
    for features, known, probes in queries:
        ours, worker = (e.score_all(features, known_dataset=known, probes=probes) for e in (local, rebuilt))
        np.testing.assert_allclose(worker.scores, ours.scores, atol=1e-6)
    # Progress came across, fit by fit, each fit's steps in order, then the export.
    fits = [m[0] for m in messages if m[4] == "fitting"]
    assert fits == sorted(fits) and fits[0] == 1 and fits[-1] > 1  # calibration's fits, then the served one
    assert {m[1] for m in messages[:-1]} == {fits[-1]}  # each message says how many
    assert messages[-1][4] == "exporting to ONNX"
    progress = TrainingProgress("synth", 0.0, fits=0)
    for message in messages[:-1]:
        progress.received(message)
    assert progress.fraction == 1.0 and progress.phase == "fitting"


def test_a_training_runs_in_a_worker_with_its_progress_in_trainings(make_core: Callable[..., RecommenderCore]) -> None:
    core = make_core()
    core._retrain_in_background("synth")
    seen: list[TrainingProgress] = []

    def watched() -> bool:
        seen.extend(core.trainings())
        return bool(fitting(core))

    assert eventually(watched, seconds=300)
    (pid,) = core._pool.busy()  # type: ignore[union-attr]
    assert pid != os.getpid()
    assert core.wait_for_retraining("synth", 600)
    served = core.fitted("synth")
    assert served.origin == "trained" and served.backend.startswith("onnxruntime:")
    assert any(1 <= p.fit <= p.fits and 0 < p.step <= p.steps for p in seen)
    config = core.gnn_config
    assert {p.steps for p in seen if p.step} == {config.members * config.steps}  # the worker fits the core's config
    assert "fit " in next(p for p in seen if p.phase == "fitting").describe()
    assert core.trainings() == []


def test_a_worker_that_dies_is_a_failed_training_and_the_next_search_trains_again(
    make_core: Callable[..., RecommenderCore], caplog: pytest.LogCaptureFixture
) -> None:
    core = make_core(train_inline_limit=0)  # a first training in the background: the kNN stands in
    assert core.fitted("synth").origin == "interim"
    assert eventually(lambda: bool(fitting(core)), seconds=300)
    (pid,) = core._pool.busy()  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="services.recommender.core"):
        os.kill(pid, signal.SIGKILL)
        assert core.wait_for_retraining("synth", 120)
    assert "training synth failed" in caplog.text and "died" in caplog.text
    assert "synth" not in core.warm_libraries()  # the stand-in is dropped
    again = core.fitted("synth")  # the next search trains again, the kNN answering meanwhile
    assert again.origin == "interim"
    assert core.wait_for_retraining("synth", 600)
    assert core.fitted("synth").origin == "trained"


def test_a_retraining_whose_worker_dies_leaves_the_old_weights_serving(
    make_core: Callable[..., RecommenderCore], caplog: pytest.LogCaptureFixture
) -> None:
    core = make_core()
    first = core.fitted("synth")
    assert first.origin == "trained"
    core._retrain_in_background("synth")
    assert eventually(lambda: bool(fitting(core)), seconds=300)
    (pid,) = core._pool.busy()  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="services.recommender.core"):
        os.kill(pid, signal.SIGKILL)
        assert core.wait_for_retraining("synth", 120)
    assert "background retraining of synth failed" in caplog.text
    assert core.fitted("synth") is first


def test_a_close_during_a_training_kills_its_worker(make_core: Callable[..., RecommenderCore]) -> None:
    core = make_core(train_inline_limit=0)
    core.fitted("synth")
    assert eventually(lambda: bool(fitting(core)), seconds=300)
    (pid,) = core._pool.busy()  # type: ignore[union-attr]
    (thread,) = core.training_threads()
    core.close()
    assert not thread.is_alive() and core.training_threads() == []
    assert eventually(lambda: dead(pid), seconds=10)  # killed, not left to finish (or orphaned)


def test_training_processes_is_checked(cluster: EmbeddedCluster) -> None:
    with pytest.raises(InvalidArgument, match="training_processes"):
        RecommenderCore(KnowledgeClient(cluster.addresses["knowledge"]), training_processes=-2)
