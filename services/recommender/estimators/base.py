"""What an estimator takes besides the graph (probe records) and gives back for one model.

`ProbeRecord` and `Evidence` are the shared records of `modsnet.data.graph`, named here too so that the
estimators import everything they exchange from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modsnet.data.graph import Evidence, ProbeRecord

__all__ = ["Evidence", "Prediction", "ProbeRecord"]


@dataclass(frozen=True)
class Prediction:
    model_id: str
    score: float  # predicted score in the library's metric
    uncertainty: float  # an estimated standard deviation of that score
    evidence: list[Evidence] = field(default_factory=list)
    explanation: str = ""
