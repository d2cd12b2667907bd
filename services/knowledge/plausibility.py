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
from dataclasses import dataclass, field

import numpy as np

from modsnet.data.graph import InteractionColumns, Snapshot
from modsnet.runtime.errors import InvalidArgument

ROBUST_Z = 6.0  # how many robust standard deviations away a score is quarantined
BEYOND_SPAN = 0.25  # how far beyond the recorded scores, in their span, a score is quarantined
_MAD_TO_SD = 1.4826  # a normal distribution's standard deviation per median absolute deviation


def _median(values: np.ndarray) -> float:
    """`statistics.median` of a non-empty array: the middle value, or the mean of the two middle ones."""
    ordered = np.sort(values)
    n = len(ordered)
    return float(ordered[n // 2]) if n % 2 else float((ordered[n // 2 - 1] + ordered[n // 2]) / 2)


def _group_medians(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """The median of `values` per group code 0..n_groups-1 as `_median` takes it (NaN for an empty group)."""
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    low = np.minimum(starts + (counts - 1) // 2, len(ordered) - 1)
    high = np.minimum(starts + counts // 2, len(ordered) - 1)
    medians = np.where(counts % 2 == 1, ordered[low], (ordered[low] + ordered[high]) / 2)
    return np.where(counts > 0, medians, np.nan)


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
        """The summary of a snapshot's records, computed on their columns: grouped medians by sorting, the same
        numbers as `statistics.median` per group (a feedback waited ~0.6 s for the record-by-record version on a
        52k-record library, and every feedback of a cold cache built it at once)."""
        declared = snapshot.library.meta.get("metric_range")
        columns = InteractionColumns.from_records(snapshot.interactions)
        scores = columns.score
        if not len(scores):
            allowed = (float(declared[0]), float(declared[1])) if declared else None
            return cls(allowed, bool(declared), None)
        low, high = float(scores.min()), float(scores.max())
        margin = (high - low) / 2
        allowed = (float(declared[0]), float(declared[1])) if declared else (low - margin, high + margin)
        model_of, dataset_of = columns.model_index, columns.dataset_index
        centre = _median(scores)
        by_model = _group_medians(model_of, scores, len(columns.model_ids))
        by_dataset = _group_medians(dataset_of, scores, len(columns.dataset_ids))
        residuals = scores - (by_model[model_of] + by_dataset[dataset_of] - centre)
        spreads = _MAD_TO_SD * _group_medians(model_of, np.abs(scores - by_model[model_of]), len(columns.model_ids))
        models = np.flatnonzero(np.bincount(model_of, minlength=len(columns.model_ids)))
        datasets = np.flatnonzero(np.bincount(dataset_of, minlength=len(columns.dataset_ids)))
        return cls(
            allowed,
            bool(declared),
            (low, high),
            centre,
            _MAD_TO_SD * _median(np.abs(residuals)),
            {columns.model_ids[j]: float(by_model[j]) for j in models.tolist()},
            {columns.model_ids[j]: float(spreads[j]) for j in models.tolist()},
            {columns.dataset_ids[i]: float(by_dataset[i]) for i in datasets.tolist()},
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
