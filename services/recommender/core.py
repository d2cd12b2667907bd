"""Recommender logic with no grpc: estimators cached by graph version, constraints, top-k."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from modsnet.clients import KnowledgeClient
from modsnet.errors import FailedPrecondition, InvalidArgument
from modsnet.graph import ModelNode

from .estimators.base import Prediction
from .estimators.knn import KnnPopularityEstimator
from .metrics import CACHE, FIT_SECONDS, FITS, RECOMMEND_SECONDS

MAX_K = 1000


@dataclass(frozen=True)
class Constraints:
    max_train_seconds: float = 0.0
    max_inference_seconds: float = 0.0
    max_memory_bytes: float = 0.0
    exclude_models: frozenset[str] = frozenset()
    require_metadata: dict[str, str] = field(default_factory=dict)

    def allows(self, model: ModelNode) -> bool:
        cost = model.cost
        if self.max_train_seconds and cost.train_seconds > self.max_train_seconds:
            return False
        if self.max_inference_seconds and cost.inference_seconds > self.max_inference_seconds:
            return False
        if self.max_memory_bytes and cost.memory_bytes > self.max_memory_bytes:
            return False
        if model.model_id in self.exclude_models:
            return False
        return all(model.metadata.get(k) == v for k, v in self.require_metadata.items())


@dataclass(frozen=True)
class Ranked:
    rank: int
    prediction: Prediction
    model: ModelNode


@dataclass(frozen=True)
class Recommendation:
    models: list[Ranked]
    graph_version: int
    estimator: str
    path: str  # inductive | transductive
    probes_used: int
    excluded_by_constraints: int


@dataclass
class Fitted:
    estimator: KnnPopularityEstimator
    graph_version: int
    models: dict[str, ModelNode]
    trained_unix: float
    train_seconds: float


@dataclass(frozen=True)
class EstimatorInfo:
    library: str
    estimator: str
    graph_version: int
    datasets: int
    models: int
    interactions: int
    trained_unix: float
    train_seconds: float
    feature_names: list[str]


class RecommenderCore:
    def __init__(self, knowledge: KnowledgeClient, *, neighbours: int = 8):
        self.knowledge = knowledge
        self.neighbours = neighbours
        self._cache: dict[str, Fitted] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, library: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(library, threading.Lock())

    def fitted(self, library: str, *, force: bool = False) -> Fitted:
        """The estimator for the library's current graph version, fitted once per version."""
        if not library:
            raise InvalidArgument("library is required")
        version = self.knowledge.graph_version(library)
        cached = self._cache.get(library)
        if cached is not None and cached.graph_version == version and not force:
            CACHE.labels("hit").inc()
            return cached
        with self._lock(library):  # one fit per library at a time; others wait and reuse it
            cached = self._cache.get(library)
            if cached is not None and cached.graph_version >= version and not force:
                CACHE.labels("hit").inc()
                return cached
            CACHE.labels("miss").inc()
            start = time.perf_counter()
            snapshot = self.knowledge.snapshot(library)
            if not snapshot.interactions:
                raise FailedPrecondition(f"library {library!r} has no interactions to learn from")
            estimator = KnnPopularityEstimator(snapshot, neighbours=self.neighbours)
            seconds = time.perf_counter() - start
            fitted = Fitted(
                estimator,
                snapshot.graph_version,
                {m.model_id: m for m in snapshot.models},
                time.time(),
                seconds,
            )
            self._cache[library] = fitted
            FITS.labels(library, "forced" if force else ("new_version" if cached else "first_use")).inc()
            FIT_SECONDS.observe(seconds)
            return fitted

    def recommend(
        self,
        library: str,
        features: dict[str, float],
        *,
        k: int,
        constraints: Constraints,
        probe_budget: int = 0,
        dataset_id: str = "",
    ) -> Recommendation:
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, not {k}")
        if probe_budget < 0:
            raise InvalidArgument("probe_budget must be >= 0")
        fitted = self.fitted(library)
        start = time.perf_counter()
        estimator = fitted.estimator
        if not dataset_id and features and not estimator.shared_features(features):
            raise InvalidArgument(
                f"the query's features share nothing with library {library!r} "
                f"(it uses {', '.join(estimator.feature_names[:5]) or 'no features'}…): wrong library for this data?"
            )
        known = dataset_id if dataset_id in estimator.dataset_ids else None
        predictions = estimator.predict(features, known_dataset=known)
        allowed = [p for p in predictions if constraints.allows(fitted.models[p.model_id])]
        excluded = len(predictions) - len(allowed)
        # Best first; ties (equal predictions) broken by lower uncertainty, then id, so answers are stable.
        sign = estimator.sign
        allowed.sort(key=lambda p: (-sign * p.score, p.uncertainty, p.model_id))
        ranked = [Ranked(i + 1, p, fitted.models[p.model_id]) for i, p in enumerate(allowed[:k])]
        RECOMMEND_SECONDS.observe(time.perf_counter() - start)
        return Recommendation(
            models=ranked,
            graph_version=fitted.graph_version,
            estimator=estimator.name,
            path="transductive" if known else "inductive",
            probes_used=0,  # the probe-selector comes with the GNN estimator
            excluded_by_constraints=excluded,
        )

    def train(self, library: str) -> EstimatorInfo:
        return self._info(library, self.fitted(library, force=True))

    def info(self, library: str) -> EstimatorInfo:
        return self._info(library, self.fitted(library))

    @staticmethod
    def _info(library: str, fitted: Fitted) -> EstimatorInfo:
        fit = fitted.estimator.fit_info
        return EstimatorInfo(
            library,
            fitted.estimator.name,
            fitted.graph_version,
            fit.datasets,
            fit.models,
            fit.interactions,
            fitted.trained_unix,
            fitted.train_seconds,
            list(fit.feature_names),
        )

    def check(self) -> None:
        """The recommender can serve while the knowledge service answers."""
        self.knowledge.list_libraries_pb()

    def close(self) -> None:
        self.knowledge.close()
