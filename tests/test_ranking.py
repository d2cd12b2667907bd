"""The top-k's candidates over a large library (ranking.py): the sampled bound finds exactly what argpartition over
every value did, ties, NaN and constraints included."""

from __future__ import annotations

import numpy as np
import pytest

from services.recommender.ranking import SAMPLE_STRIDE, Order, _within_count


def old_within(primary: np.ndarray, count: int) -> np.ndarray:
    """The candidates before the sampled bound: argpartition over every value."""
    threshold = primary[np.argpartition(primary, count - 1)[count - 1]]
    return np.flatnonzero(primary <= threshold)


def full_sort_first(order: Order, allowed: np.ndarray, count: int) -> np.ndarray:
    """The first `count` allowed positions of a full sort by (primary, uncertainty, id rank), NaN last."""
    keys = (order.id_rank[allowed], order.uncertainty[allowed], order.primary[allowed])
    return allowed[np.lexsort(keys)[:count]]


def vectors(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "ties":  # few distinct values: the threshold's ties are many
        return rng.choice([0.1, 0.2, 0.3, 0.4], size=n)
    if kind == "nan":  # NaN scores, and a sample that may hold some
        values = rng.normal(size=n)
        values[rng.random(n) < 0.3] = np.nan
        return values
    if kind == "mostly nan":  # fewer numbers in the strided sample than places asked for: the whole way
        values = np.full(n, np.nan)
        values[rng.choice(n, 5, replace=False)] = rng.normal(size=5)
        return values
    if kind == "sorted":  # the best at the end, away from the sample's positions
        return np.sort(rng.normal(size=n))[::-1].copy()
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "mostly nan", "sorted"])
def test_the_sampled_bound_finds_the_same_candidates_as_argpartition(kind: str) -> None:
    rng = np.random.default_rng(7)
    for n in (SAMPLE_STRIDE * 40, 50_000, 200_003):
        primary = vectors(n, kind, rng)
        for count in (1, 3, 10, 11, 50):
            assert np.array_equal(_within_count(primary, count), old_within(primary, count)), (n, count)


@pytest.mark.parametrize("kind", ["normal", "ties", "nan", "sorted"])
def test_first_over_a_large_library_is_the_full_sort(kind: str) -> None:
    rng = np.random.default_rng(11)
    n = 100_000
    primary = vectors(n, kind, rng)
    uncertainty = rng.choice([0.0, 0.1, 0.2], size=n)
    order = Order(primary, uncertainty, rng.permutation(n))
    everything = np.arange(n)
    some = np.flatnonzero(rng.random(n) < 0.6)
    for allowed in (everything, some):
        for count in (1, 10, 40):
            assert np.array_equal(order.first(allowed, count), full_sort_first(order, allowed, count)), count
