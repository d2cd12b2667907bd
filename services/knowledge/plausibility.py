"""Whether a feedback score is believable, judged against the library's learned records.

Two rules, in this order:

1. **Refused** (InvalidArgument): a score outside the metric's range. The range is `metric_range` of
   library.yaml when declared; else the library's recorded scores widened by half their span on each side
   (accuracy 0.5-0.9 allows 0.3-1.1). `1e308` never gets in.
2. **Quarantined** (stored, reported, not learned from until an admin confirms it): a score the records do
   not make plausible. It lies beyond the library's recorded scores by more than a quarter of their span
   (`BEYOND_SPAN`; a new best a little above the old one is news, not noise), or more than `ROBUST_Z` robust
   standard deviations from what the records imply for this model on this dataset: the model's median plus
   the dataset's median minus the library's (an additive model of model skill and dataset difficulty), with
   the spread of the library's residuals around that model (1.4826 x their median absolute deviation).
   On a dataset without records, the model's median and the spread of the model's own scores.

So one report cannot move other predictions by more than the noise the records already have: anything
further off waits for a person. A library with no records yet has nothing to judge by: its feedback is
only held to the declared range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from modsnet.data.graph import Snapshot
from modsnet.runtime.errors import InvalidArgument

ROBUST_Z = 6.0  # how many robust standard deviations away a score is quarantined
BEYOND_SPAN = 0.25  # how far beyond the recorded scores, in their span, a score is quarantined
_MAD_TO_SD = 1.4826  # a normal distribution's standard deviation per median absolute deviation


def _spread(values: Iterable[float], centre: float) -> float:
    deviations = [abs(v - centre) for v in values]
    return _MAD_TO_SD * statistics.median(deviations) if deviations else 0.0


@dataclass(frozen=True)
class ScoreSummary:
    """What a library's learned records say about scores: the allowed range and the robust centres and spreads."""

    allowed: tuple[float, float] | None  # None: no bound (no declared range, no records)
    declared: bool
    observed: tuple[float, float] | None
    library_median: float = 0.0
    residual_spread: float = 0.0
    model_median: dict[str, float] = field(default_factory=dict)
    model_spread: dict[str, float] = field(default_factory=dict)
    dataset_median: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot) -> ScoreSummary:
        declared = snapshot.library.meta.get("metric_range")
        scores = [r.score for r in snapshot.interactions]
        if not scores:
            allowed = (float(declared[0]), float(declared[1])) if declared else None
            return cls(allowed, bool(declared), None)
        low, high = min(scores), max(scores)
        margin = (high - low) / 2
        allowed = (float(declared[0]), float(declared[1])) if declared else (low - margin, high + margin)
        by_model: dict[str, list[float]] = {}
        by_dataset: dict[str, list[float]] = {}
        for rec in snapshot.interactions:
            by_model.setdefault(rec.model_id, []).append(rec.score)
            by_dataset.setdefault(rec.dataset_id, []).append(rec.score)
        centre = statistics.median(scores)
        models = {m: statistics.median(v) for m, v in by_model.items()}
        datasets = {d: statistics.median(v) for d, v in by_dataset.items()}
        residuals = [r.score - (models[r.model_id] + datasets[r.dataset_id] - centre) for r in snapshot.interactions]
        return cls(
            allowed,
            bool(declared),
            (low, high),
            centre,
            _spread(residuals, 0.0),
            models,
            {m: _spread(v, models[m]) for m, v in by_model.items()},
            datasets,
        )

    def check(self, score: float, model_id: str, dataset_id: str, where: str = "") -> str:
        """Raise InvalidArgument for a score outside the allowed range; else why it is quarantined, or ""."""
        if not math.isfinite(score):
            raise InvalidArgument(f"{where}score: {score!r} must be a finite number")
        if self.allowed is not None and not self.allowed[0] <= score <= self.allowed[1]:
            low, high = self.allowed
            source = "the metric_range of library.yaml" if self.declared else "the recorded scores widened by half"
            raise InvalidArgument(f"{where}score: {score!r} is outside [{low:.6g}, {high:.6g}] ({source})")
        if self.observed is None:
            return ""
        low, high = self.observed
        reach = BEYOND_SPAN * (high - low)
        if not low - reach <= score <= high + reach:
            return (
                f"score {score:.6g} is further than {BEYOND_SPAN:g} of their span beyond the library's recorded "
                f"scores [{low:.6g}, {high:.6g}]"
            )
        if model_id not in self.model_median:
            return ""
        floor = 1e-6 * max(high - low, 1e-9)  # identical records: a spread of zero must not divide
        if dataset_id in self.dataset_median:
            expected = self.model_median[model_id] + self.dataset_median[dataset_id] - self.library_median
            spread, basis = self.residual_spread, "the model's and the dataset's records"
        else:
            expected, spread = self.model_median[model_id], self.model_spread[model_id]
            basis = "the model's records"
        z = abs(score - expected) / max(spread, floor)
        if z > ROBUST_Z:
            return (
                f"score {score:.6g} is {z:.1f} robust standard deviations from the {expected:.6g} that {basis} "
                f"imply (more than {ROBUST_Z:g})"
            )
        return ""
