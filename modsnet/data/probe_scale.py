"""From a probe's scale to the record's: the shift and noise a library's own probe records show.

A search's probe measures a model on a sample of the query (`modsnet.models.probing`); the library recorded
each model on more rows. A bundle's optional `probe_records.csv` holds scores measured the probe's way on some
of its datasets, so the gap probe - record can be learned from the library itself:
- `shift`: the mean gap (TabZoo: probes run about 0.02 under the record). A probe's value on the record's
  scale is `value - shift`.
- a family's own shift, only where it differs from the others beyond noise: the family's gap minus the other
  models' gap, taken within each dataset (so a dataset's own level cancels), against its standard error over the
  datasets; families past `FAMILY_Z` errors (with at least `MIN_DATASETS` datasets) are set apart one at a time,
  the most significant first, and `shift` is then the gap of the models left. `FAMILY_Z` is high because a
  library has many families (TabZoo: 21), each tested.
- `sd`: the spread of a pair's gap around its (family) shift: a probe's noise on the record's scale; split in two
  (`level_sd`, `own_sd`): the sd of a dataset's mean gap (a sample easier or harder than the whole table, shared by
  every probe of a query) and of a pair's gap around its dataset's mean (each probe's own). A search's posterior
  weighs its probes with both (`services/recommender/policy.py` `posterior`): a level shared by every reading
  says nothing of which model is better.

Learned when the records give at least `MIN_PAIRS` pairs over `MIN_DATASETS` datasets, else None (the
library then behaves as without records). The bundle reader puts the result in the library's metadata
(`library.yaml` key `probe_scale`, see `to_meta`), so every service sees it with the library; plain numpy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modsnet.data.graph import ProbeRecord
from modsnet.models.probing import KIND_SCORE as MEASURED  # a probe that measured the library's metric

__all__ = [
    "FAMILY_COLUMN",
    "META_KEY",
    "MIN_DATASETS",
    "MIN_PAIRS",
    "ProbeScale",
    "bundle_probe_scale",
    "family_contrasts",
    "learn_probe_scale",
    "on_record_scale",
]

META_KEY = "probe_scale"  # library.yaml / LibraryInfo.meta key of the learned scale
FAMILY_COLUMN = "family"  # models.csv column naming a model's family, when the library has one
MIN_PAIRS = 50  # pairs (dataset, model) below which nothing is learned
MIN_DATASETS = 5  # datasets below which nothing is learned (a shift of one or two tables is theirs alone)
FAMILY_Z = 3.0  # standard errors a family's own shift must clear to be kept


@dataclass(frozen=True)
class ProbeScale:
    """How a library's probes relate to its records: probe - record = shift (+ the family's own) ± sd."""

    shift: float
    sd: float
    pairs: int
    datasets: int
    family_shift: dict[str, float] = field(default_factory=dict)  # family -> its shift, where beyond noise
    level_sd: float | None = None  # sd of a dataset's mean gap (shared by a query's probes); None: not split
    own_sd: float | None = None  # sd of a pair's gap around its dataset's mean

    def noise(self) -> tuple[float, float]:
        """(sd of the level a query's probes share, sd of each probe's own noise): the split where learned, else
        (0, `sd`)."""
        if self.level_sd is None or self.own_sd is None:
            return 0.0, self.sd
        return self.level_sd, self.own_sd

    def shift_for(self, family: str = "") -> float:
        return self.family_shift.get(family, self.shift)

    def corrected(self, value: float, family: str = "") -> float:
        """A probe's value on the record's scale."""
        return value - self.shift_for(family)

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "shift": round(self.shift, 6),
            "sd": round(self.sd, 6),
            "pairs": self.pairs,
            "datasets": self.datasets,
        }
        if self.level_sd is not None and self.own_sd is not None:
            out["level_sd"], out["own_sd"] = round(self.level_sd, 6), round(self.own_sd, 6)
        if self.family_shift:
            out["family_shift"] = {f: round(v, 6) for f, v in sorted(self.family_shift.items())}
        return out

    @classmethod
    def from_meta(cls, value: Any) -> ProbeScale:
        """The scale a library's metadata holds; ValueError naming what is wrong."""
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of shift, sd, pairs, datasets (and family_shift)")
        numbers = {}
        for key in ("shift", "sd", "pairs", "datasets"):
            cell = value.get(key)
            if isinstance(cell, bool) or not isinstance(cell, (int, float)) or not math.isfinite(cell):
                raise ValueError(f"{key!r} must be a finite number, not {cell!r}")
            numbers[key] = float(cell)
        if numbers["sd"] < 0 or numbers["pairs"] < 1 or numbers["datasets"] < 1:
            raise ValueError("sd must be >= 0, pairs and datasets >= 1")
        families = value.get("family_shift", {}) or {}
        if not isinstance(families, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in families.values()
        ):
            raise ValueError("'family_shift' must map family names to finite numbers")
        split: list[float | None] = []
        for key in ("level_sd", "own_sd"):
            cell = value.get(key)
            if cell is not None and (
                isinstance(cell, bool) or not isinstance(cell, (int, float)) or not math.isfinite(cell) or cell < 0
            ):
                raise ValueError(f"{key!r} must be a finite number >= 0, not {cell!r}")
            split.append(None if cell is None else float(cell))
        return cls(
            numbers["shift"],
            numbers["sd"],
            int(numbers["pairs"]),
            int(numbers["datasets"]),
            {str(f): float(v) for f, v in families.items()},
            *split,
        )

    @classmethod
    def of_library(cls, meta: Mapping[str, Any]) -> ProbeScale | None:
        """The library's scale, or None where it has none (or an unreadable one: the library then works as before)."""
        value = meta.get(META_KEY)
        if value is None:
            return None
        try:
            return cls.from_meta(value)
        except ValueError:
            return None


def learn_probe_scale(
    probes: Iterable[tuple[str, str, float]],
    recorded: Mapping[tuple[str, str], float],
    family_of: Mapping[str, str] | None = None,
    *,
    exclude: Collection[str] = (),
) -> ProbeScale | None:
    """The scale from probe records (dataset, model, score) and the library's records ((dataset, model) -> score),
    leaving out the datasets in `exclude` (an evaluation's held-out targets); None when too few pairs remain."""
    family_of = family_of or {}
    gaps: dict[str, dict[str, float]] = defaultdict(dict)  # dataset -> model -> probe - record
    for dataset_id, model_id, score in probes:
        if dataset_id in exclude or (dataset_id, model_id) not in recorded:
            continue
        gaps[dataset_id][model_id] = float(score) - float(recorded[(dataset_id, model_id)])
    pairs = sum(len(g) for g in gaps.values())
    if pairs < MIN_PAIRS or len(gaps) < MIN_DATASETS:
        return None
    # Families are set apart one at a time, the most significant first: a family's gap minus the gap of the models
    # not set apart, within each dataset (its own level cancels), against its spread over the datasets.
    apart: set[str] = set()
    while True:
        contrasts = family_contrasts(gaps, family_of, apart)
        scores = {
            f: abs(float(np.mean(v))) / max(float(np.std(v, ddof=1)) / math.sqrt(len(v)), 1e-12)
            for f, v in contrasts.items()
            if f not in apart and len(v) >= MIN_DATASETS
        }
        if not scores or max(scores.values()) <= FAMILY_Z:
            break
        apart.add(max(scores, key=lambda f: (scores[f], f)))
    common = [v for g in gaps.values() for m, v in g.items() if family_of.get(m, "") not in apart]
    level = float(np.mean(common)) if common else float(np.mean([v for g in gaps.values() for v in g.values()]))
    contrasts = family_contrasts(gaps, family_of, apart)
    family_shift = {f: level + float(np.mean(contrasts[f])) for f in sorted(apart) if contrasts.get(f)}
    residual = np.array(
        [
            gap - family_shift.get(family_of.get(model_id, ""), level)
            for g in gaps.values()
            for model_id, gap in g.items()
        ]
    )
    # The split: each dataset's mean residual (its sample's level) and the pairs' spread around it.
    means: list[float] = []
    spreads: list[float] = []
    for g in gaps.values():
        rest = [gap - family_shift.get(family_of.get(m, ""), level) for m, gap in g.items()]
        if len(rest) >= 2:
            means.append(float(np.mean(rest)))
            spreads.extend(r - means[-1] for r in rest)
    split = (float(np.std(means)), float(np.sqrt(np.mean(np.square(spreads))))) if len(means) >= 2 else (None, None)
    return ProbeScale(level, float(np.sqrt(np.mean(residual**2))), pairs, len(gaps), family_shift, *split)


def family_contrasts(
    gaps: Mapping[str, Mapping[str, float]], family_of: Mapping[str, str], apart: Collection[str]
) -> dict[str, list[float]]:
    """Per family, per dataset: its mean gap minus the mean gap of the models in no family set `apart` (itself
    excepted), where the dataset has both."""
    out: dict[str, list[float]] = defaultdict(list)
    for g in gaps.values():
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # family -> [sum of gaps, count]
        for model_id, gap in g.items():
            cell = sums[family_of.get(model_id, "")]
            cell[0] += gap
            cell[1] += 1
        common = [
            sum(c[0] for f, c in sums.items() if f not in apart),
            sum(c[1] for f, c in sums.items() if f not in apart),
        ]
        for family, (total, count) in sums.items():
            if not family:
                continue
            rest_total = common[0] - (total if family not in apart else 0.0)
            rest_count = common[1] - (count if family not in apart else 0.0)
            if rest_count:
                out[family].append(total / count - rest_total / rest_count)
    return out


def bundle_probe_scale(
    probe_rows: Iterable[Mapping[str, str]],
    recorded: Mapping[tuple[str, str], float],
    model_rows: Iterable[Mapping[str, str]],
    *,
    exclude: Collection[str] = (),
) -> ProbeScale | None:
    """`learn_probe_scale` on a bundle's tables: probe_records.csv and models.csv rows, and the records' score of
    each pair ((dataset, model) -> the mean of its records)."""
    family_of = {row["model_id"]: row.get(FAMILY_COLUMN, "") for row in model_rows}
    probes = ((row["dataset_id"], row["model_id"], float(row["score"])) for row in probe_rows)
    return learn_probe_scale(probes, recorded, family_of, exclude=exclude)


def on_record_scale(
    scale: ProbeScale | None, probes: Sequence[ProbeRecord], family_of: Callable[[str], str] | None = None
) -> list[ProbeRecord]:
    """`probes` with each measurement in the library's metric (kind `score`) put on the record's scale; other kinds
    and a library without a scale unchanged, and so is a probe of the whole table (`ProbeRecord.whole`: the
    record's protocol, no sample to shift). `family_of(model_id)` names a model's family (for its own shift)."""
    if scale is None:
        return list(probes)
    out = []
    for p in probes:
        if p.probe != MEASURED or p.whole:
            out.append(p)
            continue
        shift = scale.shift_for(family_of(p.model_id) if family_of else "")
        detail = f"{p.detail}; {-shift:+.3f} to the library's record scale" if p.detail else ""
        out.append(replace(p, value=p.value - shift, detail=detail, to_record_scale=p.to_record_scale - shift))
    return out
