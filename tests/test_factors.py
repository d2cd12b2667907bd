"""The low-rank fit behind probes without dataset features (`estimators/factors.py`) and its use by the kNN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modsnet.data.bundle import Bundle, Table
from modsnet.data.graph import ProbeRecord
from modsnet.data.graph_build import snapshot_from_bundle
from services.recommender.estimators import factors
from services.recommender.estimators.blend import fit_blend
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.estimators.matrix import ScoreMatrix
from services.recommender.probes import MEASURED


def _planted(n_datasets: int, n_models: int = 40, rank: int = 2, seed: int = 0, noise: float = 0.005):
    """Scores with a planted low-rank structure and a level and spread per dataset: (datasets x models)."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(n_models, rank))
    base = rng.normal(size=n_models)
    traits = rng.normal(size=(n_datasets, rank))
    level = 0.6 + 0.2 * rng.random(n_datasets)
    spread = 0.04 + 0.04 * rng.random(n_datasets)
    z = base + traits @ loadings.T + noise / 0.05 * rng.normal(size=(n_datasets, n_models))
    return level[:, None] + spread[:, None] * z


def _library(scores: np.ndarray, *, features: bool = False) -> Bundle:
    n_datasets, n_models = scores.shape
    rows = [
        {"model_id": f"m{j:02d}", "dataset_id": f"d{i:02d}", "score": f"{scores[i, j]:.5f}"}
        for i in range(n_datasets)
        for j in range(n_models)
    ]
    datasets = [{"dataset_id": f"d{i:02d}", **({"rows": str(100 + i)} if features else {})} for i in range(n_datasets)]
    return Bundle(
        {"name": "planted", "higher_is_better": True},
        Table("models.csv", ["model_id"], [{"model_id": f"m{j:02d}"} for j in range(n_models)]),
        Table("datasets.csv", ["dataset_id", *(["rows"] if features else [])], datasets),
        Table("interactions.csv", ["model_id", "dataset_id", "score"], rows),
    )


def _pearson(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_loadings_and_vectors_rebuild_a_low_rank_residual_dense_and_sparse(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    exact = 0.3 * rng.normal(size=(30, 3)) @ rng.normal(size=(3, 20))  # within the ±5 the residuals are clipped to
    z = ScoreMatrix.of_dense(exact)
    residual, _ = factors.residual_matrix(z, np.arange(30), np.zeros(20))
    loadings, vectors = factors.loadings(residual, 3)
    assert loadings.shape == (20, 3) and vectors.shape == (30, 3)
    np.testing.assert_allclose(vectors @ loadings.T, exact, atol=1e-9)
    np.testing.assert_allclose(vectors.var(axis=0) + vectors.mean(axis=0) ** 2, 1.0, atol=1e-9)  # unit scale
    monkeypatch.setattr(factors, "DENSE_CELLS", 0)  # the sparse SVD of a large library: the same product
    sparse_loadings, sparse_vectors = factors.loadings(residual, 3)
    np.testing.assert_allclose(sparse_vectors @ sparse_loadings.T, exact, atol=1e-6)
    # A rank the data cannot carry is cut to datasets - 1; a held-out row fitted by its own vector leaves nothing.
    assert factors.loadings(residual, 50)[0].shape[1] == 19
    assert factors.unexplained(residual, loadings) == pytest.approx(0.0, abs=1e-12)
    assert factors.unexplained(residual, loadings[:, :0]) == pytest.approx(float(np.mean(exact**2)))


def test_residuals_are_taken_against_the_popularity_of_the_rows_kept() -> None:
    values = np.array([[1.0, -1.0, np.nan], [3.0, 1.0, 2.0]])
    residual, popularity = factors.residual_matrix(ScoreMatrix.of_dense(values), np.array([1]))
    np.testing.assert_allclose(popularity, [1.5, 0.5, 1.0])  # one pseudo-record at 0 per model
    np.testing.assert_allclose(residual.toarray(), [[1.5, 0.5, 1.0]])
    held, _ = factors.residual_matrix(ScoreMatrix.of_dense(values), np.array([0]), popularity)
    np.testing.assert_allclose(held.toarray(), [[-0.5, -1.5, 0.0]])  # no record: 0, at popularity


def test_joint_prior_keeps_how_level_and_latent_vector_move_together_beyond_the_noise_of_n_datasets() -> None:
    rng = np.random.default_rng(3)
    level = 0.7 + 0.1 * rng.normal(size=40)
    spread = 0.08 + 0.01 * rng.normal(size=40)
    vectors = np.stack([(level - 0.7) / 0.1 + 0.3 * rng.normal(size=40), rng.normal(size=40)], axis=1)
    mean, covariance = factors.joint_prior(level, spread, vectors)
    theta = np.stack([level, spread, spread * vectors[:, 0], spread * vectors[:, 1]])
    np.testing.assert_allclose(mean, theta.mean(axis=1))
    raw = np.cov(theta, bias=True)
    np.testing.assert_allclose(np.diag(covariance), np.diag(raw))  # variances as they are
    r = raw[0, 2] / np.sqrt(raw[0, 0] * raw[2, 2])
    assert r > 0.9 and covariance[0, 2] == pytest.approx(raw[0, 2] * (1 - 1 / (40 * r**2)))  # easy: high factor
    # A correlation within the noise of 40 datasets (|r| < 1/√40) is taken as none.
    weak = np.abs(raw / np.sqrt(np.outer(np.diag(raw), np.diag(raw)))) < 1 / np.sqrt(40)
    assert weak.any() and np.all(covariance[weak] == 0.0)
    # One dataset: the mean and no covariance at all.
    assert factors.joint_prior(level[:1], spread[:1], vectors[:1])[1].tolist() == np.zeros((4, 4)).tolist()


def test_a_latent_fit_recovers_a_planted_dataset_from_few_probes() -> None:
    rng = np.random.default_rng(2)
    loadings = rng.normal(size=(30, 2))
    popularity = rng.normal(size=30)
    fit = factors.LatentFit(
        loadings, popularity, 1e-6, np.array([0.7, 0.05, 0, 0]), np.diag([0.01, 1e-4, 0.0025, 0.0025])
    )
    vector = np.array([1.0, -0.5])
    truth = 0.72 + 0.05 * (popularity + loadings @ vector)
    probes = np.array(fit.select(np.arange(30), 4))
    assert len(set(probes.tolist())) == 4 and probes[0] == int(np.argmax(popularity))
    predicted, sd = fit.predict(probes, truth[probes])
    np.testing.assert_allclose(predicted, truth, atol=1e-3)
    assert np.all(sd > 0)
    # Probes limited to some models are chosen among them; the popular rule takes the most popular of them.
    among = np.array([3, 7, 11, 19, 23])
    assert set(fit.select(among, 3)) <= set(among.tolist())
    popular = dataclasses.replace(fit, rule=factors.POPULAR)
    assert popular.select(among, 2) == sorted(among.tolist(), key=lambda j: -popularity[j])[:2]
    assert fit.select(among, 0) == [] and fit.select(np.zeros(0, dtype=int), 3) == []


def test_a_featureless_library_with_low_rank_scores_is_probed_through_the_latent_fit() -> None:
    scores = _planted(61)
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_library(scores[:60])))
    assert estimator.latent is not None and estimator.latent.rank >= 1, estimator.latent_validation
    best = max(v for k, v in estimator.latent_validation.items() if k != "knn")
    assert best > estimator.latent_validation["knn"]
    truth = dict(zip(estimator.model_ids, scores[60].tolist(), strict=True))
    chosen = estimator.select_probes({}, budget=3)
    assert len(set(chosen)) == 3
    probes = [ProbeRecord(m, "", MEASURED, truth[m]) for m in chosen]
    predicted = {p.model_id: p for p in estimator.predict({}, probes=probes)}
    for m in chosen:  # measured: the measurement, no uncertainty
        assert predicted[m].score == truth[m] and predicted[m].uncertainty == 0.0
    rest = [m for m in truth if m not in chosen]
    latent = _pearson([predicted[m].score for m in rest], [truth[m] for m in rest])
    popular = _pearson([estimator.popularity[estimator.model_index[m]] for m in rest], [truth[m] for m in rest])
    assert latent > 0.9 and latent > popular + 0.1, (latent, popular)
    assert all(predicted[m].uncertainty > 0 for m in rest)
    # Without probes nothing is fitted: the cold prediction is the neighbours' (popularity here), as before.
    fitted, estimator.latent = estimator.latent, None
    assert [p.score for p in estimator.predict({})] == [p.score for p in KnnPopularityEstimator.predict(estimator, {})]
    estimator.latent = fitted


def test_a_fit_that_keeps_the_choices_of_another_refits_its_latent_factors_on_its_own_records() -> None:
    """A refresh's kNN keeps the rank, rule and noise chosen on held-out datasets by the last training and fits
    the factors at that rank on the records it has (`KnnChoices`): on the same records, the same fit to the bit;
    on more records, its own loadings."""
    scores = _planted(61)
    full = KnnPopularityEstimator(snapshot_from_bundle(_library(scores[:60])))
    assert full.latent is not None and full.choices.latent_rank is not None
    kept = KnnPopularityEstimator(snapshot_from_bundle(_library(scores[:60])), choices=full.choices)
    assert kept.choices == full.choices and kept.condition == full.condition
    assert kept.latent is not None
    for name in ("loadings", "popularity", "prior_mean", "prior_covariance"):
        np.testing.assert_array_equal(getattr(kept.latent, name), getattr(full.latent, name))
    assert (kept.latent.noise, kept.latent.rule) == (full.latent.noise, full.latent.rule)
    grown = KnnPopularityEstimator(snapshot_from_bundle(_library(scores)), choices=full.choices)
    assert grown.choices == full.choices and len(grown.dataset_ids) == 61
    assert grown.latent is not None and grown.latent.rank == full.latent.rank
    assert not np.array_equal(grown.latent.loadings, full.latent.loadings)


def test_a_query_with_features_keeps_the_feature_neighbours() -> None:
    scores = _planted(61)
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_library(scores[:60], features=True)))
    truth = dict(zip(estimator.model_ids, scores[60].tolist(), strict=True))
    probes = [ProbeRecord(m, "", MEASURED, truth[m]) for m in estimator.model_ids[:3]]
    with_latent = [p.score for p in estimator.predict({"rows": 130.0}, probes=probes)]
    chosen = estimator.select_probes({"rows": 130.0}, budget=3)
    estimator.latent = None
    assert [p.score for p in estimator.predict({"rows": 130.0}, probes=probes)] == with_latent
    assert estimator.select_probes({"rows": 130.0}, budget=3) == chosen


def test_too_few_datasets_leave_the_probe_neighbours_in_charge() -> None:
    estimator = KnnPopularityEstimator(snapshot_from_bundle(_library(_planted(4))))
    assert estimator.latent is None and estimator.latent_validation == {}


def test_the_served_knn_blend_ranks_a_featureless_probed_query_by_the_latent_fit() -> None:
    scores = _planted(31, seed=1)
    served = fit_blend(snapshot_from_bundle(_library(scores[:30])), KnnPopularityEstimator)
    assert served.knn.latent is not None
    truth = dict(zip(served.model_ids, scores[30].tolist(), strict=True))
    chosen = served.select_probes({}, budget=3)
    assert chosen == served.knn.select_probes({}, budget=3)  # the latent fit's probes
    scored = served.score_all({}, probes=[ProbeRecord(m, "", MEASURED, truth[m]) for m in chosen])
    rest = [j for j, m in enumerate(served.model_ids) if m not in chosen]
    assert _pearson(scored.scores[rest], [truth[served.model_ids[j]] for j in rest]) > 0.9
    assert np.all(np.isfinite(scored.uncertainty[rest])) and np.all(scored.uncertainty[rest] > 0)
