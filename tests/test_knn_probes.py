"""The kNN estimator's probes: measured scores as similarity when datasets have no features, measured models
returned as measured, and probe conditioning only where the library's own records say it pays."""

from __future__ import annotations

import numpy as np

from modsnet.data.bundle import Bundle, Table
from modsnet.data.graph import ProbeRecord
from modsnet.data.graph_build import snapshot_from_bundle
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.probes import MEASURED


def _two_kinds_library(n_datasets: int = 40, n_models: int = 30, seed: int = 0) -> Bundle:
    """Dataset ids only (no features). Half the datasets favour the even models, half the odd ones; a model's
    score also carries noise, so only the probes can tell which half a new dataset belongs to."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_datasets):
        kind = i % 2
        level = 0.6 + 0.2 * rng.random()
        for j in range(n_models):
            favoured = (j % 2) == kind
            score = level + (0.15 if favoured else -0.15) * (1 + j / n_models) + 0.02 * rng.normal()
            rows.append({"model_id": f"m{j:02d}", "dataset_id": f"d{i:02d}", "score": f"{score:.4f}"})
    return Bundle(
        {"name": "kinds", "higher_is_better": True},
        Table("models.csv", ["model_id"], [{"model_id": f"m{j:02d}"} for j in range(n_models)]),
        Table("datasets.csv", ["dataset_id"], [{"dataset_id": f"d{i:02d}"} for i in range(n_datasets)]),
        Table("interactions.csv", ["model_id", "dataset_id", "score"], rows),
    )


def _new_dataset_scores(kind: int, n_models: int = 30) -> dict[str, float]:
    return {f"m{j:02d}": 0.7 + (0.15 if (j % 2) == kind else -0.15) * (1 + j / n_models) for j in range(n_models)}


def test_probes_define_the_neighbours_when_datasets_have_no_features() -> None:
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_two_kinds_library()), neighbours=16)
    estimator.condition = False  # the neighbours alone, chosen by the probes' scores
    for kind in (0, 1):
        truth = _new_dataset_scores(kind)
        chosen = estimator.select_probes({}, budget=3)
        assert len(chosen) == 3 and len(set(chosen)) == 3
        probes = [ProbeRecord(m, "", MEASURED, truth[m]) for m in chosen]
        predicted = {p.model_id: p for p in estimator.predict({}, probes=probes)}
        for m in chosen:  # a measured model is its measurement, with no uncertainty
            assert predicted[m].score == truth[m] and predicted[m].uncertainty == 0.0
        rest = [m for m in truth if m not in chosen]
        correlation = np.corrcoef([predicted[m].score for m in rest], [truth[m] for m in rest])[0, 1]
        assert correlation > 0.9, (kind, chosen, correlation)
        best = max(rest, key=lambda m: predicted[m].score)
        assert int(best[1:]) % 2 == kind  # the top pick is one of the favoured half

    # Without probes nothing tells the halves apart: the predictions do not follow either kind.
    cold = {p.model_id: p.score for p in estimator.predict({})}
    truth = _new_dataset_scores(0)
    assert abs(np.corrcoef(list(cold.values()), [truth[m] for m in cold])[0, 1]) < 0.5


def test_probes_choose_models_that_behave_unlike_each_other() -> None:
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_two_kinds_library()), neighbours=16)
    chosen = estimator.select_probes({}, budget=2)
    assert {int(m[1:]) % 2 for m in chosen} == {0, 1}  # one of each half: together they tell the halves apart


def test_probes_of_unknown_models_or_other_kinds_are_ignored_and_known_datasets_use_their_own_records() -> None:
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_two_kinds_library()), neighbours=16)
    cold = [p.score for p in estimator.predict({})]
    ignored = [ProbeRecord("nobody", "", MEASURED, 0.9), ProbeRecord("m00", "", "LogME", 3.0)]
    assert [p.score for p in estimator.predict({}, probes=ignored)] == cold
    assert estimator.probes_used(ignored) == 0
    assert estimator.select_probes({}, known_dataset="d00", budget=3) == []
    own = {p.model_id: p.score for p in estimator.predict({}, known_dataset="d00", probes=[ignored[0]])}
    assert own["m00"] == estimator.scores.get(0, 0)


def _low_rank_library(n_datasets: int, n_models: int = 30, rank: int = 2, seed: int = 0) -> Bundle:
    """Scores from a planted low-rank structure: a model's score moves with a few latent traits of a dataset,
    so models co-vary across datasets and one model's surprise on a new dataset says something of others'."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(n_models, rank))
    rows = []
    for i in range(n_datasets):
        traits, level = rng.normal(size=rank), 0.7 + 0.1 * rng.random()
        for j in range(n_models):
            score = level + 0.05 * loadings[j] @ traits + 0.01 * rng.normal()
            rows.append({"model_id": f"m{j:02d}", "dataset_id": f"d{i:02d}", "score": f"{score:.4f}"})
    return Bundle(
        {"name": "low-rank", "higher_is_better": True},
        Table("models.csv", ["model_id"], [{"model_id": f"m{j:02d}"} for j in range(n_models)]),
        Table("datasets.csv", ["dataset_id"], [{"dataset_id": f"d{i:02d}"} for i in range(n_datasets)]),
        Table("interactions.csv", ["model_id", "dataset_id", "score"], rows),
    )


def test_conditioning_is_decided_on_the_library_own_records() -> None:
    # Enough datasets to estimate how models co-vary: the validation on held-out datasets turns it on.
    assert KnnPopularityEstimator(snapshot_from_bundle(_low_rank_library(40))).condition
    # A handful of datasets: too few to estimate how models co-vary, so conditioning stays off.
    assert not KnnPopularityEstimator(snapshot_from_bundle(_low_rank_library(6))).condition
