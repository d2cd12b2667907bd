"""Top-k over every model of a library as vector operations: constraints as boolean masks, the order by
argpartition (no full sort, no per-model object but those shown).

The order is the one a full sort of every allowed model by (best score first, lower uncertainty, model id)
gives, ties included, so the fast path answers exactly what sorting every prediction did (the tests compare
the two). What a ranking is made of (`ModelTable`) is built once per served graph version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from modsnet.data.graph import Constraints, ModelNode


@dataclass
class ModelTable:
    """The models of a served estimator (its order) as the columns constraints test."""

    ids: list[str]
    index: dict[str, int]
    id_rank: np.ndarray  # each model's place in id order: the last tie-breaker, as an integer
    train_seconds: np.ndarray
    inference_seconds: np.ndarray
    memory_bytes: np.ndarray
    metadata: list[Mapping[str, str]]
    _columns: dict[str, np.ndarray] = field(default_factory=dict)
    _everything: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, model_ids: list[str], models: Mapping[str, ModelNode]) -> ModelTable:
        nodes = [models[m] for m in model_ids]
        id_rank = np.empty(len(model_ids), dtype=np.int64)
        id_rank[np.argsort(np.array(model_ids, dtype=object), kind="stable")] = np.arange(len(model_ids))
        return cls(
            ids=list(model_ids),
            index={m: j for j, m in enumerate(model_ids)},
            id_rank=id_rank,
            train_seconds=np.array([n.cost.train_seconds for n in nodes], dtype=float),
            inference_seconds=np.array([n.cost.inference_seconds for n in nodes], dtype=float),
            memory_bytes=np.array([n.cost.memory_bytes for n in nodes], dtype=float),
            metadata=[n.metadata for n in nodes],
        )

    @property
    def everything(self) -> np.ndarray:
        """Every model's position, ascending, read-only (made once per table)."""
        with self._lock:
            if self._everything is None:
                self._everything = np.arange(len(self.ids))
                self._everything.flags.writeable = False
            return self._everything

    def column(self, key: str) -> np.ndarray:
        """Metadata `key` of every model (None where a model has none), kept for the next query."""
        with self._lock:
            found = self._columns.get(key)
            if found is None:
                found = np.array([m.get(key) for m in self.metadata], dtype=object)
                self._columns[key] = found
            return found


def allowed_positions(table: ModelTable, constraints: Constraints) -> np.ndarray:
    """The positions of the models `constraints` allow, ascending (read-only). Without constraints, every model's:
    one array per graph version instead of a mask and its `flatnonzero` each query (8 MB at 1M models)."""
    if constraints == Constraints():
        return table.everything
    return np.flatnonzero(allowed_mask(table, constraints))


def allowed_mask(table: ModelTable, constraints: Constraints) -> np.ndarray:
    """True for each model `constraints.allows` (the same tests, a NaN cost passing a limit as there)."""
    mask = np.ones(len(table.ids), dtype=bool)
    for limit, values in (
        (constraints.max_train_seconds, table.train_seconds),
        (constraints.max_inference_seconds, table.inference_seconds),
        (constraints.max_memory_bytes, table.memory_bytes),
    ):
        if limit:
            mask &= ~(values > limit)
    for model_id in constraints.exclude_models:
        j = table.index.get(model_id)
        if j is not None:
            mask[j] = False
    for key, value in constraints.require_metadata.items():
        mask &= table.column(key) == value
    return mask


# `_within_count` over a strided sample first when the scores are this many per place asked for, or more.
SAMPLE_STRIDE = 64


def _within_count(primary: np.ndarray, count: int) -> np.ndarray:
    """The positions of `primary` at or below its `count`-th smallest value (ties at it all in), ascending.

    Exactly what `argpartition` over every value then `primary <= threshold` gives, at a fraction of its cost for
    a large library (1M float64: ~13 ms of argpartition against ~1 ms here): the `count`-th smallest of a strided
    sample is a bound at or above the true threshold (the sample's `count` smallest are values of `primary`), so
    the values at or below it (about `SAMPLE_STRIDE` x `count` of them) hold every one at or below the true
    threshold, which argpartition finds among those few. NaN (never at or below anything) is left out as before;
    a sample with fewer than `count` numbers goes the whole way."""
    if len(primary) >= SAMPLE_STRIDE * count * 4:
        sample = primary[::SAMPLE_STRIDE]
        bound = np.partition(sample, count - 1)[count - 1]
        if bound == bound:  # not NaN: at least `count` numbers of the sample are at or below it
            near = np.flatnonzero(primary <= bound)
            values = primary[near]
            threshold = values[np.argpartition(values, count - 1)[count - 1]]
            return near[values <= threshold]
    threshold = primary[np.argpartition(primary, count - 1)[count - 1]]
    return np.flatnonzero(primary <= threshold)  # ties at the threshold all compete for the last places


@dataclass(frozen=True)
class Order:
    """The ranking keys of one query: smaller first (best score, then lower uncertainty, then id)."""

    primary: np.ndarray  # -sign * score
    uncertainty: np.ndarray
    id_rank: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, uncertainty: np.ndarray, sign: float, table: ModelTable) -> Order:
        return cls(-sign * np.asarray(scores, dtype=float), np.asarray(uncertainty, dtype=float), table.id_rank)

    def first(self, allowed: np.ndarray, count: int) -> np.ndarray:
        """The first `count` of the `allowed` model positions in ranking order."""
        count = min(count, len(allowed))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        candidates = allowed
        if count < len(allowed):
            everything = len(allowed) == len(self.primary)  # every model allowed: no gathers (1M models: ms each)
            primary = self.primary if everything else self.primary[allowed]
            within = _within_count(primary, count)
            candidates = within if everything else allowed[within]
        order = np.lexsort((self.id_rank[candidates], self.uncertainty[candidates], self.primary[candidates]))
        return candidates[order[:count]]

    def places(self, allowed: np.ndarray, models: Iterable[int]) -> dict[int, int]:
        """0-based place in the ranking of `allowed` of each of `models` (which must be allowed)."""
        models = list(models)
        if not models:  # the common case, no probe measured: no gathers over every model
            return {}
        primary, uncertainty, rank = self.primary[allowed], self.uncertainty[allowed], self.id_rank[allowed]
        out = {}
        for j in models:
            p, u, r = self.primary[j], self.uncertainty[j], self.id_rank[j]
            ahead = (primary < p) | ((primary == p) & ((uncertainty < u) | ((uncertainty == u) & (rank < r))))
            out[j] = int(np.count_nonzero(ahead))
        return out
