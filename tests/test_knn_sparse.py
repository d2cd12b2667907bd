"""The kNN estimator's sparse score matrix: the same numbers as the dense arrays it replaced, and the GNN's
size limit above which the kNN serves instead."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synthetic import write_library

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import InteractionColumns, pair_sums
from services.recommender.core import RecommenderCore
from services.recommender.estimators.knn import KnnPopularityEstimator, correlation_with
from services.recommender.estimators.matrix import ScoreMatrix
from services.recommender.evaluation import graph_from_bundle
from services.recommender.probes import ProbeSelector, probe_scores


def _dense(rng: np.random.Generator, shape: tuple[int, int] = (30, 40), density: float = 0.3) -> np.ndarray:
    values = rng.normal(size=shape)
    values[rng.random(shape) > density] = np.nan
    values[3] = np.nan  # an empty row
    return values


def test_means_of_repeated_records_match_the_dense_pair_sums() -> None:
    rng = np.random.default_rng(0)
    records = InteractionColumns(
        [f"m{j}" for j in range(7)],
        [f"d{i}" for i in range(5)],
        rng.integers(0, 7, 60),
        rng.integers(0, 5, 60),
        rng.normal(size=60),
    )
    models, datasets = ["m6", "m0", "m3", "m1", "m2", "m4"], ["d4", "d0", "d2", "d1"]  # some ids left out
    total, count = pair_sums(records, models, datasets)
    dense = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    matrix = ScoreMatrix.of_means(records, models, datasets)
    np.testing.assert_allclose(matrix.toarray(), dense, equal_nan=True)
    assert matrix.nnz == int((count > 0).sum())


def test_rows_columns_and_products_read_as_the_dense_array_with_nan() -> None:
    dense = _dense(np.random.default_rng(1))
    matrix = ScoreMatrix.of_dense(dense)
    counts, mean, std = matrix.row_stats()
    np.testing.assert_array_equal(counts, (~np.isnan(dense)).sum(axis=1))
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        np.testing.assert_allclose(mean, np.nanmean(dense, axis=1), equal_nan=True)
        np.testing.assert_allclose(std, np.nanstd(dense, axis=1), equal_nan=True)
    np.testing.assert_allclose(matrix.columns([5, 0, 5]), dense[:, [5, 0, 5]], equal_nan=True)
    np.testing.assert_allclose(matrix.dense_row(7), dense[7], equal_nan=True)
    assert matrix.get(7, int(np.flatnonzero(~np.isnan(dense[7]))[0])) == dense[7][~np.isnan(dense[7])][0]
    assert np.isnan(matrix.get(3, 0))
    other = np.random.default_rng(2).normal(size=(dense.shape[0], 3))
    filled = np.nan_to_num(dense)
    np.testing.assert_allclose(matrix.transposed_product(other), filled.T @ other)
    some = np.array([7, 0, 39, 7])
    np.testing.assert_allclose(matrix.transposed_product(other, columns=some), (filled.T @ other)[some])
    np.testing.assert_allclose(
        matrix.without(2).transposed_product(other, columns=some),
        (np.delete(filled, 2, 0).T @ np.delete(other, 2, 0))[some],
    )
    np.testing.assert_allclose(matrix.column_sums(), filled.sum(axis=0))
    for rows in ([4, 1, 9], np.arange(dense.shape[0])):  # a few rows, and every row (the other branch)
        weights = np.linspace(0.2, 1.0, len(rows))
        got, size = matrix.weighted_row_sum(np.array(rows), weights)
        np.testing.assert_allclose(got, (weights[:, None] * filled[rows]).sum(axis=0))
        assert size == int((~np.isnan(dense[rows])).sum())


def test_a_hidden_row_reads_as_empty_everywhere() -> None:
    dense = _dense(np.random.default_rng(3))
    without = dense.copy()
    without[5] = np.nan
    hidden = ScoreMatrix.of_dense(dense).without(5)
    np.testing.assert_allclose(hidden.toarray(), without, equal_nan=True)
    np.testing.assert_allclose(hidden.columns([1, 2]), without[:, [1, 2]], equal_nan=True)
    for j in range(dense.shape[1]):
        np.testing.assert_allclose(
            hidden.column_at(j, np.array([9, 5, 0, 5])), without[[9, 5, 0, 5], j], equal_nan=True
        )
    np.testing.assert_allclose(hidden.column_sums(), np.nan_to_num(without).sum(axis=0))
    assert hidden.row(5)[0].size == 0 and hidden.row_counts()[5] == 0
    rows = np.arange(dense.shape[0])
    got, _ = hidden.weighted_row_sum(rows, np.ones(len(rows)))
    np.testing.assert_allclose(got, np.nan_to_num(without).sum(axis=0))
    np.testing.assert_allclose(
        correlation_with(hidden, np.array([0, 7])), correlation_with(without, np.array([0, 7]), min_common=10)
    )


def test_correlation_and_probe_scores_are_the_dense_ones() -> None:
    rng = np.random.default_rng(4)
    dense = _dense(rng, (60, 25), density=0.6)
    matrix = ScoreMatrix.of_dense(dense)
    js = np.array([3, 11, 20])
    np.testing.assert_allclose(correlation_with(matrix, js), correlation_with(dense, js), atol=1e-12)
    some = np.array([20, 4, 3])  # a subset of the rows, a probed model among them
    for z in (matrix, dense):
        np.testing.assert_allclose(correlation_with(z, js, models=some), correlation_with(dense, js)[some], atol=1e-12)
    similarity = rng.random(60)
    identity = np.eye(25)
    np.testing.assert_allclose(probe_scores(similarity, matrix, identity), probe_scores(similarity, dense, identity))
    ids = [f"m{j}" for j in range(25)]
    for among in (None, ids[::2]):
        sparse_pick = ProbeSelector(matrix, identity, ids).select(similarity, 4, among=among, exclude=["m0"])
        assert sparse_pick == ProbeSelector(dense, identity, ids).select(similarity, 4, among=among, exclude=["m0"])


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = write_library(tmp_path_factory.mktemp("sparse") / "synth", n_models=40, n_datasets=30, seed=5)
    snapshot, _ = graph_from_bundle(read_bundle(folder))
    return snapshot


def test_a_model_no_neighbour_scored_is_predicted_by_its_popularity(library) -> None:  # type: ignore[no-untyped-def]
    # Models 20-39 keep one record each (on one dataset): most of them have none on the query's 8 neighbours.
    records = InteractionColumns.from_records(library.interactions)
    model, dataset = records.model_index, records.dataset_index
    kept = records.take((model < 20) | (dataset == model % len(library.datasets)))
    estimator = KnnPopularityEstimator(dataclasses.replace(library, interactions=kept))
    features = library.datasets[0].features
    idx, w = estimator._neighbours(features, None)
    scored = {int(j) for i in idx for j in estimator.scores.row(int(i))[0]}
    silent = [j for j in range(len(estimator.model_ids)) if j not in scored]
    assert silent, "the test needs models none of the neighbours scored"
    anchor_mean = float(np.average(estimator.row_mean[idx], weights=w))
    anchor_spread = float(np.average(estimator.row_spread[idx], weights=w))
    vectors = estimator.score_all(features)
    expected = estimator.sign * (anchor_mean + anchor_spread * estimator.popularity[silent])
    np.testing.assert_allclose(vectors.scores[silent], expected)
    np.testing.assert_allclose(vectors.uncertainty[silent], anchor_spread)  # variance 1 in z
    assert not np.isnan(vectors.scores).any()


class _Knowledge:
    """The recommender's view of knowledge, over one snapshot."""

    def __init__(self, snapshot):  # type: ignore[no-untyped-def]
        self.snapshot_ = snapshot

    def graph_head(self, library: str) -> tuple[int, str]:
        return self.snapshot_.graph_version, self.snapshot_.library.bundle_blob_id

    def graph_version(self, library: str) -> int:
        return self.snapshot_.graph_version

    def snapshot(self, library: str):  # type: ignore[no-untyped-def]
        return self.snapshot_

    def snapshot_since(self, library: str, since_version: int):  # type: ignore[no-untyped-def]
        return self.snapshot_  # no history kept: the whole graph, as a store that cannot give a change

    def close(self) -> None:
        pass


def test_a_library_over_the_gnn_cell_limit_is_served_by_the_knn(library) -> None:  # type: ignore[no-untyped-def]
    cells = len(library.datasets) * len(library.models)
    core = RecommenderCore(
        _Knowledge(library), None, estimator="gnn", gnn_max_cells=cells - 1, device="cpu", sparse_gnn=False
    )
    served = core.fitted(library.library.name)
    assert served.estimator.name.startswith("knn") and served.origin == "trained"
    assert core.train(library.library.name).estimator.startswith("knn")  # `modsnet train` too: no GNN
    assert not core.training_threads()
    core.close()


def test_a_query_computes_its_feature_distances_once(library) -> None:  # type: ignore[no-untyped-def]
    """The blend's weights and its members ask for the same distances: the thread's last answer is reused for the
    same features of the same estimator, and only then (it is read-only, as it is shared)."""
    estimator = KnnPopularityEstimator(library)
    other = KnnPopularityEstimator(dataclasses.replace(library, datasets=library.datasets[:20]))
    near, far = library.datasets[0].features, library.datasets[1].features
    first = estimator._feature_distance(near)
    assert first is not None and not first.flags.writeable
    assert estimator._feature_distance(dict(near)) is first  # equal features: the same array, no second pass
    elsewhere = estimator._feature_distance(far)
    assert elsewhere is not first
    assert other._feature_distance(near) is not first  # another estimator (other datasets): its own distances
    again = estimator._feature_distance(near)
    np.testing.assert_array_equal(again, first)
    assert estimator.nearest_distance(near) == float(first.min())
