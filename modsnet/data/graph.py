"""Plain records shared by the services and their cores (no grpc, no protobuf): the knowledge graph's
nodes and edges, probe measurements, search constraints, ranked answers and the recommendation that
comes with them.

Each crosses a service boundary through one pair of functions in `modsnet.runtime.convert`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

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


_COST_FIELDS = ("train_seconds", "inference_seconds", "memory_bytes")


class InteractionColumns(Sequence[InteractionRecord]):
    """Interaction records as columns: what a snapshot holds, 41 bytes a record instead of three objects.

    `model_index[i]` and `dataset_index[i]` point into the id vocabularies `model_ids` and `dataset_ids`
    (a snapshot's node order; ids only records name come after); scores and costs are float64 (the exact
    numbers stored), provenance an int8 index into PROVENANCES; the rare request ids and quarantine notes
    are kept by position. It is a read-only sequence of `InteractionRecord`, each built when asked for, so
    code that iterates records still works; code that is in a hurry reads the arrays (`positions`).
    """

    __slots__ = (
        "dataset_ids", "dataset_index", "inference_seconds", "memory_bytes", "model_ids", "model_index",
        "provenance", "quarantine", "request_ids", "score", "train_seconds",
    )  # fmt: skip

    def __init__(
        self,
        model_ids: Sequence[str],
        dataset_ids: Sequence[str],
        model_index: np.ndarray,
        dataset_index: np.ndarray,
        score: np.ndarray,
        train_seconds: np.ndarray | None = None,
        inference_seconds: np.ndarray | None = None,
        memory_bytes: np.ndarray | None = None,
        provenance: np.ndarray | None = None,
        request_ids: Mapping[int, str] | None = None,
        quarantine: Mapping[int, str] | None = None,
    ):
        n = len(model_index)
        self.model_ids = list(model_ids)
        self.dataset_ids = list(dataset_ids)
        self.model_index = np.asarray(model_index, dtype=np.int32)
        self.dataset_index = np.asarray(dataset_index, dtype=np.int32)
        self.score = np.asarray(score, dtype=np.float64)

        def column(values: np.ndarray | None, dtype: type) -> np.ndarray:
            return np.zeros(n, dtype=dtype) if values is None else np.asarray(values, dtype=dtype)

        self.train_seconds = column(train_seconds, np.float64)
        self.inference_seconds = column(inference_seconds, np.float64)
        self.memory_bytes = column(memory_bytes, np.float64)
        self.provenance = column(provenance, np.int8)
        self.request_ids = dict(request_ids or {})
        self.quarantine = dict(quarantine or {})
        lengths = {len(a) for a in (self.dataset_index, self.score, self.train_seconds, self.provenance)}
        if lengths != {n}:
            raise ValueError(f"interaction columns of unequal lengths {sorted(lengths | {n})}")

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def empty(cls, model_ids: Sequence[str] = (), dataset_ids: Sequence[str] = ()) -> InteractionColumns:
        return cls(model_ids, dataset_ids, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))

    @classmethod
    def from_records(
        cls, records: Iterable[InteractionRecord], model_ids: Sequence[str] = (), dataset_ids: Sequence[str] = ()
    ) -> InteractionColumns:
        """Columns of `records`; ids not in the given vocabularies are appended to them in order of appearance."""
        if isinstance(records, InteractionColumns):
            return records.over(model_ids, dataset_ids)
        models = {m: j for j, m in enumerate(model_ids)}
        datasets = {d: i for i, d in enumerate(dataset_ids)}
        m_idx: list[int] = []
        d_idx: list[int] = []
        score: list[float] = []
        costs: tuple[list[float], list[float], list[float]] = ([], [], [])
        prov: list[int] = []
        request_ids: dict[int, str] = {}
        quarantine: dict[int, str] = {}
        for k, r in enumerate(records):
            m_idx.append(models.setdefault(r.model_id, len(models)))
            d_idx.append(datasets.setdefault(r.dataset_id, len(datasets)))
            score.append(r.score)
            costs[0].append(r.cost.train_seconds)
            costs[1].append(r.cost.inference_seconds)
            costs[2].append(r.cost.memory_bytes)
            prov.append(PROVENANCES.index(r.provenance))
            if r.request_id:
                request_ids[k] = r.request_id
            if r.quarantine:
                quarantine[k] = r.quarantine
        train, inference, memory = (np.array(c, np.float64) for c in costs)
        return cls(
            list(models), list(datasets), np.array(m_idx, np.int32), np.array(d_idx, np.int32), np.array(score),
            train, inference, memory, np.array(prov, np.int8), request_ids, quarantine,
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[InteractionColumns]) -> InteractionColumns:
        """The parts one after another; they must share their vocabularies."""
        if not parts:
            return cls.empty()
        first = parts[0]
        if any(p.model_ids != first.model_ids or p.dataset_ids != first.dataset_ids for p in parts[1:]):
            raise ValueError("interaction columns of different vocabularies cannot be concatenated")
        offsets = np.cumsum([0, *(len(p) for p in parts)])
        return cls.of_arrays(
            first.model_ids,
            first.dataset_ids,
            [np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS],
            {int(o) + k: v for o, p in zip(offsets, parts, strict=False) for k, v in p.request_ids.items()},
            {int(o) + k: v for o, p in zip(offsets, parts, strict=False) for k, v in p.quarantine.items()},
        )

    @classmethod
    def of_arrays(
        cls,
        model_ids: Sequence[str],
        dataset_ids: Sequence[str],
        arrays: Sequence[np.ndarray],
        request_ids: Mapping[int, str] | None = None,
        quarantine: Mapping[int, str] | None = None,
    ) -> InteractionColumns:
        """Columns from the arrays named by `_ARRAYS`, in that order."""
        model_index, dataset_index, score, train, inference, memory, provenance = arrays
        return cls(
            model_ids, dataset_ids, model_index, dataset_index, score, train, inference, memory, provenance,
            request_ids, quarantine,
        )  # fmt: skip

    # -- reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.model_index)

    @overload
    def __getitem__(self, index: int) -> InteractionRecord: ...

    @overload
    def __getitem__(self, index: slice) -> InteractionColumns: ...

    def __getitem__(self, index: int | slice) -> InteractionRecord | InteractionColumns:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        n = len(self)
        k = index + n if index < 0 else index
        if not 0 <= k < n:
            raise IndexError(f"interaction {index} of {n}")
        return self._record(
            k, int(self.model_index[k]), int(self.dataset_index[k]), float(self.score[k]),
            float(self.train_seconds[k]), float(self.inference_seconds[k]), float(self.memory_bytes[k]),
            int(self.provenance[k]),
        )  # fmt: skip

    def _record(self, k: int, m: int, d: int, s: float, t: float, i: float, mem: float, p: int) -> InteractionRecord:
        return InteractionRecord(
            self.model_ids[m], self.dataset_ids[d], s, Cost(t, i, mem), PROVENANCES[p],
            self.request_ids.get(k, ""), self.quarantine.get(k, ""),
        )  # fmt: skip

    def __iter__(self) -> Iterator[InteractionRecord]:
        columns = zip(*(getattr(self, name).tolist() for name in _ARRAYS), strict=True)
        for k, row in enumerate(columns):
            yield self._record(k, *row)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside, as a list

    def __repr__(self) -> str:
        return (
            f"InteractionColumns({len(self)} records, {len(self.model_ids)} models, {len(self.dataset_ids)} datasets)"
        )

    def take(self, positions: np.ndarray) -> InteractionColumns:
        """The records at `positions` (an index array, or a boolean mask), in that order."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        new = {int(p): k for k, p in enumerate(positions.tolist())} if self.request_ids or self.quarantine else {}
        return InteractionColumns.of_arrays(
            self.model_ids,
            self.dataset_ids,
            [getattr(self, name)[positions] for name in _ARRAYS],
            {new[k]: v for k, v in self.request_ids.items() if k in new},
            {new[k]: v for k, v in self.quarantine.items() if k in new},
        )

    def without_datasets(self, dataset_ids: Iterable[str]) -> InteractionColumns:
        """The records of every dataset but those named."""
        hidden = {d for d in dataset_ids}
        drop = np.array([d in hidden for d in self.dataset_ids], dtype=bool)
        return self.take(~drop[self.dataset_index] if len(drop) else np.zeros(0, np.int64))

    def over(self, model_ids: Sequence[str], dataset_ids: Sequence[str]) -> InteractionColumns:
        """The same records with indexes into the given vocabularies (ids they lack appended after them)."""
        if list(model_ids) == self.model_ids and list(dataset_ids) == self.dataset_ids:
            return self
        models, m_map = _vocabulary(model_ids, self.model_ids)
        datasets, d_map = _vocabulary(dataset_ids, self.dataset_ids)
        return InteractionColumns(
            models, datasets, m_map[self.model_index], d_map[self.dataset_index], self.score, self.train_seconds,
            self.inference_seconds, self.memory_bytes, self.provenance, self.request_ids, self.quarantine,
        )  # fmt: skip

    def positions(self, model_ids: Sequence[str], dataset_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each record's model and dataset as positions in the caller's own id lists; -1 where a list lacks the id."""
        models = {m: j for j, m in enumerate(model_ids)}
        datasets = {d: i for i, d in enumerate(dataset_ids)}
        m_map = np.array([models.get(m, -1) for m in self.model_ids], dtype=np.int64)
        d_map = np.array([datasets.get(d, -1) for d in self.dataset_ids], dtype=np.int64)
        return (
            m_map[self.model_index] if len(m_map) else np.full(len(self), -1),
            d_map[self.dataset_index] if len(d_map) else np.full(len(self), -1),
        )

    def rated_dataset_ids(self) -> list[str]:
        """The ids of the datasets that have a record, sorted."""
        return sorted(self.dataset_ids[i] for i in np.unique(self.dataset_index).tolist())


_ARRAYS = (
    "model_index", "dataset_index", "score", "train_seconds", "inference_seconds", "memory_bytes", "provenance",
)  # fmt: skip


def _vocabulary(first: Sequence[str], others: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """`first` then the ids of `others` it lacks; and each of `others` as its position there."""
    ids = list(first)
    index = {v: k for k, v in enumerate(ids)}
    mapped = []
    for v in others:
        if v not in index:
            index[v] = len(ids)
            ids.append(v)
        mapped.append(index[v])
    return ids, np.array(mapped, dtype=np.int32)


def interaction_columns_of(snapshot: Snapshot) -> InteractionColumns:
    """A snapshot's interactions as columns over its node order (no copy when it already holds them so)."""
    return InteractionColumns.from_records(
        snapshot.interactions, [m.model_id for m in snapshot.models], [d.dataset_id for d in snapshot.datasets]
    )


def pair_sums(
    records: InteractionColumns, model_ids: Sequence[str], dataset_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per (dataset, model) of the caller's id lists, the sum of the records' scores and their count
    (datasets × models; records of ids the lists lack are left out). Sums add in record order."""
    m_pos, d_pos = records.positions(model_ids, dataset_ids)
    known = (m_pos >= 0) & (d_pos >= 0)
    cells = len(dataset_ids) * len(model_ids)
    flat = d_pos[known] * len(model_ids) + m_pos[known]
    shape = (len(dataset_ids), len(model_ids))
    total = np.bincount(flat, weights=records.score[known], minlength=cells).reshape(shape)
    count = np.bincount(flat, minlength=cells).astype(np.float64).reshape(shape)
    return total, count


@dataclass(frozen=True)
class Snapshot:
    """One library's graph, consistent at one graph version.

    The stores and the knowledge client give `interactions` as `InteractionColumns` over the node order;
    a list of records (a test's, a filtered copy) is as good for every reader.
    """

    library: LibraryInfo
    models: list[ModelNode]
    datasets: list[DatasetNode]
    interactions: Sequence[InteractionRecord]
    similarities: list[SimilarityRecord]

    @property
    def graph_version(self) -> int:
        return self.library.graph_version


@dataclass(frozen=True)
class GraphDelta:
    """What a library's graph gained from `since_version` to `library.graph_version`, when all it gained were
    records and dataset nodes (a feedback, a probe): a store answers it instead of the whole graph, and
    `apply_delta` puts it on the snapshot at `since_version`. A retraction, a confirmation or a re-import is
    not a delta (the store gives the whole graph).

    `models` are the models whose learned records changed and `datasets` the datasets added or whose learned
    records changed, each as the whole graph has it now (counts, mean costs); `interactions` the learned
    records added, in the order the whole graph has them, over those two lists.
    """

    since_version: int
    library: LibraryInfo
    models: list[ModelNode]
    datasets: list[DatasetNode]
    interactions: InteractionColumns

    @property
    def graph_version(self) -> int:
        return self.library.graph_version


def apply_delta(snapshot: Snapshot, delta: GraphDelta) -> Snapshot:
    """The snapshot at the delta's version: the same as the store's whole graph then, node order included
    (models and datasets by id, as every store orders them; records in store order). ValueError when the
    delta does not start at this snapshot's version or of its import, or names a model the snapshot lacks."""
    if delta.since_version != snapshot.graph_version:
        raise ValueError(f"a change since version {delta.since_version} applied to version {snapshot.graph_version}")
    if delta.library.bundle_blob_id != snapshot.library.bundle_blob_id:
        raise ValueError("a change of another import of the library")
    models = list(snapshot.models)
    at = {m.model_id: j for j, m in enumerate(models)}
    for node in delta.models:
        if node.model_id not in at:
            raise ValueError(f"model {node.model_id!r} is not in the snapshot (a delta adds no models)")
        models[at[node.model_id]] = node
    by_id = {d.dataset_id: d for d in snapshot.datasets}
    added = [d for d in delta.datasets if d.dataset_id not in by_id]
    by_id.update((d.dataset_id, d) for d in delta.datasets)
    # A dataset added goes to its place by id; else the order stays (only nodes replaced).
    datasets = [by_id[d] for d in sorted(by_id)] if added else [by_id[d.dataset_id] for d in snapshot.datasets]
    model_ids, dataset_ids = [m.model_id for m in models], [d.dataset_id for d in datasets]
    old = interaction_columns_of(snapshot).over(model_ids, dataset_ids)
    new = delta.interactions.over(model_ids, dataset_ids)
    if len(old.model_ids) != len(model_ids) or len(new.model_ids) != len(model_ids):
        raise ValueError("the change's records name a model the graph lacks")
    if len(old.dataset_ids) != len(dataset_ids) or len(new.dataset_ids) != len(dataset_ids):
        raise ValueError("the change's records name a dataset the graph lacks")
    interactions = InteractionColumns.concat([old, new]) if len(new) else old
    return Snapshot(delta.library, models, datasets, interactions, snapshot.similarities)


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
    # What was added to the reading to put it on the library's record scale (`modsnet.data.probe_scale`): `value`
    # is the reading plus this, so a person can be shown what the probe read. 0 for a probe taken as read.
    to_record_scale: float = 0.0
    # Measured by the record's protocol (a tabular upload of at most `probing.SAMPLE_ROWS` rows, whole; texts and
    # images on the sample the library draws), so no sample shift and no sample noise: a full measurement.
    whole: bool = False


@dataclass(frozen=True)
class ProbeChoice:
    """The next models to probe on a query (the recommender's adaptive probing), and whether probing should
    end there (`stop`, with `model_ids` empty) and why."""

    model_ids: list[str]
    graph_version: int = 0
    stop: bool = False
    reason: str = ""
    expected_gain: float = float("nan")  # of the first model over the best measured, in the library's metric


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
