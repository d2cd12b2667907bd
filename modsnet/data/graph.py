"""Plain records shared by the services and their cores (no grpc, no protobuf): the knowledge graph's
nodes and edges, probe measurements, search constraints, ranked answers and the recommendation that
comes with them.

Each crosses a service boundary through one pair of functions in `modsnet.runtime.convert`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modsnet.runtime.errors import InvalidArgument

PROVENANCES = ("imported", "feedback", "probe")
# Largest cost a record may carry (seconds or bytes): far beyond any real run, and small enough that sums of
# millions of them stay finite (a store's running sums must never overflow to inf).
COST_LIMIT = 1e18


@dataclass(frozen=True)
class LibraryInfo:
    name: str
    meta: dict[str, Any]  # library.yaml content
    models: int
    datasets: int
    interactions: int
    graph_version: int
    bundle_blob_id: str
    imported_unix: float


@dataclass(frozen=True)
class Cost:
    train_seconds: float = 0.0
    inference_seconds: float = 0.0
    memory_bytes: float = 0.0


@dataclass(frozen=True)
class ModelNode:
    library: str
    model_id: str
    metadata: dict[str, str]
    cost: Cost = Cost()
    interactions: int = 0
    artifact_blob_id: str = ""  # storage blob of its runnable file (metadata column `artifact`), if any


@dataclass(frozen=True)
class DatasetNode:
    library: str
    dataset_id: str
    metadata: dict[str, str]
    features: dict[str, float] = field(default_factory=dict)
    feature_set: str = ""
    fingerprint: str = ""
    interactions: int = 0


@dataclass(frozen=True)
class InteractionRecord:
    model_id: str
    dataset_id: str
    score: float
    cost: Cost = Cost()
    provenance: str = "imported"
    request_id: str = ""  # the write that stored it: a retry of that write, a retraction, a confirmation find it
    quarantine: str = ""  # why it is held back from learning until an admin confirms it; empty: learned from


def check_cost(cost: Cost, where: str) -> None:
    """InvalidArgument naming the field unless every cost is a finite number in [0, COST_LIMIT]."""
    for name in ("train_seconds", "inference_seconds", "memory_bytes"):
        value = getattr(cost, name)
        if not (math.isfinite(value) and 0 <= value <= COST_LIMIT):
            raise InvalidArgument(f"{where}cost.{name}: {value!r} must be a finite number between 0 and {COST_LIMIT:g}")


MAX_ID_CHARS = 256


def check_id(value: str, where: str) -> None:
    """InvalidArgument unless `value` can be an id in a bundle's CSV files: non-empty, no surrounding blanks
    (a bundle strips cells), no control characters, at most MAX_ID_CHARS."""
    if not value:
        raise InvalidArgument(f"{where}: an empty id")
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > MAX_ID_CHARS:
        raise InvalidArgument(
            f"{where}: {value[:40]!r} is not an id (blanks around it, control characters or over {MAX_ID_CHARS} chars)"
        )


def check_interaction(rec: InteractionRecord, where: str = "") -> None:
    """What every stored record must be, checked before any write: a known provenance, a finite score, sane costs."""
    check_id(rec.model_id, f"{where}model_id")
    check_id(rec.dataset_id, f"{where}dataset_id")
    if rec.provenance not in PROVENANCES:
        raise InvalidArgument(f"{where}provenance {rec.provenance!r} must be one of {', '.join(PROVENANCES)}")
    if not math.isfinite(rec.score):
        raise InvalidArgument(f"{where}score: {rec.score!r} must be a finite number")
    check_cost(rec.cost, where)


@dataclass(frozen=True)
class AuditEntry:
    """One administrative change to a library's records: who did what, when."""

    unix: float
    principal: str  # who asked (the caller's authenticated name, "anonymous" without authentication)
    action: str  # "retract" | "confirm"
    library: str
    request_id: str
    records: int  # how many records it changed
    note: str = ""


@dataclass(frozen=True)
class SimilarityRecord:
    dataset_a: str
    dataset_b: str
    distance: float


@dataclass(frozen=True)
class Snapshot:
    """One library's graph, consistent at one graph version."""

    library: LibraryInfo
    models: list[ModelNode]
    datasets: list[DatasetNode]
    interactions: list[InteractionRecord]
    similarities: list[SimilarityRecord]

    @property
    def graph_version(self) -> int:
        return self.library.graph_version


@dataclass(frozen=True)
class QueryRecord:
    query_id: str
    library: str
    fingerprint: str
    filename: str
    feature_set: str
    features: dict[str, float]
    modality: str
    answer_model_ids: list[str]
    graph_version: int
    logged_unix: float = 0.0


QUERY_DATASET = "query"  # dataset id of a query's probes: the searched data is no node of the graph


@dataclass(frozen=True)
class ProbeRecord:
    """A cheap measurement of a model on a dataset (LogME, H-score, or a real score) and what it cost.

    `probe` is its kind ("score": the library's metric; "agreement": XRD finders' agreement; or a
    recorded transferability measure), `seconds` the wall time it took, `detail` one line for people.
    """

    model_id: str
    dataset_id: str
    probe: str
    value: float
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class Constraints:
    """Limits on the models a search wants back; a zero (or empty) limit is no limit."""

    max_train_seconds: float = 0.0
    max_inference_seconds: float = 0.0
    max_memory_bytes: float = 0.0
    exclude_models: frozenset[str] = frozenset()
    require_metadata: dict[str, str] = field(default_factory=dict)

    def allows(self, model: ModelNode) -> bool:
        return not self.violations(model)

    def violations(self, model: ModelNode) -> list[str]:
        """Every limit the model fails, by name (`LIMITS`); empty when `allows` is true."""
        cost = model.cost
        failed = [
            name
            for name, limit, value in (
                ("max-train-seconds", self.max_train_seconds, cost.train_seconds),
                ("max-inference-seconds", self.max_inference_seconds, cost.inference_seconds),
                ("max-memory-bytes", self.max_memory_bytes, cost.memory_bytes),
            )
            if limit and value > limit
        ]
        if model.model_id in self.exclude_models:
            failed.append("exclude")
        if any(model.metadata.get(k) != v for k, v in self.require_metadata.items()):
            failed.append("require-metadata")
        return failed


# The limits of `Constraints`, as a removal names them (the CLI's flags).
LIMITS = ("max-train-seconds", "max-inference-seconds", "max-memory-bytes", "exclude", "require-metadata")
# The costs an objective can rank by: fields of `Cost`.
COST_KINDS = ("train_seconds", "inference_seconds", "memory_bytes")
OBJECTIVE_KINDS = ("score", "score-per-cost", "pareto")


@dataclass(frozen=True)
class Objective:
    """What a search optimises among the models its constraints allow (`modsnet.data.profiles` names them)."""

    kind: str = "score"  # one of OBJECTIVE_KINDS
    cost: str = ""  # one of COST_KINDS; needed by score-per-cost and pareto

    def check(self) -> None:
        if self.kind not in OBJECTIVE_KINDS:
            raise InvalidArgument(f"objective {self.kind!r} is not one of {', '.join(OBJECTIVE_KINDS)}")
        if self.kind != "score" and self.cost not in COST_KINDS:
            raise InvalidArgument(
                f"objective {self.kind} needs a cost, one of {', '.join(COST_KINDS)} (not {self.cost!r})"
            )


@dataclass(frozen=True)
class Removal:
    """Models one limit (or the objective) kept out of an answer, and what that cost in predicted score."""

    reason: str  # one of LIMITS, "missing-cost" or "objective"
    source: str  # "request", "profile NAME", or the objective's name
    removed: int
    better: int  # of them, predicted better than the top pick
    best_score: float  # the best predicted score among them
    model_ids: list[str]  # best predicted first, at most a few
    explanation: str  # one line for people


@dataclass(frozen=True)
class Evidence:
    dataset_id: str
    similarity: float  # in (0, 1]
    score: float  # the model's recorded score on that dataset


@dataclass(frozen=True)
class RankedModel:
    """One model of a ranked answer, with what supports its place."""

    rank: int  # 1-based
    model_id: str
    predicted_score: float  # in the library's metric
    uncertainty: float  # an estimated standard deviation of that score
    cost: Cost = Cost()
    evidence: list[Evidence] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    explanation: str = ""
    on_front: bool = False  # objective pareto: on the Pareto front of score against the objective's cost
    objective_value: float = 0.0  # objective score-per-cost: the value ranked by


@dataclass(frozen=True)
class Recommendation:
    """The one model a search advises taking with the measurements it has, and why."""

    model_id: str  # also among the answer's ranked models
    measured: bool  # `score` is a probe's measurement on the query in the library's metric, not a prediction
    score: float  # in the library's metric
    reason: str  # one sentence for people


@dataclass(frozen=True)
class Ranking:
    """The recommender's answer for one query dataset."""

    models: list[RankedModel]
    graph_version: int  # the graph the ranking was computed at
    estimator: str
    path: str  # inductive | transductive
    probes_used: int
    excluded_by_constraints: int
    recommendation: Recommendation | None = None  # None when no model is left to rank
    removals: list[Removal] = field(default_factory=list)  # per limit, the models it kept out of the answer
    objective: Objective = Objective()
    profile: str = ""  # the hardware profile applied, "" for none
    constraints: Constraints | None = None  # the limits in effect: the request's and the profile's
