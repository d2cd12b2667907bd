"""What an estimator takes besides the graph (probe records) and gives back for one model."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Evidence:
    dataset_id: str
    similarity: float  # in (0, 1]
    score: float  # the model's recorded score on that dataset


@dataclass(frozen=True)
class Prediction:
    model_id: str
    score: float  # predicted score in the library's metric
    uncertainty: float  # an estimated standard deviation of that score
    evidence: list[Evidence] = field(default_factory=list)
    explanation: str = ""


@dataclass(frozen=True)
class ProbeRecord:
    """A cheap measurement of a model on a dataset (LogME, H-score, or a real score) and what it cost."""

    model_id: str
    dataset_id: str
    probe: str
    value: float
    seconds: float = 0.0
