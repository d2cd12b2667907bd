"""What an estimator takes besides the graph (probe records) and gives back for one model.

`ProbeRecord` and `Evidence` are the shared records of `modsnet.data.graph`, named here too so that the
estimators import everything they exchange from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from modsnet.data.graph import Evidence, ProbeRecord

__all__ = ["Evidence", "Prediction", "ProbeRecord", "Scored"]


@dataclass(frozen=True)
class Prediction:
    model_id: str
    score: float  # predicted score in the library's metric
    uncertainty: float  # an estimated standard deviation of that score
    evidence: list[Evidence] = field(default_factory=list)
    explanation: str = ""


@dataclass(frozen=True)
class Scored:
    """Every model's score and uncertainty for one query as vectors (library order), which is all a ranking
    needs; `prediction(j)` builds model j's full `Prediction` (evidence, explanation) for the few shown.

    The score of a model measured on the query (a probe, a record of the dataset) is its measurement, with
    uncertainty 0, exactly as its `Prediction` says.
    """

    scores: np.ndarray
    uncertainty: np.ndarray
    build: Callable[[int], Prediction]

    def prediction(self, j: int) -> Prediction:
        return self.build(j)

    def predictions(self) -> list[Prediction]:
        return [self.build(j) for j in range(len(self.scores))]
