"""Offline evaluation of estimators: the leave-one-dataset-out protocol of design.md, in-process on a bundle.

For each target dataset t (alone, or with the other targets of its fold) every interaction of t is
hidden; t keeps its features and its similarity to other datasets. Each method is fitted on what is
left and predicts P̂(t, m) for every model with a real record on t; the prediction is compared with the
real scores. A method that wants probes asks the fold's `measure`, which hands out at most the probe
budget per target and adds up the seconds the probes cost: recorded transferability scores (LogME,
H-score) where the library has `probes.csv`, otherwise the real measurement of the model on t (its
hidden interaction, costing its train_seconds), which is what OBOE does to a new dataset.

Baselines run in the same process: random (seeded), popularity, the kNN estimator, LogME (ranking by the
recorded probe on t) and TransferGraph's published row. No grpc here: this runs on a bundle folder.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from modsnet.data.bundle import Bundle, Table, number, read_bundle
from modsnet.data.graph import DatasetNode, InteractionRecord, Snapshot
from modsnet.data.graph_build import dataset_raw_features, snapshot_from_bundle
from modsnet.data.probe_scale import FAMILY_COLUMN, ProbeScale, learn_probe_scale, on_record_scale
from modsnet.models.probing import SAMPLE_ROWS
from modsnet.runtime.errors import InvalidArgument, ModsnetError
from modsnet.runtime.stubs import DEFAULT_PROBES

from . import decisions, policy
from .calibration import HOLDOUT_FRACTION, Z80, calibrated
from .decisions import BUDGETS, DecisionTable, Ranking, decision_table
from .estimators.base import ProbeRecord
from .estimators.blend import BlendedEstimator, fit_blend
from .estimators.knn import KnnPopularityEstimator
from .policy import Probing

if TYPE_CHECKING:
    from .estimators.gnn import GnnConfig, GnnEstimator

KS = (1, 3, 5)
METRICS = (
    "pearson",
    "spearman",
    "weighted_tau",
    *(f"p@{k}" for k in KS),
    *(f"regret@{k}" for k in KS),
)
# Calibration of the predicted scores: error and bias of the predicted top 5, coverage of the 80% intervals.
CALIBRATION = ("top5_mae", "top5_bias", "coverage80")
DEFAULT_METHODS = ("modsnet", "random", "popularity", "knn", "logme", "published")
DEFAULT_PROBE_BUDGET = DEFAULT_PROBES  # what a search probes unless told otherwise
MIN_RECORDS = 10  # a target needs enough models to rank for its correlations to mean something
HELD_OUT = 100  # targets drawn when a library has more eligible datasets than this and no published list
BELOW_POPULARITY = 0.10  # issue 16: no target's Pearson this far under popularity's on the same target
MEASURED = "score"  # the probe name of a real measurement (a model trained and scored on the target)
POSTERIOR, SERVED = "posterior", "served"
# How the decision table decides after the probes (`decisions.pick_regret`): POSTERIOR, by the posterior under noisy
# probes (`policy.posterior`: the measurements left go in full where `decisions.FINAL` says, over every model, and
# the user keeps the best posterior); SERVED, the rule before (the served ranking's best unprobed, the best reading
# kept as seen). SERVED is the default: with probes that read exactly (XRDZoo's and OBOE's read the records, and
# TabZoo's read what its records read since a probe samples as the library did) the posterior rule lost at B = 5
# on XRDZoo (0.36 against 0.28 of popular-5) and OBOE (0.69 against 0.60), and it won on none of the three
# (docs/benchmarks-decisions.md, "Decisions under noisy probes"); it stays for libraries whose probes are noisy.
DECISION_RULE = SERVED
_PUBLISHED_FILES = {
    "pearson": "pearson_correlation.csv",
    "spearman": "spearman_correlation.csv",
    "weighted_tau": "w-kendall_correlation.csv",
}


def graph_from_bundle(bundle: Bundle, *, graph_version: int = 1) -> tuple[Snapshot, list[ProbeRecord]]:
    """The snapshot the knowledge service would serve for this bundle, plus its probes.

    Built by the knowledge stores' own conversion (`modsnet.data.graph_build`), so the evaluation sees
    what serving sees; nodes stay in the bundle's order.
    """
    probes = []
    if bundle.probes is not None:
        probes = [
            ProbeRecord(
                r["model_id"], r["dataset_id"], r["probe"], float(r["value"]), number(r.get("seconds", "")) or 0.0
            )
            for r in bundle.probes.rows
        ]
    return snapshot_from_bundle(bundle, graph_version=graph_version), probes


def without_dataset_features(bundle: Bundle) -> Bundle:
    """`bundle` as a published score matrix often comes: `datasets.csv` cut to its ids, no dataset features,
    no dataset similarities and no recorded probes (a probe of a target is then a real measurement of it)."""
    ids = Table(bundle.datasets.file, ["dataset_id"], [{"dataset_id": r["dataset_id"]} for r in bundle.datasets.rows])
    return replace(bundle, datasets=ids, similarity=None, probes=None, features={})


# ----------------------------------------------------------------------------------------------------
# Metrics


def target_metrics(true: np.ndarray, predicted: np.ndarray, *, higher_is_better: bool = True) -> dict[str, float]:
    """The protocol's metrics for one target; `true` and `predicted` are aligned per model.

    Everything is computed on goodness (the metric times its sign), so "top" means best for every
    library. A constant prediction ranks nothing: its correlations count as 0, not as undefined.
    Ties in the prediction are broken by model order, which is fixed, so results are reproducible.
    A NaN prediction means "not ranked": correlations use the ranked models only, while the true top-k
    and the best score (for regret) are over all models.
    """
    sign = 1.0 if higher_is_better else -1.0
    y, p = sign * np.asarray(true, dtype=float), sign * np.asarray(predicted, dtype=float)
    ranked = ~np.isnan(p)
    yr, pr = y[ranked], p[ranked]
    out: dict[str, float] = {}
    flat = len(pr) < 2 or np.ptp(pr) == 0 or np.ptp(yr) == 0
    out["pearson"] = 0.0 if flat else float(stats.pearsonr(yr, pr)[0])
    out["spearman"] = 0.0 if flat else float(stats.spearmanr(yr, pr)[0])
    out["weighted_tau"] = 0.0 if flat else float(stats.weightedtau(yr, pr)[0])
    true_order = np.argsort(-y, kind="stable")
    predicted_order = np.nonzero(ranked)[0][np.argsort(-pr, kind="stable")]
    best = y[true_order[0]]
    for k in KS:
        kk = min(k, len(y))
        top = predicted_order[:kk]
        out[f"p@{k}"] = len(set(true_order[:kk]) & set(top)) / kk
        out[f"regret@{k}"] = float(best - y[top].max()) if len(top) else float(best - y.min())
    return out


def calibration_metrics(
    true: np.ndarray, predicted: np.ndarray, uncertainty: np.ndarray, *, higher_is_better: bool = True
) -> dict[str, float]:
    """How far the predicted top 5 are from the truth (mean |error| and mean signed error, in the metric),
    and the share of all models whose true score lies in predicted ± Z80 · uncertainty (target: 0.80)."""
    sign = 1.0 if higher_is_better else -1.0
    y, p, u = (np.asarray(a, dtype=float) for a in (true, predicted, uncertainty))
    ranked = np.nonzero(~np.isnan(p))[0]
    if not len(ranked):
        return {}
    top = ranked[np.argsort(-sign * p[ranked], kind="stable")][:5]
    error = p[top] - y[top]
    out = {"top5_mae": float(np.mean(np.abs(error))), "top5_bias": float(np.mean(error))}
    covered = ~np.isnan(u[ranked])
    if covered.any():
        idx = ranked[covered]
        out["coverage80"] = float(np.mean(np.abs(p[idx] - y[idx]) <= Z80 * u[idx]))
    return out


def z_scores(snapshot: Snapshot) -> tuple[list[str], list[str], np.ndarray]:
    """Per-dataset z-scored goodness: (dataset ids, model ids, matrix with NaN where no record).

    Scores compare within a dataset, not across (a hard dataset lowers every model), hence the z.
    """
    sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
    model_ids = [m.model_id for m in snapshot.models]
    dataset_ids = sorted({r.dataset_id for r in snapshot.interactions})
    mi = {m: j for j, m in enumerate(model_ids)}
    di = {d: i for i, d in enumerate(dataset_ids)}
    total = np.zeros((len(dataset_ids), len(model_ids)))
    count = np.zeros_like(total)
    for r in snapshot.interactions:
        total[di[r.dataset_id], mi[r.model_id]] += sign * r.score
        count[di[r.dataset_id], mi[r.model_id]] += 1
    has = count > 0
    scores = np.where(has, total / np.maximum(count, 1), 0.0)
    n = np.maximum(has.sum(axis=1, keepdims=True), 1)
    mean = scores.sum(axis=1, keepdims=True) / n
    spread = np.sqrt((np.where(has, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)
    return dataset_ids, model_ids, np.where(has, (scores - mean) / np.where(spread > 1e-12, spread, 1.0), np.nan)


# ----------------------------------------------------------------------------------------------------
# Folds and methods


class ProbeBudgetExceeded(Exception):
    """A method asked for more probes of a target than the budget allows."""


@dataclass
class Fold:
    """What a method may see while predicting the held-out targets of one fold.

    `snapshot` lacks every interaction of the fold's targets; `probes` are the recorded probes a method
    may train on (the targets' own only in a run with probes). `measure` is the one door to the
    targets' data: a method that probes calls it and is charged the probes' seconds.
    """

    snapshot: Snapshot
    probes: list[ProbeRecord]
    targets: list[str]
    candidates: dict[str, list[str]]  # target -> models with a real record there, the ones to rank
    target_probes: dict[str, list[ProbeRecord]]  # every recorded probe of a target (for the LogME baseline)
    with_probes: bool
    probe_budget: int
    seed: int
    _oracle: dict[str, dict[str, ProbeRecord | list[ProbeRecord]]] = field(default_factory=dict, repr=False)
    probed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    probe_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Filled by methods that can: each candidate's predicted standard deviation (for calibration), and for the
    # decision table the ranking without probes and, per budget B, the ranking after B - 1 probes.
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)
    # Targets the served blend predicted cold, as near (False) or far (True) from the library: its weights and
    # shown interval scale depend on it (`BlendWeights.is_far`); absent where the blend has no distance split.
    far: dict[str, bool] = field(default_factory=dict)
    decision_budgets: tuple[int, ...] = ()
    cold: dict[str, dict[str, float]] = field(default_factory=dict)
    adaptive: dict[int, dict[str, Ranking]] = field(default_factory=lambda: defaultdict(dict))
    # Probes of the decision table as a search would get them (`probe_values`: target -> model -> the value a probe
    # reads; a model missing there fails its probe), and the library's probe scale learned without the fold's
    # targets, which the simulated search corrects them by (None: probes taken as measured, or as the records).
    probe_values: dict[str, dict[str, float]] = field(default_factory=dict)
    probe_scale: ProbeScale | None = None
    # Targets a probe measures whole (a table of at most `SAMPLE_ROWS` rows): the record's protocol, so a probe reads
    # the record and is marked `whole` (no sample shift or noise; the search takes it as a full measurement).
    whole: frozenset[str] = frozenset()

    def probeable(self, target: str) -> set[str]:
        """The models a probe of `target` can return something for (a recorded probe, or a real record)."""
        return set(self._oracle.get(target, {}))

    def measures_scores(self, target: str) -> bool:
        """Whether a probe of `target` is a real measurement in the library's metric (not LogME and the like)."""
        return all(isinstance(found, ProbeRecord) for found in self._oracle.get(target, {}).values())

    def measure_for_decision(self, target: str, model_ids: Iterable[str]) -> list[ProbeRecord]:
        """The real measurements of `model_ids` on `target`, for the decision table only: outside the budget of
        this run's probes (each budget of the table is its own simulated search) and never charged."""
        found = (self._oracle.get(target, {}).get(m) for m in dict.fromkeys(model_ids))
        records = [record for record in found if isinstance(record, ProbeRecord)]
        if target in self.whole:
            return [replace(r, whole=True) for r in records]
        if target in self.probe_values:  # what a probe on the target's sample reads, not its record
            reads = self.probe_values[target]
            records = [replace(r, value=reads[r.model_id]) for r in records if r.model_id in reads]
        return records

    def on_record_scale(self, probes: Sequence[ProbeRecord]) -> list[ProbeRecord]:
        """`probes` as the search corrects them (`RecommenderCore` with the library's probe scale)."""
        return on_record_scale(self.probe_scale, probes, lambda m: self._families.get(m, ""))

    @functools.cached_property
    def _families(self) -> dict[str, str]:
        """Model -> its family (`FAMILY_COLUMN`): built once a fold, not at every probe round of every target."""
        return {m.model_id: m.metadata.get(FAMILY_COLUMN, "") for m in self.snapshot.models}

    def measure(self, target: str, model_ids: Iterable[str]) -> list[ProbeRecord]:
        """Probe `model_ids` on `target`; charged to the target's budget, refused past it or without probes."""
        if not self.with_probes:
            raise ProbeBudgetExceeded("this run is cold start: no probe of a target may be taken")
        wanted = [m for m in dict.fromkeys(model_ids) if m not in self.probed[target]]
        if len(self.probed[target]) + len(wanted) > self.probe_budget:
            raise ProbeBudgetExceeded(f"{target}: more than {self.probe_budget} probes asked for")
        out: list[ProbeRecord] = []
        for model_id in wanted:
            self.probed[target].add(model_id)
            found = self._oracle.get(target, {}).get(model_id)
            records = found if isinstance(found, list) else [found] if found else []
            # Probes of one model run together (one forward pass gives LogME and H-score): pay the longest.
            self.probe_seconds[target] += max((r.seconds for r in records), default=0.0)
            out.extend(records)
        return out


Method = Callable[[Fold], dict[str, np.ndarray]]


def _features_of(node: DatasetNode | None) -> dict[str, float]:
    return dataset_raw_features(node) if node is not None else {}


def random_method(fold: Fold) -> dict[str, np.ndarray]:
    """Uniform random scores, seeded per target so a rerun gives the same figures."""
    out = {}
    for target in fold.targets:
        seed = fold.seed + sum(ord(c) for c in target)
        out[target] = np.random.default_rng(seed).random(len(fold.candidates[target]))
    return out


def popularity_method(fold: Fold) -> dict[str, np.ndarray]:
    """A model's mean z-scored score over the datasets it has records on (none of them a target)."""
    _, model_ids, z = z_scores(fold.snapshot)
    has = ~np.isnan(z)
    mean = np.where(has, z, 0.0).sum(axis=0) / np.maximum(has.sum(axis=0), 1)  # 0 for a model with no record
    popularity = dict(zip(model_ids, mean, strict=True))
    sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
    return {t: sign * np.array([popularity.get(m, 0.0) for m in fold.candidates[t]]) for t in fold.targets}


def portfolio_method(fold: Fold, count: int) -> dict[str, dict[str, float]]:
    """portfolio-B's order per target, as scores (higher = measured first), on the fold's training datasets
    (`portfolio_order`)."""
    _, model_ids, z = z_scores(fold.snapshot)
    order = portfolio_order(model_ids, z, count)
    score = {m: float(len(order) - i) for i, m in enumerate(order)}
    return {t: {m: score.get(m, -math.inf) for m in fold.candidates[t]} for t in fold.targets}


def portfolio_order(model_ids: Sequence[str], z: np.ndarray, count: int) -> list[str]:
    """The models in portfolio-B's order: first the `count` that together did best over the datasets of `z`
    (datasets x models, NaN where no record; `policy.best_of_set`, every dataset alike, a model with no record
    counted as the dataset's average), then the rest by mean z (ties: library order)."""
    if not len(z):
        return list(model_ids)
    has = ~np.isnan(z)
    filled = np.where(has, z, 0.0)
    mean = filled.sum(axis=0) / np.maximum(has.sum(axis=0), 1)
    chosen, _ = policy.best_of_set(filled, np.full(len(z), 1.0 / len(z)), np.full(len(z), -np.inf), count)
    taken = set(chosen)
    rest = [j for j in np.argsort(-mean, kind="stable").tolist() if j not in taken]
    return [model_ids[j] for j in [*chosen, *rest]]


def fold_family(fold: Fold) -> tuple[int, float]:
    """The shape of the fold's targets among the library's scored ids (sorted, as calibration sorts them): the
    run of consecutive ids they span, and the share of it they are.

    A calibration that hides families of that shape (`calibration.family_holdout`) predicts its held-out
    datasets with as many of their id-neighbours missing as the fold's targets have: a fold of 10 of 100 targets
    drawn from TabZoo's 336 spans about 34 ids at 30%, OBOE's 418 about 42 at 24%, a fold of one target is one id
    (one by one). Runs of 10 whole ids, the rule before, hid more than OBOE's folds do (its ids are not families):
    coverage 0.887 cold (docs/benchmarks-decisions.md, "Intervals on every library").

    A fold sparser than the calibration's own random fifth (the interleaved folds, `_folds`: 10 targets over
    TabZoo's 336 ids, 3%) hides no family: one by one."""
    ids = sorted({r.dataset_id for r in fold.snapshot.interactions} | set(fold.targets))
    where = {d: i for i, d in enumerate(ids)}
    at = sorted(where[t] for t in fold.targets)
    span = at[-1] - at[0] + 1
    if len(at) / span <= HOLDOUT_FRACTION:
        return 1, 1.0
    return span, len(at) / span


def knn_method(fold: Fold) -> dict[str, np.ndarray]:
    """The service's light estimator: similar-dataset kNN on features (and on probe scores when the run
    probes), shrunk toward popularity."""
    # The kNN alone (the service serves it blended with popularity): intervals calibrated on held-out datasets,
    # hidden as the fold hides its targets (`fold_family`; whole sources where named).
    run, density = fold_family(fold)
    estimator, scale = calibrated(
        fold.snapshot, KnnPopularityEstimator, seed=fold.seed, family_run=run, family_density=density
    )
    nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
    out = {}
    for target in fold.targets:
        features = _features_of(nodes.get(target))
        taken: list[ProbeRecord] = []
        if fold.with_probes and fold.measures_scores(target):  # probes as the service takes them
            chosen = estimator.select_probes(
                features, known_dataset=target, budget=fold.probe_budget, among=fold.probeable(target)
            )
            taken = fold.measure(target, chosen)
        estimator.interval_scale = scale.factor_for(probed=bool(estimator.measured(taken)))
        predicted = {p.model_id: p for p in estimator.predict(features, probes=taken)}
        out[target] = np.array([predicted[m].score for m in fold.candidates[target]])
        fold.uncertainty[target] = np.array([predicted[m].uncertainty for m in fold.candidates[target]])
    return out


def logme_method(fold: Fold) -> dict[str, np.ndarray]:
    """Rank by the LogME value recorded on the target, paying for a probe of every model.

    A model LogME was not run for gets no prediction (NaN): its correlations are over the models it
    covers, while P@k and regret@k still count the best models it could not see.
    """
    out = {}
    for target in fold.targets:
        recorded = [p for p in fold.target_probes.get(target, []) if p.probe == "LogME"]
        if not recorded:
            continue
        values = {p.model_id: p.value for p in recorded}
        fold.probed[target].update(values)
        fold.probe_seconds[target] += sum(p.seconds for p in recorded)
        out[target] = np.array([values.get(m, np.nan) for m in fold.candidates[target]])
    return out


def fit_served(fold: Fold, config: GnnConfig | None = None) -> BlendedEstimator:
    """What a search serves, fit on the fold's graph as the service fits it: the GNN blended with the kNN and
    popularity by weights (and intervals) learned on held-out datasets (`estimators/blend.py`)."""
    from .estimators.gnn import GnnEstimator  # torch is imported only when this runs

    return fit_blend(
        fold.snapshot, lambda graph: GnnEstimator(graph, probes=fold.probes, config=config), seed=fold.seed
    )


def served_predictions(fold: Fold, estimator: BlendedEstimator | GnnEstimator) -> dict[str, np.ndarray]:
    """The fitted estimator's predictions of the fold's targets, each probed within the budget when the run
    allows (the decision table's rankings too, when the fold asks for them)."""
    nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
    gnn = estimator.primary if isinstance(estimator, BlendedEstimator) else estimator
    out = {}
    for target in fold.targets:
        features = _features_of(nodes.get(target))
        taken: list[ProbeRecord] = []
        if fold.with_probes and gnn.config.probes:  # type: ignore[union-attr]
            chosen = estimator.select_probes(
                features, known_dataset=target, budget=fold.probe_budget, among=fold.probeable(target)
            )
            taken = fold.measure(target, chosen)
        predicted = {p.model_id: p for p in estimator.predict(features, known_dataset=target, probes=taken)}
        out[target] = np.array([predicted[m].score for m in fold.candidates[target]])
        fold.uncertainty[target] = np.array([predicted[m].uncertainty for m in fold.candidates[target]])
        if isinstance(estimator, BlendedEstimator) and not taken and math.isfinite(estimator.blend.threshold):
            fold.far[target] = estimator.blend.is_far(estimator.distance_of(features, probed=False))
        if fold.decision_budgets:
            _decision_rankings(fold, estimator, target, features)
    return out


def modsnet_method(fold: Fold, config: GnnConfig | None = None) -> dict[str, np.ndarray]:
    """What a search serves (`fit_served`), predicting the fold's targets."""
    return served_predictions(fold, fit_served(fold, config))


def _decision_rankings(
    fold: Fold, estimator: BlendedEstimator | GnnEstimator, target: str, features: dict[str, float]
) -> None:
    """The rankings the decision table needs: without probes, and for each budget B >= 2 after the B - 1 probes
    the search's own policy takes (`policy.py`: one at a time, each given the results so far); the fitted
    estimator is the same for every budget, as probes only add evidence at prediction time."""
    sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
    candidates = set(fold.candidates[target])

    def ranking(probes: list[ProbeRecord]) -> dict[str, float]:
        predicted = estimator.predict(features, known_dataset=target, probes=probes)
        return {p.model_id: sign * p.score for p in predicted if p.model_id in candidates}

    fold.cold[target] = ranking([])
    if not fold.measures_scores(target):
        return  # recorded transferability scores are not measurements a user keeps the best of
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    by_posterior = DECISION_RULE == POSTERIOR and callable(getattr(estimator, "behaviour", None))
    for budget, taken in adaptive_probes(fold, estimator, target, features).items():
        seen = {p.model_id: p.value for p in taken if p.probe == MEASURED}
        probed = frozenset(p.model_id for p in taken)
        if not by_posterior:
            fold.adaptive[budget][target] = Ranking(ranking(taken), probed, seen)
            continue

        def after(
            full: Mapping[str, float], taken: list[ProbeRecord] = taken
        ) -> tuple[dict[str, float], dict[str, float]]:
            exact = [ProbeRecord(m, target, MEASURED, v) for m, v in full.items()]
            noise = policy.probe_noise(fold.probe_scale)
            mean, sd, _ = policy._predicted(
                estimator, features, target, taken, index, condition=True, level=policy.LEVEL, exact=exact,
                noise_sd=noise.get("noise_sd"), noise_level=noise.get("noise_level", 0.0),
            )  # fmt: skip
            known = [m for m in candidates if m in index]
            return {m: float(mean[index[m]]) for m in known}, {m: float(sd[index[m]]) for m in known}

        # (decisions.SERVED picks the last measurement on the served ranking itself, the rule before's)
        predicted = ranking(taken) if decisions.FINAL == decisions.SERVED else after({})[0]
        fold.adaptive[budget][target] = Ranking(predicted, probed, seen, posterior=after)


def adaptive_probes(
    fold: Fold, estimator: Probing, target: str, features: dict[str, float], **settings: Any
) -> dict[int, list[ProbeRecord]]:
    """Per decision budget B >= 2, the probes the search's policy measures with a probe budget of B - 1.

    One probe at a time, so a smaller budget's probes are the first of a larger one's: the loop runs once, to
    the largest budget. `settings` overrides the policy's (`benchmarks/probe_policy.py` compares them)."""
    budgets = [b for b in fold.decision_budgets if b >= 2]
    if not budgets:
        return {}
    for key, value in policy.probe_noise(fold.probe_scale).items():
        settings.setdefault(key, value)
    taken = policy.simulate(
        estimator,
        features,
        lambda model_ids: fold.on_record_scale(fold.measure_for_decision(target, model_ids)),
        budget=max(budgets) - 1,
        known_dataset=target,
        among=fold.probeable(target),
        **settings,
    )
    return {b: taken[: b - 1] for b in budgets}


METHODS: dict[str, Method] = {
    "modsnet": modsnet_method,
    "random": random_method,
    "popularity": popularity_method,
    "knn": knn_method,
    "logme": logme_method,
}


# ----------------------------------------------------------------------------------------------------
# Report


@dataclass
class MethodResult:
    method: str
    per_target: dict[str, dict[str, float | None]]
    seconds: float = 0.0  # fitting and predicting, all folds
    probe_seconds: float = 0.0  # what the probes taken would have cost to run, all targets
    probes: int = 0
    note: str = ""
    # Per target: the candidate models, their true and predicted scores (and sd where the method has one),
    # kept for the web app's predicted-against-actual chart.
    predictions: dict[str, dict[str, list | None]] = field(default_factory=dict)
    far: dict[str, bool] = field(default_factory=dict)  # per target, where the method splits by distance (Fold.far)

    @property
    def means(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for metric in (*METRICS, *CALIBRATION):
            values = [x for x in (v.get(metric) for v in self.per_target.values()) if x is not None]
            out[metric] = float(np.mean(values)) if values else None
        return out

    def coverage_by_distance(self) -> dict[str, dict[str, float | int]] | None:
        """Mean coverage80 of the targets predicted as near and as far from the library, with their counts
        (None: the method made no such split): an interval should hold at 80% for either kind of query."""
        out: dict[str, dict[str, float | int]] = {}
        for name, far in (("near", False), ("far", True)):
            values = [
                float(c)
                for t, v in self.per_target.items()
                if self.far.get(t) is far and (c := v.get("coverage80")) is not None
            ]
            if values:
                out[name] = {"coverage80": float(np.mean(values)), "targets": len(values)}
        return out or None

    def worst(self, metric: str) -> tuple[str, float] | None:
        """The target where this method did worst on `metric` (lowest correlation, highest regret)."""
        values = {t: v[metric] for t, v in self.per_target.items() if v.get(metric) is not None}
        if not values:
            return None
        pick = max if metric.startswith("regret") else min
        target = pick(values, key=lambda t: (values[t], t))
        return target, float(values[target])  # type: ignore[arg-type]


@dataclass
class EvaluationReport:
    library: str
    with_probes: bool
    probe_budget: int
    targets: list[str]
    results: list[MethodResult]
    folds: int
    decisions: DecisionTable | None = None
    fold_rule: str = ""  # how the folds hid the targets: one by one, interleaved, contiguous, by a column's groups

    def to_json(self) -> str:
        """One object per method: its means, its per-target values, its cost."""
        return json.dumps(
            {
                "library": self.library,
                "with_probes": self.with_probes,
                "probe_budget": self.probe_budget if self.with_probes else 0,
                "folds": self.folds,
                "fold_rule": self.fold_rule,
                "targets": self.targets,
                "methods": [
                    {
                        "method": r.method,
                        "mean": r.means,
                        "per_target": r.per_target,
                        "targets": len(r.per_target),
                        "seconds": round(r.seconds, 3),
                        "probes": r.probes,
                        "probe_seconds": round(r.probe_seconds, 3),
                        "note": r.note,
                        "worst": {m: r.worst(m) for m in ("pearson", "regret@1")},
                        "below_popularity": self.below_popularity(r),
                        "coverage80_by_distance": r.coverage_by_distance(),
                        "predictions": r.predictions,
                    }
                    for r in self.results
                ],
                "decisions": self.decisions.to_dict() if self.decisions is not None else None,
            },
            indent=2,
            allow_nan=False,
        )

    def below_popularity(self, result: MethodResult) -> dict[str, float] | None:
        """The targets where `result`'s Pearson is more than BELOW_POPULARITY under popularity's, with the gap,
        worst first (None: popularity was not run)."""
        popularity = next((r.per_target for r in self.results if r.method == "popularity"), None)
        if popularity is None:
            return None
        gaps = {
            t: popularity[t]["pearson"] - v["pearson"]  # type: ignore[operator]
            for t, v in result.per_target.items()
            if v.get("pearson") is not None and popularity.get(t, {}).get("pearson") is not None
        }
        return {t: g for t, g in sorted(gaps.items(), key=lambda tg: -tg[1]) if g > BELOW_POPULARITY}

    def to_table(self, *, per_target: bool = False) -> str:
        """Means per method as a fixed-width table (and optionally each target's rows)."""
        setting = f"with probes (budget {self.probe_budget})" if self.with_probes else "cold start"
        rule = f" ({self.fold_rule})" if self.fold_rule else ""
        lines = [f"{self.library}: {len(self.targets)} targets, {setting}, {self.folds} fits per method{rule}"]
        header = f"{'method':<12} {'n':>3} " + " ".join(f"{m:>12}" for m in METRICS) + f" {'seconds':>9}"
        lines.append(header)
        for r in self.results:
            cells = " ".join(_cell(r.means[m]) for m in METRICS)
            lines.append(f"{r.method:<12} {len(r.per_target):>3} {cells} {r.seconds:>9.1f}")
            if per_target:
                for t, values in r.per_target.items():
                    cells = " ".join(_cell(values.get(m)) for m in METRICS)
                    lines.append(f"  {t[:26]:<26} {cells}")
        notes = [f"{r.method}: {r.note}" for r in self.results if r.note]
        lines += [*notes, "", "worst target per method (beside the mean above):"]
        for r in self.results:
            worst = [(m, r.worst(m)) for m in ("pearson", "regret@1")]
            shown = ", ".join(f"{m} {w[1]:.3f} on {w[0]}" for m, w in worst if w is not None)
            under = self.below_popularity(r)
            if under is not None and r.method != "popularity":
                first = next(iter(under.items()), None)
                shown += f"; {len(under)} target(s) > {BELOW_POPULARITY:.2f} Pearson under popularity's"
                shown += f" (most: {first[0]} by {first[1]:.3f})" if first else ""
            lines.append(f"  {r.method:<12} {shown or '-'}")
        with_intervals = [r for r in self.results if r.means.get("coverage80") is not None]
        if with_intervals:
            lines += ["", "calibration: predicted top 5 against the truth; share of true scores in the 80% intervals"]
            lines.append(f"  {'method':<12} {'top-5 MAE':>12} {'top-5 bias':>12} {'coverage80':>12}")
            for r in with_intervals:
                lines.append(f"  {r.method:<12} " + " ".join(_cell(r.means[m]) for m in CALIBRATION))
            for r in with_intervals:
                split = r.coverage_by_distance()
                if split:
                    parts = [
                        f"{name} {v['coverage80']:.3f} ({_targets(int(v['targets']))})" for name, v in split.items()
                    ]
                    lines.append(f"  {r.method:<12} coverage80 by distance to the library: {', '.join(parts)}")
        if self.decisions is not None:
            lines += ["", self.decisions.to_table()]
        return "\n".join(lines)


def _targets(count: int) -> str:
    return f"{count} target" + ("" if count == 1 else "s")


def _cell(value: float | None) -> str:
    return f"{value:>12.3f}" if value is not None else f"{'-':>12}"


# ----------------------------------------------------------------------------------------------------
# The protocol


def default_targets(snapshot: Snapshot, *, published_dir: Path | None = None, seed: int = 0) -> list[str]:
    """The published table's targets where there is one, else datasets with enough records.

    With more eligible datasets than HELD_OUT, HELD_OUT of them are drawn by `seed` (OBOE's 418 → 100).
    """
    counts: dict[str, int] = defaultdict(int)
    for r in snapshot.interactions:
        counts[r.dataset_id] += 1
    if published_dir is not None and (published_dir / _PUBLISHED_FILES["pearson"]).is_file():
        with open(published_dir / _PUBLISHED_FILES["pearson"], newline="") as handle:
            header = next(csv.reader(handle))
        named = [c for c in header[1:] if c != "average"]
        missing = [c for c in named if c not in counts]
        if missing:
            raise InvalidArgument(f"published targets {missing} have no records in {snapshot.library.name}")
        return named
    eligible = sorted(d for d, n in counts.items() if n >= MIN_RECORDS)
    if len(eligible) <= HELD_OUT:
        return eligible
    chosen = np.random.default_rng(seed).choice(len(eligible), HELD_OUT, replace=False)
    return sorted(eligible[i] for i in chosen)


def published_result(
    published_dir: Path, targets: Sequence[str], best: Mapping[str, float], *, sign: float = 1.0
) -> MethodResult | None:
    """TransferGraph's best cold-start row (the `*_without_transfer` row with the best mean Pearson).

    Its Pearson, Spearman and weighted τ are read per target from the matching CSVs; regret@k is our
    best true score (`best`, in the metric) minus its `top@k` (the best true score among its predicted
    top k). Its `p@k` files are percentiles, not this protocol's P@k, so P@k is left empty. Its
    `average` column is not the mean of the listed targets (image: 0.808 there, 0.848 as a mean of
    the 8 columns); the mean here is over the listed targets, like every other row.
    """
    tables = {metric: _read_published(published_dir / file) for metric, file in _PUBLISHED_FILES.items()}
    if not tables["pearson"]:
        return None
    rows = [r for r in tables["pearson"] if r.endswith("_without_transfer")]
    if not rows:
        return None
    row = max(rows, key=lambda r: tables["pearson"][r].get("average", -math.inf))
    top = {k: _read_published(published_dir / f"top@{k}_correlation.csv").get(row, {}) for k in KS}
    per_target: dict[str, dict[str, float | None]] = {}
    for t in targets:
        if t not in tables["pearson"][row]:
            continue
        values: dict[str, float | None] = {m: None for m in METRICS}
        for metric in _PUBLISHED_FILES:
            values[metric] = tables[metric].get(row, {}).get(t)
        for k in KS:
            if t in top[k] and t in best:
                values[f"regret@{k}"] = sign * (best[t] - top[k][t])
        per_target[t] = values
    average = tables["pearson"][row].get("average")
    note = f"TransferGraph's published row {row!r} (its own 'average' Pearson: {average:.3f})" if average else row
    return MethodResult("published", per_target, note=note)


def _read_published(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return {row[0]: {c: float(v) for c, v in zip(header[1:], row[1:], strict=True) if v} for row in reader if row}


def _folds(targets: Sequence[str], fold_size: int, *, contiguous: bool = False) -> list[list[str]]:
    """`targets` in folds of about `fold_size`, hidden one fold per fit.

    Interleaved (the default): fold k takes every n-th target from the k-th, n the number of folds, so a fold's
    targets are spread over the sorted ids as leave-one-dataset-out's are. `contiguous`, the rule before
    2026-12-07: runs of `fold_size` consecutive sorted targets, which in TabZoo and XRDZoo hide a family at once
    (every keel-ecoli table, every Aluminium scan of the 100): a test of datasets from families the library lacks,
    stricter than the protocol the issue names."""
    size = max(1, fold_size)
    if contiguous:
        return [list(targets[i : i + size]) for i in range(0, len(targets), size)]
    count = -(-len(targets) // size)
    return [list(targets[k::count]) for k in range(count)]


def _group_folds(bundle: Bundle, targets: Sequence[str], column: str) -> list[list[str]]:
    """One fold per value of datasets.csv `column` among the targets (in order of first appearance)."""
    if column not in bundle.datasets.columns:
        raise InvalidArgument(f"datasets.csv of {bundle.name} has no column {column!r} to group folds by")
    group_of = {row["dataset_id"]: row.get(column, "") for row in bundle.datasets.rows}
    groups: dict[str, list[str]] = {}
    for target in targets:
        groups.setdefault(group_of.get(target, target) or target, []).append(target)
    return list(groups.values())


def evaluate(
    bundle: Bundle,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    with_probes: bool = False,
    targets: Sequence[str] | None = None,
    seed: int = 0,
    probe_budget: int = DEFAULT_PROBE_BUDGET,
    fold_size: int = 1,
    published_dir: Path | None = None,
    extra_methods: Mapping[str, Method] | None = None,
    budgets: Sequence[int] = (),
    group_by: str = "",
    probes_as_records: bool = False,
    correct_probes: bool = True,
    contiguous_folds: bool = False,
) -> EvaluationReport:
    """Run the protocol for `methods` on `bundle` and collect per-target metrics.

    `fold_size` > 1 hides that many targets at once (one fit per fold, not per target): every target is
    still unseen when predicted, with slightly less left to learn from than strict leave-one-out, so it
    is the stricter test; it keeps large libraries (OBOE: 100 targets) affordable. The folds interleave the
    sorted targets (`_folds`); `contiguous_folds` takes runs of consecutive ones instead, families at once.

    `budgets` adds the decision table (`decisions.py`): the regret of what a user ends up with after B
    measurements, ModsNet (the `modsnet` method) against popular-B, portfolio-B and random-B.

    `group_by` names a datasets.csv column (e.g. TextZoo's `source_group`): each fold then hides every target
    sharing one value of it, so tasks cut from one source never inform each other (leave-one-source-out).

    Where the bundle has probe records (`probe_records.csv`), the decision table's probes read what a search's
    probe would (`decision_probes`): a target's own probe record, or its record plus the library's shift and
    seeded noise; the simulated search corrects them by the scale learned without the fold's targets unless
    `correct_probes` is False. `probes_as_records` gives every probe the record itself, as before.
    """
    snapshot, probes = graph_from_bundle(bundle)
    registry = {**METHODS, **(extra_methods or {})}
    unknown = [m for m in methods if m not in registry and m != "published"]
    if unknown:
        raise InvalidArgument(f"unknown method(s) {unknown}; known: {sorted(registry)} and published")
    if any(b < 0 for b in budgets):
        raise InvalidArgument(f"a measurement budget is >= 0 (got {list(budgets)})")
    targets = (
        list(targets) if targets is not None else default_targets(snapshot, published_dir=published_dir, seed=seed)
    )
    higher = bool(snapshot.library.meta.get("higher_is_better", True))
    sign = 1.0 if higher else -1.0
    records: dict[str, dict[str, list[InteractionRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in snapshot.interactions:
        records[r.dataset_id][r.model_id].append(r)
    truth = {t: {m: float(np.mean([r.score for r in rs])) for m, rs in records[t].items()} for t in targets}
    for t in targets:
        if len(truth[t]) < 2:
            known = " (no dataset of that id)" if t not in {d.dataset_id for d in snapshot.datasets} else ""
            raise InvalidArgument(
                f"target {t!r} of {snapshot.library.name} has {len(truth[t])} record(s){known}; "
                "at least 2 are needed to rank"
            )
    probes_of: dict[str, list[ProbeRecord]] = defaultdict(list)
    for p in probes:
        probes_of[p.dataset_id].append(p)
    sampled = bundle.probe_records is not None and not probes_as_records
    every_truth = _truth(records) if sampled else {}
    recorded = {(t, m): v for t, by_model in every_truth.items() for m, v in by_model.items()}
    family_of = {m.model_id: m.metadata.get(FAMILY_COLUMN, "") for m in snapshot.models}

    results = {m: MethodResult(m, {}) for m in methods if m != "published"}
    if group_by:
        folds, rule = _group_folds(bundle, targets, group_by), f"each {group_by} hidden at once"
    else:
        folds = _folds(targets, fold_size, contiguous=contiguous_folds)
        shape = "runs of consecutive ids" if contiguous_folds else "interleaved folds"
        rule = "one target hidden at a time" if len(folds) == len(targets) else f"targets hidden in {shape}"
    deciding = tuple(sorted(set(budgets))) if "modsnet" in results else ()
    popular: dict[str, dict[str, float]] = {}
    portfolio: dict[str, dict[str, float]] = {}
    cold: dict[str, dict[str, float]] = {}
    adaptive: dict[int, dict[str, Ranking]] = defaultdict(dict)
    for fold_targets in folds:
        hidden = set(fold_targets)
        train = replace(snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id not in hidden])
        visible = [p for p in probes if p.dataset_id not in hidden]  # a target's probes: only through measure
        candidates = {t: sorted(truth[t]) for t in fold_targets}
        oracle: dict[str, dict[str, ProbeRecord | list[ProbeRecord]]] = {}
        for t in fold_targets:
            if probes_of[t]:  # recorded transferability probes
                grouped: dict[str, list[ProbeRecord]] = defaultdict(list)
                for p in probes_of[t]:
                    grouped[p.model_id].append(p)
                oracle[t] = dict(grouped)
            else:  # a real measurement: the model trained and scored on the target
                oracle[t] = {
                    m: ProbeRecord(m, t, MEASURED, truth[t][m], float(np.mean([r.cost.train_seconds for r in rs])))
                    for m, rs in records[t].items()
                }
        scale = None
        probe_values: dict[str, dict[str, float]] = {}
        # A probe that reads the target's record (no probe records, or `probes_as_records`) measured what a full
        # measurement does: exact for the table's decision, as a probe of a whole table is.
        whole: frozenset[str] = frozenset(fold_targets)
        if sampled and bundle.probe_records is not None:
            scale = learn_probe_scale(_probe_rows(bundle), recorded, family_of, exclude=hidden)
            whole = probed_whole(bundle, fold_targets)
            probe_values = decision_probes(
                bundle, [t for t in fold_targets if t not in whole], every_truth, scale, family_of, seed=seed
            )
        for name, result in results.items():
            fold = Fold(
                train,
                visible,
                list(fold_targets),
                candidates,
                {t: probes_of[t] for t in fold_targets},
                with_probes,
                probe_budget,
                seed,
                oracle,
                decision_budgets=deciding if name == "modsnet" else (),
                probe_values=probe_values,
                probe_scale=scale if correct_probes else None,
                whole=whole,
            )
            start = time.perf_counter()
            predictions = registry[name](fold)
            result.seconds += time.perf_counter() - start
            for t, predicted in predictions.items():
                true = np.array([truth[t][m] for m in candidates[t]])
                result.per_target[t] = dict(target_metrics(true, predicted, higher_is_better=higher))
                result.predictions[t] = {
                    "models": list(candidates[t]),
                    "true": [round(float(v), 6) for v in true],
                    "predicted": [round(float(v), 6) if np.isfinite(v) else None for v in predicted],
                    "sd": [round(float(v), 6) if np.isfinite(v) else None for v in fold.uncertainty[t]]
                    if t in fold.uncertainty
                    else None,
                }
                if t in fold.uncertainty:
                    calibration = calibration_metrics(true, predicted, fold.uncertainty[t], higher_is_better=higher)
                    result.per_target[t].update(calibration)
                if t in fold.far:
                    result.far[t] = fold.far[t]
                result.probes += len(fold.probed[t])
                result.probe_seconds += fold.probe_seconds[t]
            cold.update(fold.cold)
            for budget, rankings in fold.adaptive.items():
                adaptive[budget].update(rankings)
        if deciding:  # popularity and the portfolio as they stood with the fold's targets hidden
            seen = Fold(train, visible, list(fold_targets), candidates, {}, False, 0, seed)
            for t, values in popularity_method(seen).items():  # in the metric's direction: goodness for the table
                popular[t] = dict(zip(candidates[t], (sign * values).tolist(), strict=True))
            portfolio.update(portfolio_method(seen, max(deciding)))
    ordered = [results[m] for m in methods if m in results and results[m].per_target]  # LogME needs probes
    if "published" in methods and published_dir is not None:
        best = {t: sign * max(sign * v for v in truth[t].values()) for t in targets}
        published = published_result(published_dir, targets, best, sign=sign)
        if published is not None:
            ordered.insert(list(methods).index("published"), published)
    decisions = None
    if deciding:
        decisions = decision_table(
            {t: truth[t] for t in targets},
            popularity=popular,
            portfolio=portfolio,
            cold=cold,
            adaptive=adaptive,
            budgets=deciding,
            higher_is_better=higher,
        )
    return EvaluationReport(
        snapshot.library.name, with_probes, probe_budget, targets, ordered, len(folds), decisions=decisions,
        fold_rule=rule,
    )  # fmt: skip


def _truth(records: Mapping[str, Mapping[str, list[InteractionRecord]]]) -> dict[str, dict[str, float]]:
    return {
        t: {m: float(np.mean([r.score for r in rs])) for m, rs in by_model.items()} for t, by_model in records.items()
    }


def _probe_rows(bundle: Bundle) -> list[tuple[str, str, float]]:
    rows = bundle.probe_records.rows if bundle.probe_records is not None else []
    return [(r["dataset_id"], r["model_id"], float(r["score"])) for r in rows]


def decision_probes(
    bundle: Bundle,
    targets: Sequence[str],
    truth: Mapping[str, Mapping[str, float]],
    scale: ProbeScale | None,
    family_of: Mapping[str, str],
    *,
    seed: int,
) -> dict[str, dict[str, float]]:
    """What a search's probe would read on each target (target -> model -> value): the target's own probe records
    where it has them (a model without one fails its probe, as a timed-out probe does), else its record plus the
    library's shift (`scale`, learned without the targets) and seeded normal noise, seeded by `seed`, target and
    model so every run and budget reads the same. The noise is split as the records show it: a level shared by a
    target's probes (the sd of the other datasets' mean gap) and each probe's own (the sd around it), so the
    probes rank the models no worse than real ones do. No scale: the records, as without probe records."""
    own: dict[str, dict[str, float]] = defaultdict(dict)
    for dataset_id, model_id, score in _probe_rows(bundle):
        own[dataset_id][model_id] = score
    out: dict[str, dict[str, float]] = {}
    level_sd, pair_sd = _noise_split(own, truth, scale, exclude=set(targets))
    for target in targets:
        if own.get(target):
            out[target] = dict(own[target])
        elif scale is not None:
            level = float(np.random.default_rng(zlib.crc32(f"{seed}/{target}".encode())).normal(0.0, level_sd))
            values = {}
            for model_id, value in truth[target].items():
                digest = zlib.crc32(f"{seed}/{target}/{model_id}".encode())
                noise = float(np.random.default_rng(digest).normal(0.0, pair_sd))
                values[model_id] = value + scale.shift_for(family_of.get(model_id, "")) + level + noise
            out[target] = values
    return out


def probed_whole(bundle: Bundle, targets: Sequence[str]) -> frozenset[str]:
    """The targets a tabular probe measures whole: at most `SAMPLE_ROWS` rows (datasets.csv `n_rows`), so its sample
    is the table and it reads what the record's protocol reads (`modsnet.models.probing.probe_sample`); TabZoo's
    probe records hold only larger tables (`modsnet.offline.zoo.tabular_probes`), so they say nothing of these."""
    if "n_rows" not in bundle.datasets.columns:
        return frozenset()
    rows = {r["dataset_id"]: r.get("n_rows", "") for r in bundle.datasets.rows}
    out = set()
    for target in targets:
        try:
            if 0 < float(rows.get(target, "") or "nan") <= SAMPLE_ROWS:
                out.add(target)
        except ValueError:
            continue
    return frozenset(out)


def _noise_split(
    own: Mapping[str, Mapping[str, float]],
    truth: Mapping[str, Mapping[str, float]],
    scale: ProbeScale | None,
    *,
    exclude: set[str],
) -> tuple[float, float]:
    """(sd of a dataset's mean probe - record, sd of a pair's around it) over the probe records outside `exclude`
    whose records `truth` holds; (0, the scale's sd) where fewer than two such datasets."""
    total = scale.sd if scale is not None else 0.0
    levels: list[float] = []
    spreads: list[float] = []
    for dataset_id, reads in own.items():
        if dataset_id in exclude or dataset_id not in truth:
            continue
        gaps = [v - truth[dataset_id][m] for m, v in reads.items() if m in truth[dataset_id]]
        if len(gaps) >= 2:
            levels.append(float(np.mean(gaps)))
            spreads.extend(g - levels[-1] for g in gaps)
    if len(levels) < 2:
        return 0.0, total
    return float(np.std(levels)), float(np.sqrt(np.mean(np.square(spreads))))


def published_dir_for(library: str, root: Path) -> Path | None:
    """Where TransferGraph's tables for a `transfergraph-<modality>` library lie in ../shared/data."""
    if not library.startswith("transfergraph-"):
        return None
    folder = root / "transfergraph" / library.removeprefix("transfergraph-") / "published"
    return folder if folder.is_dir() else None


def main(argv: Sequence[str] | None = None, *, on_report: Callable[[EvaluationReport], object] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.recommender.evaluation",
        description="Leave-one-dataset-out evaluation of the recommender's estimator and baselines on a bundle.",
    )
    parser.add_argument("bundle", help="a library bundle (folder or archive)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--with-probes", action="store_true", help="let ModsNet probe each target (budget below)")
    parser.add_argument("--probe-budget", type=int, default=DEFAULT_PROBE_BUDGET, help="probes per target")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help=f"of {', '.join(DEFAULT_METHODS)}")
    parser.add_argument("--targets", nargs="+", help="target dataset ids (default: published or drawn)")
    parser.add_argument("--fold-size", type=int, default=0, help="targets hidden per fit (default: 1, 10 over 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-by", default="", help="datasets.csv column: hide each of its groups together")
    parser.add_argument(
        "--contiguous-folds",
        action="store_true",
        help="folds of consecutive sorted targets (families at once; the rule before 2026-12-07) not interleaved",
    )
    parser.add_argument("--per-target", action="store_true", help="table: every target's row too")
    parser.add_argument(
        "--no-features", action="store_true", help="dataset ids only: no dataset features, similarities or probes"
    )
    parser.add_argument(
        "--budgets",
        nargs="*",
        type=int,
        default=list(BUDGETS),
        metavar="B",
        help="measurement budgets of the decision table (default: %(default)s; none: no table)",
    )
    parser.add_argument(
        "--shared-data", type=Path, default=Path("../shared/data"), help="where TransferGraph's published tables lie"
    )
    parser.add_argument(
        "--probes-as-records",
        action="store_true",
        help="decision table: a probe reads the target's record itself (the table before probe records)",
    )
    parser.add_argument(
        "--uncorrected-probes",
        action="store_true",
        help="decision table: the simulated search takes sample probes as measured, without the learned correction",
    )
    args = parser.parse_args(argv)
    bundle = read_bundle(args.bundle)
    if args.no_features:
        bundle = without_dataset_features(bundle)
    published = published_dir_for(bundle.name, args.shared_data)
    targets = args.targets
    if targets is None:
        snapshot, _ = graph_from_bundle(bundle)
        targets = default_targets(snapshot, published_dir=published, seed=args.seed)
    fold_size = args.fold_size or (10 if len(targets) > 20 else 1)
    report = evaluate(
        bundle,
        methods=args.methods,
        with_probes=args.with_probes,
        targets=targets,
        seed=args.seed,
        probe_budget=args.probe_budget,
        fold_size=fold_size,
        published_dir=published,
        budgets=args.budgets,
        group_by=args.group_by,
        probes_as_records=args.probes_as_records,
        correct_probes=not args.uncorrected_probes,
        contiguous_folds=args.contiguous_folds,
    )
    if on_report is not None:  # `modsnet eval` keeps it for the web app
        on_report(report)
    print(report.to_json() if args.json else report.to_table(per_target=args.per_target))
    return 0


def _command() -> int:
    try:
        return main()
    except ModsnetError as exc:  # a bad bundle, target or method: one line, not a traceback
        print(f"evaluation: error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_command())
