"""The probing policy's likeness chosen per library on held-out datasets (`services/recommender/likeness.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from services.recommender import likeness, policy
from services.recommender.estimators.matrix import ScoreMatrix


def clustered_library(rng: np.random.Generator, sizes: list[int], per: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Datasets in clusters, each with its own `per` models best (z 1.5 against -0.5 elsewhere), and their labels."""
    rows, labels = [], []
    models = len(sizes) * per
    for c, n in enumerate(sizes):
        base = np.full(models, -0.5)
        base[c * per : (c + 1) * per] = 1.5
        rows.append(base + 0.3 * rng.normal(size=(n, models)))
        labels += [c] * n
    return np.vstack(rows), np.array(labels)


def held_out(
    rng: np.random.Generator, z: np.ndarray, labels: np.ndarray, *, misleading: bool, count: int = 30
) -> list[likeness.HeldOutQuery]:
    """Queries from the library's clusters (accuracy 0.8 + 0.05 z); their predictions rank the models as their own
    cluster does, or, `misleading`, as the next cluster does (a library whose predictions say little)."""
    k = int(labels.max()) + 1
    ids = [f"m{j}" for j in range(z.shape[1])]
    queries = []
    for _ in range(count):
        c = int(rng.integers(k))
        truth = z[rng.choice(np.flatnonzero(labels == c))]
        shown = (c + 1) % k if misleading else c
        predicted = z[labels == shown].mean(axis=0) + 0.05 * rng.normal(size=z.shape[1])
        queries.append(
            likeness.HeldOutQuery(ids, 0.8 + 0.05 * truth, 0.8 + 0.05 * predicted, np.full(len(ids), 0.05), z)
        )
    return queries


@pytest.mark.parametrize("seed", [0, 1])
def test_telling_predictions_keep_the_datasets_like_the_query_and_misleading_ones_weigh_all_alike(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z, labels = clustered_library(rng, [50, 20, 10])
    telling = likeness.choose_likeness(held_out(rng, z, labels, misleading=False))
    # Predictions that rank as the truth does: the datasets like them decide (the default, 10).
    assert telling.likeness == policy.LIKENESS == 10.0
    assert telling.regrets[10.0] < telling.regrets[0.0] and telling.targets == 30
    misleading = likeness.choose_likeness(held_out(rng, z, labels, misleading=True))
    # Predictions that point at the wrong cluster: weighing by them walks away from the truth, the library-wide
    # portfolio hedges across the clusters.
    assert misleading.likeness == 0.0
    assert misleading.regrets[0.0] < 0.5 * misleading.regrets[10.0]
    assert misleading.gain > likeness.SURE * misleading.standard_error > 0


def test_the_default_stands_without_enough_held_out_datasets_or_a_sure_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    z, labels = clustered_library(rng, [50, 20, 10])
    few = likeness.choose_likeness(held_out(rng, z, labels, misleading=True, count=likeness.MIN_TARGETS - 1))
    assert few == likeness.LikenessChoice(policy.LIKENESS, {})
    # A gain no larger than its noise: the default stands even where another candidate's mean is lower.
    queries = held_out(rng, z, labels, misleading=True)
    monkeypatch.setattr(likeness, "SURE", 1e6)
    assert likeness.choose_likeness(queries).likeness == policy.LIKENESS
    # Another served rule than the portfolio's has no likeness to choose.
    monkeypatch.setattr(policy, "RULE", policy.GREEDY)
    assert likeness.choose_likeness(queries).regrets == {}


def test_a_replay_measures_budget_minus_one_probes_then_the_best_prediction() -> None:
    rng = np.random.default_rng(3)
    z, labels = clustered_library(rng, [30, 30])
    (query,) = held_out(rng, z, labels, misleading=False, count=1)
    regrets = likeness.replay_regrets(query, 10.0, budgets=(1, 3, 8))
    best = float(query.truth.max())
    # B = 1: the best prediction alone; B = 8, every model: nothing left to regret.
    assert regrets[1] == pytest.approx(best - float(query.truth[np.argmax(query.mean)]))
    assert regrets[8] == pytest.approx(0.0)
    assert regrets[1] >= regrets[3] >= regrets[8]


def test_a_sparse_library_reads_as_a_dense_one() -> None:
    z = np.arange(12, dtype=float).reshape(3, 4)
    z[1, 2] = np.nan
    dense = likeness.library_columns(z, [2, 0])
    sparse = likeness.library_columns(ScoreMatrix.of_dense(z), [2, 0])
    np.testing.assert_array_equal(dense, sparse)
    assert dense.shape == (3, 2) and np.isnan(dense[1, 0])
