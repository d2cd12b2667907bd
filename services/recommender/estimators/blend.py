"""The served estimator: its members blended by weights learned on held-out datasets of the library itself.

Members: the primary estimator (the GNN, or the kNN where the kNN serves), the kNN over dataset features (and
measured probes), and popularity. No member is best on every library or every target (issue 16: the GNN
scored 0.609 Pearson on TransferGraph text's dbpedia_14, popularity 0.829), so the weights come from
validation inside the training data. Calibration's held-out fits (`calibration.holdout_folds`: a fifth of the
scored datasets hidden, at most 40 a fit and three such fits where that caps it, or three cross-fits for a small
library) predict the hidden datasets as new ones: those are pseudo-targets, with every member's prediction beside
the truth. A grid over the simplex (steps of `GRID_STEP`) picks the weights with the best mean per-target
Pearson, less a penalty for top-1 regret (in the target's score spreads) and for a target falling more than
`MARGIN` below popularity's Pearson; within `TIE` of the best, the most weight on the primary. It costs no fit
beyond the ones calibration already made.

Per query, three sets of weights:
* `near` and `far`: a query whose nearest library dataset (feature distance, as the kNN measures it) is
  farther than the median pseudo-target's gets the weights learned on the far half, and a nearer one those of
  the near half (each shrunk halfway toward the weights of all pseudo-targets: half the data is noisier);
* `probed`: a query with measured probes gets the weights learned on the same pseudo-targets with
  `PROBE_BUDGET` of their models measured (chosen by the served probe-selector), judged on the others.

The blend is a weighted sum of the members' score vectors (the GNN still scored through ONNX Runtime); its σ
is the same weighted sum of the members' σ, rescaled by split conformal on the pseudo-targets' residuals: a
query without probes by the scale of the cold residuals, a query with probes by the scale of the residuals of
their models left unmeasured with `SCALE_PROBES` measured, blended by the `probed` weights. One scale for both
made the probed intervals far too wide (coverage 0.88-0.995 on TextZoo and ImageZoo with 5 probes): a probe
moves the prediction more than it shrinks the members' σ.

A library whose datasets name their source (TextZoo, ImageZoo) is searched with queries from sources it lacks,
which the random fifth's pseudo-targets (their siblings left in the graph) understate: there the σ shown is
scaled by the residuals of whole sources held out (`shown_scales`, three more fits), while the adaptive probing
policy keeps the σ above (`BlendedEstimator.score_for_policy`), so its decisions do not move.

A probed query's shown σ is further scaled by its own probes' residuals against the cold prediction
(`ResidualScale`, learned on the same pseudo-targets; none where they show the probes tell nothing): a dataset's
difficulty measured, not assumed (TransferGraph without features, 5 probes: coverage 0.851 -> 0.823 text,
0.721 -> 0.774 image; docs/benchmarks-decisions.md, "Intervals scaled by the query's probes").

A query without probes shows the cold scale of its own half of the pseudo-targets, split at the same distance
as the near and far weights (`shown_scales`, `near_and_far`), so its interval follows how far it is from the
library (TabZoo's far half: a scale 14-37% larger than its near half's, fold by fold). Coverage of near / far targets,
one scale → a scale per half: TabZoo, all 336 targets, 0.815 / 0.829 → 0.817 / 0.818; XRDZoo, all 270, 0.837 /
0.805 → 0.834 / 0.820 (docs/benchmarks-decisions.md, "Intervals by distance").

The shown scales (and the residual scale) are learned with every pseudo-target's σ put on the served fit's σ
level (`at_served_level`): each member's mean σ for the library's mean query, in the served fit over the fit that
held the target out. The calibration fits train on fewer datasets, and the GNN ensemble's σ shrinks with more
while its errors on a new dataset do not, so a scale learned at their σ is too small served.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.data.graph import Snapshot, interaction_columns_of
from modsnet.data.graph_build import dataset_raw_features
from modsnet.data.probe_scale import ProbeScale

from ..calibration import (
    CALIBRATION_FITS,
    COVERAGE,
    MIN_LEFT,
    PROBE_BUDGET,
    SCALE_PROBES,
    Z80,
    conformal_factor,
    group_holdout,
    holdout_folds,
    scores_by_dataset,
)
from ..likeness import MAX_MODELS as MAX_REPLAY_MODELS
from ..likeness import HeldOutQuery, choose_likeness
from ..probes import MEASURED
from .base import Prediction, ProbeRecord, Scored
from .knn import KnnChoices, KnnPopularityEstimator
from .matrix import ScoreMatrix

if TYPE_CHECKING:
    from .gnn import GnnEstimator

    Primary = GnnEstimator | KnnPopularityEstimator
else:
    Primary = Any

GRID_STEP = 0.1  # 66 weightings of three members, 11 of two
MARGIN = 0.05  # a pseudo-target may fall this far below popularity's Pearson before it is penalised
SHORTFALL_WEIGHT = 2.0  # per unit of Pearson below popularity's (beyond MARGIN), on one target
REGRET_WEIGHT = 0.1  # per score spread of top-1 regret: a tie-breaker between blends of equal Pearson
# Objectives this close count as equal: then the most weight on the primary wins. It learned from the whole
# graph (the GNN already takes the kNN prior and popularity as inputs), so moving weight off it takes a clear
# gain on the pseudo-targets, not their noise (TabZoo: the GNN alone was best on the real targets).
TIE = 0.005
MIN_REGIME = 10  # pseudo-targets each of the near and far halves needs for weights of its own
# PROBE_BUDGET (models measured on a pseudo-target to learn a probed query's weights and σ scale) and MIN_LEFT
# (models it keeps unmeasured to be judged on) are calibration's.


def member_names(primary: Primary) -> tuple[str, ...]:
    if isinstance(primary, KnnPopularityEstimator):
        return ("knn", "popularity")
    return ("gnn", "knn", "popularity")


# A probed query's shown σ follows its own probes' residuals (`ResidualScale`): the prior's weight, in probes, that
# shrinks the residuals' mean square toward the pseudo-targets' median (1 probe: a third of the way from the median
# to its own; 5 probes, a search's default, 5/7 of the way), and the powers of the shrunk ratio tried on the
# pseudo-targets (0: the factor is 1, the probed scale as before).
PROBE_PRIOR = 2.0
RESIDUAL_POWERS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class ResidualScale:
    """A probed query's shown σ: `scale` times `factor(its probes' ratios)` times the blended σ.

    A probe's ratio is |reading - cold prediction| / cold σ (the blend's, unscaled) at the probed model: how far
    the library's prediction missed this dataset, in its own σ. On TransferGraph without features the σ does
    not follow a dataset's difficulty (the per-target factor the intervals needed ran 1.45-25.9 on TG image), so
    one scale cannot cover every target; the probes measure the difficulty. The factor is the mean square of the
    ratios over `reference` (the pseudo-targets' median), shrunk toward 1 by `prior` probes' worth, to the
    `power` / 2. `scale` is the conformal factor of the pseudo-targets' unmeasured residuals / σ, each divided by
    its target's factor, so coverage holds on the pseudo-targets whatever the factor."""

    power: float
    reference: float
    scale: float
    prior: float = PROBE_PRIOR

    def factor(self, ratios: np.ndarray) -> float:
        """The multiplier of a query whose probes missed by `ratios` (1: no usable probe)."""
        r = np.asarray(ratios, dtype=float)
        r = r[np.isfinite(r)]
        if not len(r) or self.power == 0 or self.reference <= 0:
            return 1.0
        k = len(r)
        shrunk = (k * float(np.mean(r**2)) / self.reference + self.prior) / (k + self.prior)
        return float(shrunk ** (self.power / 2))

    def to_dict(self) -> dict[str, float]:
        return {"power": self.power, "reference": self.reference, "scale": self.scale, "prior": self.prior}

    @classmethod
    def from_dict(cls, state: dict[str, Any] | None) -> ResidualScale | None:
        if state is None:
            return None
        return cls(float(state["power"]), float(state["reference"]), float(state["scale"]), float(state["prior"]))


@dataclass(frozen=True)
class BlendWeights:
    """The members' weights per kind of query, the blend's σ multiplier, and what they were learned from."""

    members: tuple[str, ...]
    near: tuple[float, ...]  # a query without probes, no farther from the library than `threshold`
    far: tuple[float, ...]  # a query without probes farther than `threshold` from every library dataset
    probed: tuple[float, ...]  # a query with measured probes
    threshold: float = math.inf
    interval_scale: float = 1.0  # σ's multiplier for a query without probes
    targets: int = 0  # pseudo-targets behind the weights; 0: none (all weight on the primary)
    validation: dict[str, float] = field(default_factory=dict)  # mean Pearson there: each member, the blend
    probed_interval_scale: float | None = None  # σ's multiplier for a query with probes (None: `interval_scale`)
    # The intervals shown (a prediction's σ), where they are learned apart from the σ above, which the adaptive
    # probing policy conditions on (`fit_blend`: on whole source groups held out); None: the scale above.
    shown_interval_scale: float | None = None
    shown_probed_interval_scale: float | None = None
    # The shown σ's multiplier for a query without probes farther than `threshold` (`shown_interval_scale` then
    # serves the nearer ones); None: one scale for both.
    shown_far_interval_scale: float | None = None
    # A probed query's shown σ scaled by its own probes' residuals (`ResidualScale`); None: the scales above.
    residual_scale: ResidualScale | None = None
    # How sharply the probing policy's portfolio weighs the library's datasets by likeness to the query, chosen on
    # the pseudo-targets (`likeness.choose_likeness`), and each candidate's mean regret there; None: the policy's
    # default
    likeness: float | None = None
    likeness_regrets: dict[str, float] = field(default_factory=dict)

    def scale_for(self, *, probed: bool) -> float:
        """σ's multiplier for the probing policy (and the shown intervals where none is learned apart)."""
        if probed and self.probed_interval_scale is not None:
            return self.probed_interval_scale
        return self.interval_scale

    def shown_scale_for(self, *, probed: bool, distance: float | None = None) -> float:
        """σ's multiplier for the intervals a prediction shows; `distance`: a query without probes farther than
        `threshold` from every library dataset gets the far one where it was learned apart."""
        if not probed and self.shown_far_interval_scale is not None and self.is_far(distance):
            return self.shown_far_interval_scale
        shown = self.shown_probed_interval_scale if probed else self.shown_interval_scale
        return self.scale_for(probed=probed) if shown is None else shown

    def is_far(self, distance: float | None) -> bool:
        return distance is not None and distance > self.threshold

    @classmethod
    def primary_only(cls, members: Sequence[str]) -> BlendWeights:
        alone = tuple(1.0 if i == 0 else 0.0 for i in range(len(members)))
        return cls(tuple(members), alone, alone, alone)

    def for_query(self, *, probed: bool, distance: float | None) -> tuple[float, ...]:
        if probed:
            return self.probed
        return self.far if self.is_far(distance) else self.near

    def describe(self) -> str:
        def one(weights: tuple[float, ...]) -> str:
            return ", ".join(f"{m} {w:.1f}" for m, w in zip(self.members, weights, strict=True) if w > 0)

        text = f"near: {one(self.near)}"
        if self.far != self.near:
            text += f"; far (distance > {self.threshold:.2f}): {one(self.far)}"
        text += f"; with probes: {one(self.probed)}"
        if self.residual_scale is not None:
            text += f" (σ shown by the probes' residuals, power {self.residual_scale.power:g})"
        if self.shown_far_interval_scale is not None:
            near = self.shown_scale_for(probed=False)
            text += f"; intervals x{near:.2f} near, x{self.shown_far_interval_scale:.2f} far"
        if self.likeness is not None:
            text += f"; probes weigh datasets by likeness {self.likeness:g}"
        return f"{text}; from {self.targets} held-out datasets"

    def to_dict(self) -> dict[str, Any]:
        """Plain containers, for a checkpoint (`torch.load(weights_only=True)` reads them back)."""
        return {
            "members": list(self.members),
            "near": list(self.near),
            "far": list(self.far),
            "probed": list(self.probed),
            "threshold": float(self.threshold),
            "interval_scale": float(self.interval_scale),
            "targets": int(self.targets),
            "validation": dict(self.validation),
            "probed_interval_scale": _optional(self.probed_interval_scale),
            "shown_interval_scale": _optional(self.shown_interval_scale),
            "shown_probed_interval_scale": _optional(self.shown_probed_interval_scale),
            "shown_far_interval_scale": _optional(self.shown_far_interval_scale),
            "residual_scale": None if self.residual_scale is None else self.residual_scale.to_dict(),
            "likeness": _optional(self.likeness),
            "likeness_regrets": dict(self.likeness_regrets),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> BlendWeights:
        """Back from `to_dict`; anything else raises ValueError."""
        try:
            weights = {k: tuple(float(w) for w in state[k]) for k in ("near", "far", "probed")}
            members = tuple(str(m) for m in state["members"])
            blend = cls(
                members,
                **weights,
                threshold=float(state["threshold"]),
                interval_scale=float(state["interval_scale"]),
                targets=int(state["targets"]),
                validation={str(k): float(v) for k, v in state.get("validation", {}).items()},
                # Absent from a checkpoint written before them: the scales above serve.
                probed_interval_scale=_optional(state.get("probed_interval_scale")),
                shown_interval_scale=_optional(state.get("shown_interval_scale")),
                shown_probed_interval_scale=_optional(state.get("shown_probed_interval_scale")),
                shown_far_interval_scale=_optional(state.get("shown_far_interval_scale")),
                residual_scale=ResidualScale.from_dict(state.get("residual_scale")),
                likeness=_optional(state.get("likeness")),
                likeness_regrets={str(k): float(v) for k, v in (state.get("likeness_regrets") or {}).items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"not blend weights: {error!r}") from error
        if any(len(w) != len(members) for w in weights.values()):
            raise ValueError(f"blend weights do not match its members {members}")
        return blend


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


class BlendedEstimator:
    """The members behind the public surface of one estimator; the primary's name, models and probe-selector."""

    def __init__(self, primary: Primary, knn: KnnPopularityEstimator, blend: BlendWeights):
        if list(knn.model_ids) != list(primary.model_ids):
            raise ValueError("the blend's members must score the same models in the same order")
        if blend.members != member_names(primary):
            raise ValueError(f"blend weights for {blend.members}, members here {member_names(primary)}")
        self.primary = primary
        self.knn = knn
        self.blend = blend
        self.name = primary.name
        self.sign = primary.sign
        self.model_ids = primary.model_ids
        self.dataset_ids = primary.dataset_ids
        self.feature_names = primary.feature_names

    @classmethod
    def assemble(
        cls,
        primary: Primary,
        snapshot: Snapshot,
        blend: BlendWeights,
        *,
        neighbours: int = 8,
        knn_choices: KnnChoices | None = None,
    ) -> BlendedEstimator:
        """The primary (trained or loaded) with the cheap members fitted on the same snapshot; `knn_choices` (an
        older graph's kNN's, `KnnChoices`): the kNN keeps them instead of choosing on held-out datasets again."""
        return cls(primary, _knn_beside(primary, snapshot, neighbours, knn_choices), blend)

    @property
    def interval_scale(self) -> float:
        """The shown intervals' multiplier for a query without probes."""
        return self.blend.shown_scale_for(probed=False)

    def shared_features(self, features: dict[str, float]) -> list[str]:
        return self.primary.shared_features(features)

    def state(self) -> Any:
        return self.primary.state()  # type: ignore[union-attr]

    @property
    def likeness(self) -> float | None:
        """The probing policy's likeness chosen for this library (None: the policy's default)."""
        return self.blend.likeness

    def behaviour(self) -> np.ndarray | ScoreMatrix:
        """The primary's standardised scores, for the adaptive probing policy's correlations: the GNN's dense
        array, or the kNN's records as a `ScoreMatrix`."""
        return self.primary.behaviour()  # type: ignore[union-attr]

    def serve_onnx(self, *args: Any, **kwargs: Any) -> Any:
        return self.primary.serve_onnx(*args, **kwargs)  # type: ignore[union-attr]

    def select_probes(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        budget: int = 5,
        among: Collection[str] | None = None,
    ) -> list[str]:
        return self.primary.select_probes(features, known_dataset=known_dataset, budget=budget, among=among)

    def probes_used(self, probes: Sequence[ProbeRecord], *, known_dataset: str | None = None) -> int:
        return self.primary.probes_used(probes, known_dataset=known_dataset)

    def is_probed(self, *, known_dataset: str | None, probes: Sequence[ProbeRecord]) -> bool:
        """Whether the query is served as one with probes: a new dataset with a measured probe."""
        return known_dataset not in self.dataset_ids and bool(self.knn.measured(probes))

    def weights_for(
        self, features: dict[str, float], *, known_dataset: str | None, probes: Sequence[ProbeRecord]
    ) -> tuple[float, ...]:
        """The weights this query gets (see the module's doc)."""
        probed = self.is_probed(known_dataset=known_dataset, probes=probes)
        return self.blend.for_query(probed=probed, distance=self.distance_of(features, probed=probed))

    def distance_of(self, features: dict[str, float], *, probed: bool) -> float | None:
        """The query's distance to the nearest library dataset, where its weights and shown σ depend on it."""
        return None if probed else self.knn.nearest_distance(features)

    def members_scored(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        probes: Sequence[ProbeRecord] = (),
        weights: Sequence[float] | None = None,
    ) -> list[Scored | None]:
        """Each member's vectors for the query (None for a member of weight 0 in `weights`)."""
        needed = [True] * len(self.blend.members) if weights is None else [w > 0 for w in weights]
        own = known_dataset if known_dataset in self.knn.dataset_ids else None
        out: list[Scored | None] = []
        for name, need in zip(self.blend.members, needed, strict=True):
            if not need:
                out.append(None)
            elif name == "gnn":  # a dataset node without records still brings its similarity rows
                out.append(self.primary.score_all(features, known_dataset=known_dataset, probes=probes))
            elif name == "knn":
                out.append(self.knn.score_all(features, known_dataset=own, probes=probes))
            else:
                out.append(self.knn.score_popularity(features, known_dataset=own, probes=probes))
        return out

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        """The weighted sum of the members' vectors; a model measured on the query keeps its measurement. σ is
        the shown intervals' (`BlendWeights.shown_scale_for`)."""
        return self._blended(features, known_dataset=known_dataset, probes=probes, shown=True)

    def score_for_policy(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        """`score_all` with the σ the adaptive probing policy conditions on (`BlendWeights.scale_for`): its
        conditional and its stopping rule were chosen with that scale, so honest intervals leave its decisions
        as they were (the scores are the same)."""
        return self._blended(features, known_dataset=known_dataset, probes=probes, shown=False)

    def _blended(
        self, features: dict[str, float], *, known_dataset: str | None, probes: Sequence[ProbeRecord], shown: bool
    ) -> Scored:
        probed = self.is_probed(known_dataset=known_dataset, probes=probes)
        distance = self.distance_of(features, probed=probed)
        weights = self.blend.for_query(probed=probed, distance=distance)
        scored = self.members_scored(features, known_dataset=known_dataset, probes=probes, weights=weights)
        used = [(w, s) for w, s in zip(weights, scored, strict=True) if s is not None]
        # Σ w · s over the members, in their order (the sums `sum()` made, bit for bit), into one fresh vector
        # each: at 1M models every pass and every new 8 MB vector counts.
        scores, sigma = _weighted_sum(used, "scores"), _weighted_sum(used, "uncertainty")
        lead = max(used, key=lambda ws: ws[0])[1]
        exact = used[0][1].uncertainty == 0  # measured: every member returns it as is
        for _, s in used[1:]:
            exact &= s.uncertainty == 0
        blend = self.blend
        scale = blend.shown_scale_for(probed=probed, distance=distance) if shown else blend.scale_for(probed=probed)
        measured = bool(exact.any())
        if measured:  # a model measured on the query: its measurement, uncertainty 0
            scores = np.where(exact, lead.scores, scores).astype(float, copy=False)
            residual = self.blend.residual_scale
            if shown and probed and residual is not None:  # the query's own probes say how far the σ misses
                scale = residual.scale * residual.factor(
                    self.probe_ratios(features, scores, exact, known_dataset=known_dataset)
                )
        sigma *= scale
        if measured:
            sigma[exact] = 0.0
        uncertainty = sigma
        note = "" if len(used) == 1 else f" (served as a blend: {self._weights_text(weights)})"

        def build(j: int) -> Prediction:
            first = lead.prediction(j)  # evidence and explanation from the member of most weight
            if exact[j]:
                return first
            return Prediction(first.model_id, float(scores[j]), float(uncertainty[j]), first.evidence,
                              first.explanation + note)  # fmt: skip

        return Scored(scores, uncertainty, build)

    def probe_ratios(
        self, features: dict[str, float], readings: np.ndarray, measured: np.ndarray, *, known_dataset: str | None
    ) -> np.ndarray:
        """|reading - cold prediction| / cold σ (the blend's, unscaled) at each measured model: the query predicted
        as if it had no probes (another scoring of the members), against what its probes read."""
        weights = self.blend.for_query(probed=False, distance=self.knn.nearest_distance(features))
        scored = self.members_scored(features, known_dataset=known_dataset, weights=weights)
        used = [(w, s) for w, s in zip(weights, scored, strict=True) if s is not None]
        cold = sum(w * s.scores[measured] for w, s in used)
        sigma = sum(w * s.uncertainty[measured] for w, s in used)
        ok = np.asarray(sigma) > 0
        return np.abs(readings[measured] - cold)[ok] / np.asarray(sigma)[ok]

    def predict(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> list[Prediction]:
        """A prediction for every model of the library, in library order."""
        return self.score_all(features, known_dataset=known_dataset, probes=probes).predictions()

    def _weights_text(self, weights: Sequence[float]) -> str:
        return ", ".join(f"{m} {w:.1f}" for m, w in zip(self.blend.members, weights, strict=True) if w > 0)


def _weighted_sum(used: Sequence[tuple[float, Scored]], what: str) -> np.ndarray:
    """Σ w · member.what over `used` (weight, member), in order, as float64: one new vector and one temporary."""
    (first, scored), rest = used[0], used[1:]
    total = np.multiply(getattr(scored, what), first, dtype=float)
    term = np.empty_like(total) if rest else total
    for w, member in rest:
        np.multiply(getattr(member, what), w, out=term)
        total += term
    return total


def _knn_beside(
    primary: Primary, snapshot: Snapshot, neighbours: int, choices: KnnChoices | None
) -> KnnPopularityEstimator:
    if isinstance(primary, KnnPopularityEstimator):
        return primary
    return KnnPopularityEstimator(snapshot, neighbours=neighbours, choices=choices)


# ----------------------------------------------------------------------------------------------------
# Learning the weights


@dataclass
class PseudoTarget:
    """A held-out dataset of the library: the truth of its models and every member's predictions of them."""

    dataset_id: str
    truth: np.ndarray  # (models,) in the metric
    cold: np.ndarray  # (members, models): predicted as a new dataset
    sigma: np.ndarray  # (members, models)
    distance: float  # to the nearest dataset the fit kept (NaN: no features to compare)
    probed_truth: np.ndarray | None = None  # the models not measured, when PROBE_BUDGET were
    probed: np.ndarray | None = None  # (members, those models): predicted with the measured ones as probes
    # The same with SCALE_PROBES measured (the probed σ scale's residuals): truth, predictions, σ
    scaled_truth: np.ndarray | None = None
    scaled: np.ndarray | None = None
    scaled_sigma: np.ndarray | None = None
    scaled_probes: np.ndarray | None = None  # where the SCALE_PROBES measured models are among `truth`'s
    # (members,): each member's σ level (`sigma_level`) in the fit that held this dataset out; None: not taken
    level: np.ndarray | None = None
    # Where `truth`'s models sit in that fit's model list, and that fit's behaviour (shared by its fold): what the
    # probing policy's replay reads (`likeness.choose_likeness`); None: not kept
    models: np.ndarray | None = None
    library: np.ndarray | ScoreMatrix | None = None


def pseudo_target(
    estimator: BlendedEstimator,
    dataset_id: str,
    features: dict[str, float],
    truth: dict[str, float],
    *,
    budgets: Sequence[int] = (PROBE_BUDGET, SCALE_PROBES),
) -> PseudoTarget | None:
    """Every member's predictions of a dataset hidden from `estimator`'s fit (None: under two scored models),
    cold and with each of `budgets` models measured (`PROBE_BUDGET`: the probed weights', `SCALE_PROBES`: the
    probed σ scale's)."""
    columns = [j for j, m in enumerate(estimator.model_ids) if m in truth]
    if len(columns) < 2:
        return None
    values = np.array([truth[estimator.model_ids[j]] for j in columns])
    scored = [s for s in estimator.members_scored(features, known_dataset=dataset_id) if s is not None]
    distance = estimator.knn.nearest_distance(features)
    target = PseudoTarget(
        dataset_id,
        values,
        np.stack([s.scores[columns] for s in scored]),
        np.stack([s.uncertainty[columns] for s in scored]),
        math.nan if distance is None else distance,
        models=np.array(columns, dtype=np.int64),
    )
    among = [estimator.model_ids[j] for j in columns]
    for budget in dict.fromkeys(budgets):
        chosen = estimator.select_probes(features, known_dataset=dataset_id, budget=budget, among=among)
        picked = set(chosen)
        if not chosen or len(columns) - len(picked) < MIN_LEFT:
            continue
        taken = [ProbeRecord(m, dataset_id, MEASURED, truth[m]) for m in chosen]
        rest = [j for j in columns if estimator.model_ids[j] not in picked]
        with_probes = [
            s for s in estimator.members_scored(features, known_dataset=dataset_id, probes=taken) if s is not None
        ]
        rest_truth = np.array([truth[estimator.model_ids[j]] for j in rest])
        scores = np.stack([s.scores[rest] for s in with_probes])
        if budget == PROBE_BUDGET:
            target.probed_truth, target.probed = rest_truth, scores
        if budget == SCALE_PROBES:
            target.scaled_truth, target.scaled = rest_truth, scores
            target.scaled_sigma = np.stack([s.uncertainty[rest] for s in with_probes])
            target.scaled_probes = np.array([i for i, j in enumerate(columns) if estimator.model_ids[j] in picked])
    return target


def simplex_grid(members: int, step: float = GRID_STEP) -> np.ndarray:
    """Every weighting of `members` in steps of `step` that sums to 1, one per row."""
    n = round(1 / step)
    points = [c for c in itertools.product(range(n + 1), repeat=members) if sum(c) == n]
    return np.array(points, dtype=float) / n


def _pearson_rows(rows: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pearson of each row with `truth`; a constant row ranks nothing and counts 0 (as the evaluation's)."""
    rc = rows - rows.mean(axis=1, keepdims=True)
    tc = truth - truth.mean()
    norm = np.linalg.norm(rc, axis=1) * np.linalg.norm(tc)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 1e-12, (rc @ tc) / norm, 0.0)


def objective(
    grid: np.ndarray, targets: Sequence[tuple[np.ndarray, np.ndarray]], *, sign: float, popularity: int | None
) -> np.ndarray:
    """Each weighting's mean over (truth, member predictions) pairs of Pearson, less REGRET_WEIGHT times the
    top-1 regret in the target's score spreads, less SHORTFALL_WEIGHT times the Pearson short of popularity's
    beyond MARGIN."""
    total = np.zeros(len(grid))
    for truth, predictions in targets:
        blended = grid @ predictions
        pearson = _pearson_rows(blended, truth)
        goodness = sign * truth
        spread = float(goodness.std())
        picks = np.argmax(sign * blended, axis=1)
        regret = (goodness.max() - goodness[picks]) / spread if spread > 1e-12 else np.zeros(len(grid))
        value = pearson - REGRET_WEIGHT * regret
        if popularity is not None:
            floor = _pearson_rows(predictions[popularity : popularity + 1], truth)[0]
            value -= SHORTFALL_WEIGHT * np.maximum(0.0, floor - pearson - MARGIN)
        total += value
    return total / max(len(targets), 1)


def _choose(grid: np.ndarray, values: np.ndarray) -> tuple[float, ...]:
    """The best weighting; among those within TIE of it, the one of most weight on the primary (then the
    better objective)."""
    close = np.flatnonzero(values >= values.max() - TIE)
    pick = close[np.lexsort((-values[close], -grid[close, 0]))[0]]
    return tuple(float(w) for w in grid[pick])


def learn_weights(targets: Sequence[PseudoTarget], members: Sequence[str], *, sign: float) -> BlendWeights:
    """The weights per kind of query and the σ multiplier, from the pseudo-targets (see the module's doc)."""
    members = tuple(members)
    if not targets:
        return BlendWeights.primary_only(members)
    grid = simplex_grid(len(members))
    popularity = members.index("popularity") if "popularity" in members else None
    cold = [(t.truth, t.cold) for t in targets]
    everywhere = objective(grid, cold, sign=sign, popularity=popularity)
    near = far = _choose(grid, everywhere)
    distances = np.array([t.distance for t in targets])
    threshold = math.inf
    known = np.isfinite(distances)
    if known.sum() >= 2 * MIN_REGIME:
        cut = float(np.median(distances[known]))
        beyond = known & (distances > cut)
        if beyond.sum() >= MIN_REGIME and (~beyond).sum() >= MIN_REGIME:
            threshold = cut
            halves = {}
            for name, chosen in (("near", ~beyond), ("far", beyond)):
                subset = [c for c, keep in zip(cold, chosen, strict=True) if keep]
                values = 0.5 * everywhere + 0.5 * objective(grid, subset, sign=sign, popularity=popularity)
                halves[name] = _choose(grid, values)
            near, far = halves["near"], halves["far"]
    with_probes = [(t.probed_truth, t.probed) for t in targets if t.probed is not None]
    probed = near
    if len(with_probes) >= MIN_REGIME // 2:
        probed = _choose(grid, objective(grid, with_probes, sign=sign, popularity=popularity))  # type: ignore[arg-type]
    blended_pearson = []
    for t in targets:
        w = np.array(far if t.distance > threshold else near)
        blended_pearson.append(float(_pearson_rows((w @ t.cold)[None, :], t.truth)[0]))
    validation = {
        name: float(np.mean([_pearson_rows(t.cold[i : i + 1], t.truth)[0] for t in targets]))
        for i, name in enumerate(members)
    }
    validation["blend"] = float(np.mean(blended_pearson))
    blend = BlendWeights(members, near, far, probed, threshold, 1.0, len(targets), validation, None)
    cold_scale, probed_scale = _policy_scales(blend, targets)
    return replace(blend, interval_scale=cold_scale, probed_interval_scale=probed_scale)


def cold_ratios(targets: Sequence[PseudoTarget], blend: BlendWeights) -> np.ndarray:
    """|truth - blend| / blended σ of every pseudo-target predicted cold, each by the weights (near or far)
    `blend` gives it."""
    out = []
    for t in targets:
        w = np.array(blend.for_query(probed=False, distance=t.distance))
        blended, sigma = w @ t.cold, w @ t.sigma
        ok = sigma > 0
        out.append(np.abs(t.truth - blended)[ok] / sigma[ok])
    return np.concatenate(out) if out else np.array([])


def shown_scales(
    blend: BlendWeights, targets: Sequence[PseudoTarget], *, floor: Sequence[PseudoTarget] | None = None
) -> BlendWeights:
    """`blend` with the shown intervals' scales learned on `targets` (held out apart from those `blend` was
    learned on, or the same ones with their σ put on the served fit's level, `at_served_level`), its weights and
    policy σ as they are; the probed one where enough of them were probed.

    Each is at least the scale of its condition on `floor` (None: the policy's scale; empty: no floor): where
    `targets` hide whole sources, they are no easier to predict than the random fifth's one by one, and a
    smaller quantile from them is the noise of a few sources (ImageZoo: 7, in 3 cross-fits; 3 of its 7
    leave-one-source-out folds learned a smaller one; cold coverage 0.732 with the shown scales as learned,
    0.777 with this floor, the same fits; docs/benchmarks-decisions.md, "Intervals on every library")."""
    if not targets:
        return blend
    probed = probed_ratios(targets, blend.probed)
    cold = conformal_factor(cold_ratios(targets, blend))
    with_probes = conformal_factor(probed)
    if floor is None:
        least_cold, least_probed = blend.scale_for(probed=False), blend.scale_for(probed=True)
    elif floor:
        least_cold, probed_floor = _policy_scales(blend, floor)
        least_probed = least_cold if probed_floor is None else probed_floor
    else:
        least_cold = least_probed = 0.0
    shown = replace(
        blend,
        shown_interval_scale=max(cold, least_cold),
        shown_probed_interval_scale=max(with_probes, least_probed) if len(probed) and _probed_enough(targets) else None,
        shown_far_interval_scale=None,
    )
    halves = near_and_far(blend, targets)
    if halves is None:
        return shown
    # How far a prediction misses, in its own σ, depends on the query's distance to the library, in either
    # direction (TabZoo's far tables miss by more, XRDZoo's near scans do): each half of the pseudo-targets, split
    # where the weights split, gets its own cold scale (Mondrian split conformal), each no smaller than its half
    # of `floor`.
    floor_halves = near_and_far(blend, floor) if floor else None
    scales = []
    for i, half in enumerate(halves):
        least = least_cold if floor_halves is None else conformal_factor(cold_ratios(floor_halves[i], blend))
        scales.append(max(conformal_factor(cold_ratios(half, blend)), least))
    return replace(shown, shown_interval_scale=scales[0], shown_far_interval_scale=scales[1])


def near_and_far(
    blend: BlendWeights, targets: Sequence[PseudoTarget]
) -> tuple[list[PseudoTarget], list[PseudoTarget]] | None:
    """`targets` split at the blend's distance threshold, nearer and farther (None: no threshold, or a half
    under MIN_REGIME targets)."""
    if not math.isfinite(blend.threshold):
        return None
    near = [t for t in targets if not blend.is_far(t.distance)]
    far = [t for t in targets if blend.is_far(t.distance)]
    return (near, far) if len(near) >= MIN_REGIME and len(far) >= MIN_REGIME else None


def _policy_scales(blend: BlendWeights, targets: Sequence[PseudoTarget]) -> tuple[float, float | None]:
    """The policy's cold and probed σ scales on `targets` with `blend`'s weights; the probed one None where too
    few of them were probed (a probed query's σ then takes the cold scale)."""
    cold = conformal_factor(cold_ratios(targets, blend))
    if sum(t.probed is not None for t in targets) < MIN_REGIME // 2:
        return cold, None
    return cold, conformal_factor(probed_ratios(targets, blend.probed))


def _probed_enough(targets: Sequence[PseudoTarget]) -> bool:
    return sum(t.scaled is not None for t in targets) >= MIN_REGIME // 2


def probed_ratios(targets: Sequence[PseudoTarget], weights: Sequence[float]) -> np.ndarray:
    """|truth - blend| / blended σ of the unmeasured models of every pseudo-target with SCALE_PROBES measured,
    blended by `weights`."""
    out = [r for r in (_unmeasured_ratios(t, weights) for t in targets) if r is not None]
    return np.concatenate(out) if out else np.array([])


def _unmeasured_ratios(t: PseudoTarget, weights: Sequence[float]) -> np.ndarray | None:
    if t.scaled is None or t.scaled_truth is None or t.scaled_sigma is None:
        return None
    w = np.asarray(weights, dtype=float)
    blended, sigma = w @ t.scaled, w @ t.scaled_sigma
    ok = sigma > 0
    return np.abs(t.scaled_truth - blended)[ok] / sigma[ok]


def target_probe_ratios(t: PseudoTarget, blend: BlendWeights) -> np.ndarray | None:
    """A pseudo-target's `ResidualScale` ratios: |truth - cold blend| / cold blended σ (unscaled) at its
    SCALE_PROBES measured models, each blended by the cold weights `blend` gives it (None: none measured)."""
    if t.scaled_probes is None or not len(t.scaled_probes):
        return None
    w = np.array(blend.for_query(probed=False, distance=t.distance))
    cold, sigma = w @ t.cold[:, t.scaled_probes], w @ t.sigma[:, t.scaled_probes]
    ok = sigma > 0
    return np.abs(t.truth[t.scaled_probes] - cold)[ok] / sigma[ok]


def learn_residual_scale(
    blend: BlendWeights, targets: Sequence[PseudoTarget], *, floor: Sequence[PseudoTarget] = ()
) -> ResidualScale | None:
    """The `ResidualScale` of a probed query's shown σ, learned on `targets` with SCALE_PROBES measured (None:
    fewer than MIN_REGIME // 2 of them, or the power the pseudo-targets pick is 0, the probed scale as before).

    Each power of RESIDUAL_POWERS gets its conformal scale (the unmeasured models' |residual| / σ over their
    target's factor); the power kept is the one whose coverage is closest to COVERAGE target by target (mean
    |coverage - COVERAGE| over the pseudo-targets; ties: the smaller power). Coverage over all of them holds
    for any power; the power is what spreads it evenly over easy and hard datasets. `floor` (the random
    fifth's pseudo-targets, where `targets` hide whole sources): the scale is at least theirs, with the same
    factor (see `shown_scales`)."""
    pairs = _residual_pairs(blend, targets)
    if len(pairs) < MIN_REGIME // 2:
        return None
    squares = [float(np.mean(p**2)) for p, _ in pairs if len(p)]
    reference = float(np.median(squares)) if squares else 0.0
    best: tuple[float, ResidualScale] | None = None
    for power in RESIDUAL_POWERS:
        candidate = ResidualScale(power, reference, 1.0)
        normed = [rest / candidate.factor(probe) for probe, rest in pairs]
        scale = conformal_factor(np.concatenate(normed))
        loss = float(np.mean([abs(np.mean(n <= scale * Z80) - COVERAGE) for n in normed if len(n)]))
        if best is None or loss < best[0] - 1e-12:
            best = (loss, replace(candidate, scale=scale))
    assert best is not None
    chosen = best[1]
    if chosen.power == 0:
        return None
    below = _residual_pairs(blend, floor)
    if below:
        normed = [rest / chosen.factor(probe) for probe, rest in below]
        chosen = replace(chosen, scale=max(chosen.scale, conformal_factor(np.concatenate(normed))))
    return chosen


def _residual_pairs(blend: BlendWeights, targets: Sequence[PseudoTarget]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probe ratios, unmeasured ratios) of every pseudo-target with both."""
    out = []
    for t in targets:
        probe, rest = target_probe_ratios(t, blend), _unmeasured_ratios(t, blend.probed)
        if probe is not None and rest is not None and len(rest):
            out.append((probe, rest))
    return out


def held_out_targets(
    snapshot: Snapshot,
    fit_primary: Callable[[Snapshot], Primary],
    folds: Sequence[Sequence[str]],
    *,
    neighbours: int = 8,
    per_dataset: dict[str, dict[str, float]] | None = None,
    budgets: Sequence[int] = (PROBE_BUDGET, SCALE_PROBES),
    reference: dict[str, float] | None = None,
) -> tuple[list[PseudoTarget], tuple[str, ...]]:
    """`fit_primary` once per fold of held-out datasets, and every member's predictions of those (with each of
    `budgets` models measured too): the pseudo-targets, with the members' names (empty: no fold). Each fit's σ
    level is taken at `reference` (default: the library's `reference_query`)."""
    per_dataset = scores_by_dataset(snapshot) if per_dataset is None else per_dataset
    nodes = {d.dataset_id: d for d in snapshot.datasets}
    records = interaction_columns_of(snapshot)
    targets: list[PseudoTarget] = []
    members: tuple[str, ...] = ()
    reference = reference_query(snapshot) if reference is None else reference
    for hidden in folds:
        graph = replace(snapshot, interactions=records.without_datasets(set(hidden)))
        primary = fit_primary(graph)
        members = member_names(primary)
        held = BlendedEstimator.assemble(primary, graph, BlendWeights.primary_only(members), neighbours=neighbours)
        level = sigma_level(held, reference)
        own = getattr(primary, "behaviour", None)  # (a primary without library behaviour has no policy to replay)
        library = own() if callable(own) else None
        for dataset_id in sorted(hidden):
            node = nodes.get(dataset_id)
            features = dataset_raw_features(node) if node is not None else {}
            target = pseudo_target(held, dataset_id, features, per_dataset[dataset_id], budgets=budgets)
            if target is not None:
                target.level, target.library = level, library
                targets.append(target)
    return targets, members


def reference_query(snapshot: Snapshot) -> dict[str, float]:
    """The library's mean query: each raw feature's mean over the datasets that have it (no features: the
    featureless query). Every fit of the library, whatever it held out, answers it as a new dataset, so its σ
    there compares the fits' σ levels (`sigma_level`)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for node in snapshot.datasets:
        for key, value in dataset_raw_features(node).items():
            if math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sorted(sums)}


def sigma_level(estimator: BlendedEstimator, query: dict[str, float]) -> np.ndarray:
    """Each member's mean σ over every model for `query` (`reference_query`), unscaled: the member's σ level in
    this fit (the mean, so the blend's level is the weighted sum of the members')."""
    scored = estimator.members_scored(query)
    return np.array([float(np.mean(s.uncertainty)) if s is not None else math.nan for s in scored])


def level_factors(served: np.ndarray | None, level: np.ndarray | None) -> np.ndarray | None:
    """Each member's served σ level over a calibration fit's (None: either not taken); 1 where a level is zero,
    negative or not finite (a member without σ, or a degenerate fit: its σ as it is)."""
    if served is None or level is None or len(served) != len(level):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(served, dtype=float) / np.asarray(level, dtype=float)
    usable = (np.asarray(served) > 0) & (np.asarray(level) > 0) & np.isfinite(ratio) & (ratio > 0)
    return np.where(usable, ratio, 1.0)


def at_served_level(targets: Sequence[PseudoTarget], served: np.ndarray | None) -> list[PseudoTarget]:
    """`targets` with each member's σ (cold, and with SCALE_PROBES measured) put on the served fit's level:
    times the member's served level over that of the fit that held the target out (`level_factors`).

    The calibration fits train on fewer datasets than the served fit, and the GNN ensemble's spread shrinks
    with more training datasets while its errors on a new dataset do not (TransferGraph image without features:
    the served fit's σ 0.72 of its calibration fits'), so |residual| / σ learned at their level is too small
    served. For the shown scales only: the weights and the policy's σ are learned on `targets` as they are."""
    out = []
    for t in targets:
        factors = level_factors(served, t.level)
        if factors is None or np.all(factors == 1.0):
            out.append(t)
            continue
        column = factors[:, None]
        scaled_sigma = None if t.scaled_sigma is None else t.scaled_sigma * column
        out.append(replace(t, sigma=t.sigma * column, scaled_sigma=scaled_sigma))
    return out


def fit_blend(
    snapshot: Snapshot,
    fit_primary: Callable[[Snapshot], Primary],
    *,
    neighbours: int = 8,
    seed: int = 0,
    family_run: int = 1,
    by_group: bool = False,
    shown_by_group: bool = True,
    shown_at_served_level: bool = True,
) -> BlendedEstimator:
    """The served estimator of `snapshot`: `fit_primary` once per calibration fold (its hidden datasets are the
    pseudo-targets the weights and σ are learned on), then once on everything.

    `family_run` > 1 hides the pseudo-targets by families (`calibration.family_holdout`); served: 1, one by one.
    Hidden by runs of 10 ids, TabZoo and XRDZoo gained nothing on the targets under popularity's (2026-12-06,
    docs/benchmarks-recommender.md, `benchmarks/blend_folds.py`). `by_group`: a library whose datasets name their
    source (TextZoo, ImageZoo) hides whole sources, in `CROSS_FOLDS` cross-fits (`calibration.group_folds`).
    Served: off. On TextZoo it lifted cold coverage 0.657 -> 0.738, Pearson 0.573 -> 0.584, regret@1 0.059 ->
    0.041, but the search's adaptive policy ended worse at B = 3/5/10 (0.041/0.036/0.024, was 0.035/0.028/0.017;
    docs/benchmarks-decisions.md, "Honest intervals"), at 3 calibration fits instead of 1.

    `shown_by_group` (served): such a library learns the intervals shown on whole sources held out all the same,
    in `CROSS_FOLDS` more fits (`shown_scales`), and keeps the weights and the σ the policy conditions on from
    the folds above: a query from a source the library lacks gets intervals as wide as its errors (TextZoo cold
    coverage 0.739 -> 0.755; ImageZoo, the shown scale no smaller than the policy's, 0.732 -> 0.777) while every
    ranking and probing decision stays as it was.

    `shown_at_served_level` (served): the shown scales are learned with the pseudo-targets' σ put on the served
    fit's level (`at_served_level`): its GNN trains on every dataset, its calibration fits on fewer, and its σ is
    smaller while its errors on a new dataset are not (TransferGraph image without features, cold: coverage
    0.593 with the scale learned at the calibration fits' level; docs/benchmarks-decisions.md, "Intervals on
    TransferGraph without features"). The policy's σ and every prediction stay as they were. Without source
    groups the shown scales are no smaller than the policy's: a served σ level above the calibration fits' is no
    sign of smaller errors.

    A library past calibration's cap (a fifth over 40 datasets) learns its shown intervals on two more disjoint
    fifths besides the first (`calibration_folds`), its weights and the policy's σ on the first alone.

    The probing policy's likeness is chosen on the same pseudo-targets as the shown intervals (all three fifths of
    a large library), the policy replayed on each as a search would probe it (`likeness.choose_likeness`)."""
    per_dataset = scores_by_dataset(snapshot)
    folds, shown_folds = calibration_folds(
        snapshot, seed=seed, per_dataset=per_dataset, family_run=family_run, by_group=by_group,
        shown_by_group=shown_by_group,
    )  # fmt: skip
    reference = reference_query(snapshot)  # every fit's σ level is taken at the library's mean query
    targets, members = held_out_targets(
        snapshot, fit_primary, folds, neighbours=neighbours, per_dataset=per_dataset, reference=reference
    )
    shown, _ = held_out_targets(
        snapshot, fit_primary, shown_folds, neighbours=neighbours, per_dataset=per_dataset, budgets=(SCALE_PROBES,),
        reference=reference,
    )  # fmt: skip
    primary = fit_primary(snapshot)
    sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
    blend = learn_weights(targets, members or member_names(primary), sign=sign)
    served = BlendedEstimator.assemble(primary, snapshot, blend, neighbours=neighbours)
    if shown and not group_holdout(snapshot, seed=seed, per_dataset=per_dataset):
        # More random fifths of a large library: one draw of 40 datasets is a draw of 40 (errors on a dataset move
        # together), so the shown intervals learn on every fold's datasets as on the first's alone (OBOE: coverage
        # 0.867 on one fold's 40, 0.826 on 120; docs/benchmarks-decisions.md, "Intervals learned on more held-out
        # datasets"). The weights and the policy's σ above stay the first fold's: on all 120 they moved the
        # ranking, mean Pearson up and regret@1 up (XRDZoo +0.0085), a trade not made here.
        targets, shown = [*targets, *shown], []
    # The probing policy's likeness, replayed on the pseudo-targets as fitted (the policy's σ, every prediction)
    chosen = choose_likeness(held_out_queries(targets, blend, sign), scale=ProbeScale.of_library(snapshot.library.meta))
    blend = replace(
        blend,
        likeness=chosen.likeness if chosen.regrets else None,
        likeness_regrets={f"{k:g}": v for k, v in chosen.regrets.items()},
    )
    if shown_at_served_level:
        # The shown intervals' scales learned with every pseudo-target's σ at the served fit's level (see
        # `at_served_level`); the weights and the policy's σ above are learned on the pseudo-targets as they are.
        level = sigma_level(served, reference)
        as_fitted, targets, shown = targets, at_served_level(targets, level), at_served_level(shown, level)
        # Without source groups the floor is the policy's scale (on the pseudo-targets as fitted): the level
        # argument only says a served σ is too small; where the served fit's σ level is the larger, it is no
        # evidence the errors are smaller (TG text with features, cold coverage 0.623 without this floor, 0.687
        # with it, on the same predictions).
        blend = shown_scales(blend, shown, floor=targets) if shown else shown_scales(blend, targets, floor=as_fitted)
    else:
        blend = shown_scales(blend, shown)
    # The probed query's shown σ by its own probes, learned where the shown scales are (see `shown_scales`).
    residual = learn_residual_scale(blend, shown or targets, floor=targets if shown else ())
    served.blend = replace(blend, residual_scale=residual)
    return served


def held_out_queries(targets: Sequence[PseudoTarget], blend: BlendWeights, sign: float) -> list[HeldOutQuery]:
    """The pseudo-targets as the probing policy sees a new query (`likeness.HeldOutQuery`): the blend's cold
    predictions, the policy's σ, their fit's behaviour (those that kept it)."""
    queries = []
    for t in targets:
        if t.models is None or t.library is None:
            continue
        w = np.array(blend.for_query(probed=False, distance=t.distance))
        mean, sd = w @ t.cold, (w @ t.sigma) * blend.scale_for(probed=False)
        kept = np.argsort(-sign * mean, kind="stable")[:MAX_REPLAY_MODELS]  # (all of a library of fewer)
        kept.sort()
        columns = t.models[kept]
        queries.append(
            HeldOutQuery(
                [str(j) for j in columns.tolist()],
                t.truth[kept],
                mean[kept],
                sd[kept],
                t.library,
                sign,
                columns=columns,
            )
        )
    return queries


def calibration_folds(
    snapshot: Snapshot,
    *,
    seed: int = 0,
    per_dataset: dict[str, dict[str, float]] | None = None,
    family_run: int = 1,
    by_group: bool = False,
    shown_by_group: bool = True,
) -> tuple[list[list[str]], list[list[str]]]:
    """`fit_blend`'s held-out folds: those its weights and policy σ are learned on, and those the shown
    intervals are learned on apart: whole source groups where the datasets name them (unless the first are
    already by source), else, where calibration's cap leaves the first fold a share of a large library
    (`calibration.CALIBRATION_FITS`), its other disjoint folds, pooled with the first. One primary fit each,
    beside the served one."""
    per_dataset = scores_by_dataset(snapshot) if per_dataset is None else per_dataset
    kwargs: dict[str, Any] = dict(seed=seed, per_dataset=per_dataset, run=family_run, by_group=by_group)
    folds = holdout_folds(snapshot, fits=1, **kwargs)
    shown = group_holdout(snapshot, seed=seed, per_dataset=per_dataset) if shown_by_group and not by_group else []
    if not shown:  # a library past calibration's cap: more random fifths, for the shown intervals only
        more = holdout_folds(snapshot, fits=CALIBRATION_FITS, **kwargs)
        shown = more[len(folds) :] if more[: len(folds)] == folds else []
    return folds, shown
