"""Interval calibration: split conformal on held-out datasets (services/recommender/calibration.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from synthetic import write_library

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import DatasetNode, InteractionRecord, LibraryInfo, Snapshot
from modsnet.data.graph_build import dataset_raw_features
from services.recommender.calibration import (
    CALIBRATION_FITS,
    FAMILY_RUN,
    MAX_HOLDOUT,
    PSEUDO_TARGETS,
    SCALE_PROBES,
    Z80,
    IntervalScale,
    calibrated,
    conformal_factor,
    holdout_folds,
    learn_scale,
)
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.evaluation import graph_from_bundle


def test_the_conformal_factor_is_the_corrected_quantile_over_z80() -> None:
    ratios = np.arange(1, 11, dtype=float)  # n = 10: rank ceil(11 * 0.8) = 9
    assert conformal_factor(ratios) == pytest.approx(9 / Z80)
    assert conformal_factor(np.array([np.nan, 2.0])) == pytest.approx(2 / Z80)  # n = 1: the one value
    assert conformal_factor(np.array([])) == 1.0


def test_too_few_datasets_leave_sigma_as_it_is(tmp_path: Path) -> None:
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=3)))
    scale = learn_scale(snapshot, KnnPopularityEstimator)
    assert scale.factor == 1.0 and scale.pairs == 0


class Overconfident(KnnPopularityEstimator):
    """kNN with σ a tenth of its own: intervals that miss most scores, as the GNN's ensemble spread did."""

    def __init__(self, snapshot: Snapshot):
        super().__init__(snapshot)
        self._own_scale = 0.1

    @property
    def interval_scale(self) -> float:
        return self._own_scale * self._calibration

    @interval_scale.setter
    def interval_scale(self, value: float) -> None:
        self._calibration = value


def test_calibration_restores_the_coverage_of_overconfident_intervals_on_new_datasets(tmp_path: Path) -> None:
    """Calibrate on half of a library's datasets, check coverage on the other half, never seen by either fit."""
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=60, n_models=12, seed=3)))
    rated = sorted({r.dataset_id for r in snapshot.interactions})
    test = set(rated[1::2])
    train = replace(snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id not in test])
    raw = Overconfident(train)
    estimator, scale = calibrated(train, Overconfident)
    assert scale.pairs > 0 and scale.factor > 1.0
    assert scale.raw_coverage is not None and scale.raw_coverage < 0.5

    def coverage(model: KnnPopularityEstimator) -> float:
        nodes = {d.dataset_id: d for d in snapshot.datasets}
        truth = {(r.dataset_id, r.model_id): r.score for r in snapshot.interactions if r.dataset_id in test}
        inside = []
        for d in sorted(test):
            for p in model.predict(dataset_raw_features(nodes[d]), known_dataset=d):
                inside.append(abs(truth[(d, p.model_id)] - p.score) <= Z80 * p.uncertainty)
        return float(np.mean(inside))

    before, after = coverage(raw), coverage(estimator)
    assert before < 0.5
    # Conformal errs on the safe side: the calibration fit saw a fifth fewer datasets than the served one.
    assert 0.75 <= after <= 0.97, (before, after)


def test_a_small_library_is_cross_fitted_so_every_dataset_is_held_out_once(tmp_path: Path) -> None:
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=12, n_models=6)))
    fits: list[int] = []

    def fit(graph: Snapshot) -> KnnPopularityEstimator:
        fits.append(len({r.dataset_id for r in graph.interactions}))
        return Overconfident(graph)

    scale = learn_scale(snapshot, fit)  # a fifth of 12 is 2, fewer than MIN_HOLDOUT
    assert len(fits) == 3 and sorted(fits) == [8, 8, 8]  # 12 datasets over 3 folds
    assert scale.datasets == 12 and scale.pairs == 12 * 6
    assert scale.factor > 1.0  # the overconfident σ is widened


def test_a_large_library_is_calibrated_on_disjoint_fifths_until_enough_datasets_are_held_out() -> None:
    """One fit hides at most MAX_HOLDOUT datasets (it must still train on most of the library); where that caps the
    fifth, more fits hide other datasets, disjoint, until about PSEUDO_TARGETS are held out: a quantile or a weight
    over 40 datasets is a draw of 40, whatever their pairs. A smaller library hides its fifth in one fit."""

    def library(n: int) -> Snapshot:
        records = [InteractionRecord(m, f"d{i:04d}", 0.5) for i in range(n) for m in ("m0", "m1")]
        return Snapshot(LibraryInfo("lib", {}, 2, n, len(records), 1, "", 0.0), [], [], records, [])

    folds = holdout_folds(library(400), seed=2)
    assert [len(f) for f in folds] == [MAX_HOLDOUT] * CALIBRATION_FITS
    hidden = [d for f in folds for d in f]
    assert len(set(hidden)) == len(hidden) >= PSEUDO_TARGETS  # disjoint
    assert holdout_folds(library(400), seed=2) == folds and holdout_folds(library(400), seed=3) != folds  # seeded
    assert len(holdout_folds(library(400), fits=1)) == 1
    assert [len(f) for f in holdout_folds(library(250))] == [MAX_HOLDOUT] * CALIBRATION_FITS  # a fifth of 50: capped
    assert [len(f) for f in holdout_folds(library(200))] == [40]  # a fifth of 200 is 40: held out in one fit
    assert [len(f) for f in holdout_folds(library(60))] == [12]


def _segments(hidden: list[str], ids: list[str]) -> int:
    """How many runs of consecutive ids (in sorted order) `hidden` makes."""
    at = sorted(ids.index(d) for d in hidden)
    return 1 + sum(b != a + 1 for a, b in itertools.pairwise(at))


def test_a_family_holdout_hides_runs_of_consecutive_ids() -> None:
    """Ids that begin with their source sort into families: hidden by runs, a held-out dataset's relatives go with
    it, where a random fifth leaves almost every one of them in the graph."""
    ids = [f"{family}-{i}" for family in ("alpha", "beta", "delta", "gamma") for i in range(20)]
    records = [InteractionRecord(m, d, 0.5) for d in ids for m in ("m0", "m1", "m2")]
    snapshot = Snapshot(LibraryInfo("lib", {}, 3, 80, len(records), 1, "", 0.0), [], [], records, [])
    ids.sort()
    random_fifth = holdout_folds(snapshot, seed=1)[0]
    (families,) = holdout_folds(snapshot, seed=1, run=10)
    assert len(families) == len(random_fifth) == 16 and set(families) <= set(ids)
    assert _segments(families, ids) <= 3  # two runs of 10, the first perhaps cut short by the offset
    assert _segments(random_fifth, ids) > 6
    assert holdout_folds(snapshot, seed=1, run=10) == [families]  # seeded
    (sparse,) = holdout_folds(snapshot, seed=1, run=30, density=1 / 3)
    assert len(sparse) == 16 and _segments(sparse, ids) > 3  # a third of each run of 30: spread inside the runs


def test_datasets_that_name_their_source_are_held_out_by_whole_sources() -> None:
    """TextZoo-like: every dataset names its source group; calibration cross-fits hide whole groups, each dataset
    once, so a held-out dataset never keeps a sibling in the graph (as the leave-one-source-out evaluation)."""
    groups = {f"{g}-{i}": g for g in ("a", "b", "c", "d", "e", "f", "g") for i in range(4)}
    records = [InteractionRecord(m, d, 0.5) for d in groups for m in ("m0", "m1", "m2")]
    datasets = [DatasetNode("lib", d, {"source_group": g}) for d, g in groups.items()]
    snapshot = Snapshot(LibraryInfo("lib", {}, 3, len(groups), len(records), 1, "", 0.0), [], datasets, records, [])
    folds = holdout_folds(snapshot, by_group=True)
    assert len(folds) == 3 and sorted(d for f in folds for d in f) == sorted(groups)
    for fold in folds:
        hidden_groups = {groups[d] for d in fold}
        assert set(fold) == {d for d, g in groups.items() if g in hidden_groups}
    assert len(holdout_folds(snapshot)) == 1  # not asked for: a random fifth, one split
    unnamed = replace(snapshot, datasets=[replace(datasets[0], metadata={}), *datasets[1:]])
    assert len(holdout_folds(unnamed, by_group=True)) == 1  # a dataset without a group: one by one


def test_a_probed_query_gets_a_scale_learned_with_probes(tmp_path: Path) -> None:
    """The held-out datasets are predicted again with PROBE_BUDGET models measured: a second, smaller factor,
    from the models left unmeasured (a probe moves the prediction more than it shrinks the kNN's σ)."""
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=40, n_models=12, seed=3)))
    scale = learn_scale(snapshot, KnnPopularityEstimator)
    assert scale.probed_factor is not None and scale.probed_pairs == scale.datasets * (12 - SCALE_PROBES)
    assert scale.factor_for(probed=True) == scale.probed_factor and scale.factor_for(probed=False) == scale.factor
    assert IntervalScale(2.0).factor_for(probed=True) == 2.0  # nothing learned with probes: the cold factor


def test_the_scale_can_be_learned_on_families_held_out(tmp_path: Path) -> None:
    """`family_run`: `learn_scale` hides runs of consecutive ids (a dataset's near-duplicates go with it, as in
    the evaluation's folds of consecutive targets), not a random fifth one by one."""
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=60, n_models=6, seed=3)))
    ids = sorted({r.dataset_id for r in snapshot.interactions})
    hidden: list[list[str]] = []

    def fit(graph: Snapshot) -> KnnPopularityEstimator:
        kept = {r.dataset_id for r in graph.interactions}
        hidden.append([d for d in ids if d not in kept])
        return KnnPopularityEstimator(graph)

    scale = learn_scale(snapshot, fit, family_run=FAMILY_RUN)
    assert hidden == holdout_folds(snapshot, run=FAMILY_RUN) and scale.datasets == 12  # a fifth of 60
    assert _segments(hidden[0], ids) <= 3 < _segments(holdout_folds(snapshot)[0], ids)
    hidden.clear()
    learn_scale(snapshot, fit)
    assert hidden == [sorted(f) for f in holdout_folds(snapshot)]  # by default one by one
