"""Recommender logic with no grpc: one served estimator per library, kept current with its graph.

What serves a library (`estimator` setting): the GNN (`gnn/v1`, the default) or the kNN-over-features
estimator (`knn`, for ablation and as the light option), in either case blended with the kNN and popularity
by weights learned on the held-out datasets that calibrate its intervals (`estimators/blend.py`): every
answer, vectors and predictions alike, is the blend's. For the GNN, per library:

* first use: the trained weights come from the library's checkpoint in storage when one fits this import
  (same bundle, same models), else the GNN is trained now (seconds to a minute) and checkpointed. The
  request waits for that training only as long as its deadline allows (at most 3/4 of its time, and less
  `answer_reserve_seconds` to answer); past that, and at once for a library with more than
  `train_inline_limit` interactions, the kNN estimator answers (`origin` "interim") while the training goes
  on in the background and is swapped in when done, so no search fails or waits minutes because a GNN is being trained;
* a newer graph version of the same import (feedback arrived): the served weights are put on the new
  graph (`origin` "refreshed"): new records reach the precomputed embeddings in about a second, no refit,
  the kNN member keeps the choices of its last training (`KnnChoices`) and refits the rest, and the ONNX
  model is the older one with the new graph's constants, no new export. That refresh runs off
  the request path: the estimator of the older graph answers at once (its answer says its graph version)
  while one background job per library refreshes it; feedback arriving meanwhile costs at most one more
  run. Staleness is bounded: once a newer version has been seen for `max_staleness_seconds` (0: always),
  and for a query of a known dataset (its own records must be in its answer), the request waits for the
  current version instead. Once `retrain_after` interactions have arrived since the weights were trained,
  a background thread retrains on the current graph and swaps the result in when it is ready (searches
  keep being answered by the refreshed estimator meanwhile);
* a new import (another bundle, other models): trained anew;
* every served GNN scores queries through its ONNX export under ONNX Runtime (CUDA when asked for and
  present, CPU otherwise);
* every GNN training (a first one, a retraining, `modsnet train`) runs in a worker process
  (`training.py`): a bounded pool of `training_processes` (0: half the cores, at least one; -1: in this
  process, on the calling thread, as before), at most one training per library; the worker sends back the
  weights, blend and ONNX export, and this process puts them on the snapshot without a fit;
* a library of more than `gnn_max_cells` (datasets x models) cells (`GNN_MAX_CELLS`) gets the sparse GNN
  (`estimators/gnn/sparse.py`: trained on sampled neighbourhoods, the records as sparse arrays, the neighbour
  prior an input of its ONNX export), or with `sparse_gnn` off the kNN estimator: the dense GNN's prepared
  graph, training prior and ONNX constants are (datasets x models) arrays, ~10 of them. Everything above
  (checkpoints, refreshes, retraining, the worker, the ONNX export) is the same for both GNNs.

The cache is keyed by library and holds one served estimator at one graph version: a search gets an answer
from an older graph than the one it saw only as above (same import, within the bound, not a known dataset).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.data.graph import (
    Constraints,
    GraphDelta,
    LibraryInfo,
    ModelNode,
    Objective,
    ProbeChoice,
    Recommendation,
    Removal,
    Snapshot,
    apply_delta,
    interaction_columns_of,
)
from modsnet.data.probe_scale import FAMILY_COLUMN, ProbeScale, on_record_scale
from modsnet.data.profiles import combine, profile_named
from modsnet.models.probing import can_probe
from modsnet.runtime import deadline
from modsnet.runtime.errors import FailedPrecondition, InvalidArgument, ModsnetError
from modsnet.runtime.stubs import KnowledgeClient, StorageClient
from modsnet.runtime.workers import WorkerFailed, WorkerPool, available_cores

from . import objectives, policy
from .estimators.base import Prediction, ProbeRecord, Scored
from .estimators.blend import BlendedEstimator, BlendWeights, fit_blend
from .estimators.knn import KnnChoices, KnnPopularityEstimator
from .metrics import CACHE, FIT_SECONDS, FITS, RECOMMEND_SECONDS, SNAPSHOTS
from .probes import MEASURED
from .ranking import ModelTable, Order, allowed_positions
from .recommendation import answer_positions, recommend_one
from .training import (
    RefreshedGnn,
    TrainedGnn,
    as_numpy,
    fit_gnn,
    on_graph,
    refresh_in_worker,
    train_in_worker,
    warm_refresh_worker,
)


def _learnable(snapshot: Snapshot) -> Snapshot:
    """The snapshot without records of non-finite score: knowledge refuses them, but one that got in before
    must not turn every prediction of the library into NaN."""
    records = interaction_columns_of(snapshot)
    finite = np.isfinite(records.score)
    if finite.all():
        return snapshot
    log.warning("library %s: %d records of non-finite score left out", snapshot.library.name, int((~finite).sum()))
    return dataclasses.replace(snapshot, interactions=records.take(finite))


if TYPE_CHECKING:  # torch and torch-geometric take seconds to import: only once a GNN is needed
    from .estimators.gnn import GnnConfig

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_PROBES = 50
ESTIMATORS = ("gnn", "knn")
ANSWER_RESERVE_SECONDS = 2.0  # of a request's time, kept to answer after waiting for a first training
MAX_STALENESS_SECONDS = 10.0  # how long an estimator behind its graph may answer while it is refreshed
FIRST_TRAINING_SHARE = 0.75  # of a request's time, the most it waits for a first training
# Background upkeep is paced so that steady feedback cannot take the whole process (its GIL, its cores) from
# the calls it serves: a refresh owed again waits as long as the last one took (at most half the time goes to
# refreshing; the wait is cut short when a request waits for the refresh), and a retraining starts no sooner
# than RETRAIN_PAUSE_FACTOR times the last one's length after it (at most a quarter of the time).
REFRESH_PAUSE_FACTOR = 1.0
RETRAIN_PAUSE_FACTOR = 3.0
# Above this many (datasets x models) cells the dense GNN gives way to the sparse one (or with `sparse_gnn` off,
# to the kNN). The dense GNN holds ~10 arrays of that shape (scores, z, masks, the prior's inputs, the
# transductive answers) plus the ONNX constants: ~2 GB at 25M cells, ~8 GB at 100k models x 1,000 datasets. The
# sparse GNN samples neighbourhoods with a sampler of its own (torch-geometric's NeighborLoader needs pyg-lib or
# torch-sparse, which the pinned environment lacks): memory by records, not cells.
GNN_MAX_CELLS = 25_000_000
SPARSE_GNN = True  # past GNN_MAX_CELLS: the sparse GNN (True) or the kNN (False)
IN_PROCESS = -1  # `training_processes`: train on the calling thread of this process (no worker)
# Idle workers are stopped after this long: trainings are minutes apart at the least (RETRAIN_PAUSE_FACTOR), so a
# worker kept for the next costs memory for a start of seconds; refreshes follow every burst of feedback.
TRAINING_WORKER_IDLE_SECONDS = 600.0
REFRESH_WORKER_IDLE_SECONDS = 1800.0


def training_pool(processes: int) -> WorkerPool:
    """The pool of GNN training workers of this size (0: half the cores, at least one), one per process, shared
    by its recommender cores: a worker keeps torch imported from one training to the next (seconds each at a
    worker's start), and a test session or a restarted server does not start new ones. Each core stops its
    own trainings (their `cancel`); a worker left idle for TRAINING_WORKER_IDLE_SECONDS is stopped (it holds
    torch and its last training's memory: up to gigabytes on a large library)."""
    size = processes if processes > 0 else max(1, available_cores() // 2)
    with _POOLS_GUARD:
        pool = _POOLS.get(size)
        if pool is None or pool.closed:
            pool = _POOLS[size] = WorkerPool("gnn-training", size=size, idle_seconds=TRAINING_WORKER_IDLE_SECONDS)
        return pool


_POOLS: dict[int, WorkerPool] = {}
_POOLS_GUARD = threading.Lock()


def refresh_pool() -> WorkerPool:
    """The one worker process per process that puts served weights on newer graphs (`refresh_in_worker`): apart
    from the trainings' pool, so that a retraining (a minute or more) never holds a refresh up past the staleness
    bound. One: a library has one refresh job at a time, and refreshes are paced (REFRESH_PAUSE_FACTOR)."""
    global _REFRESH_POOL
    with _POOLS_GUARD:
        if _REFRESH_POOL is None or _REFRESH_POOL.closed:
            _REFRESH_POOL = WorkerPool("gnn-refresh", size=1, idle_seconds=REFRESH_WORKER_IDLE_SECONDS)
        return _REFRESH_POOL


_REFRESH_POOL: WorkerPool | None = None


@dataclass(frozen=True)
class Ranked:
    rank: int
    prediction: Prediction
    model: ModelNode
    on_front: bool = False  # objective pareto: on the front of score against its cost
    objective_value: float = 0.0  # objective score-per-cost: the value ranked by


@dataclass(frozen=True)
class Answer:
    """The top-k for one query and the model to take among them."""

    models: list[Ranked]
    graph_version: int
    estimator: str
    path: str  # inductive | transductive
    probes_used: int
    excluded_by_constraints: int
    recommendation: Recommendation | None  # None when the constraints left no model
    removals: list[Removal] = dataclasses.field(default_factory=list)  # what each limit kept out (objectives.py)
    objective: Objective = dataclasses.field(default_factory=Objective)
    profile: str = ""
    constraints: Constraints | None = None  # the limits in effect: the request's and the profile's


@dataclass
class Served:
    """A library's estimator at one graph version, and where its weights came from."""

    estimator: BlendedEstimator  # the GNN or kNN with the kNN and popularity, weighted (estimators/blend.py)
    library: LibraryInfo
    models: dict[str, ModelNode]
    origin: str  # trained | checkpoint | refreshed | interim
    trained_version: int
    trained_interactions: int
    trained_unix: float
    train_seconds: float
    backend: str

    @property
    def graph_version(self) -> int:
        return self.library.graph_version

    @functools.cached_property
    def table(self) -> ModelTable:
        """The models as arrays for ranking, built at this graph version's first query."""
        if len(self.estimator.model_ids) >= LARGE_LIBRARY:
            keep_freed_memory()  # its queries' large vectors on kept memory, not fresh pages (see the function)
        return ModelTable.of(list(self.estimator.model_ids), self.models)


@dataclass
class TrainingProgress:
    """Where a GNN training of a library stands: fit `fit` of `fits` (calibration's held-out fits, then the
    served one), step `step` of `steps` in it, or a `phase` after the fits (export, checkpoint)."""

    library: str
    started_unix: float
    fits: int
    fit: int = 0
    step: int = 0
    steps: int = 0
    phase: str = "preparing the graph"

    def advance(self, step: int, steps: int) -> None:
        self.step, self.steps, self.phase = step, steps, "fitting"

    def update(self, fit: int, fits: int, step: int, steps: int, phase: str) -> None:
        """As `training.Report`: a training's report, from this process or a worker's message."""
        if phase == "fitting":
            self.fit, self.fits = fit, fits
            self.advance(step, steps)
        else:
            self.phase = phase

    def received(self, message: Any) -> None:
        """A worker's progress message: (fit, fits, step, steps, phase)."""
        self.update(*message)

    @property
    def fraction(self) -> float:
        """Share of the fitting done (the export and checkpoint after it take seconds)."""
        if self.fits <= 0:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (max(self.fit - 1, 0) + within) / self.fits)

    def describe(self) -> str:
        elapsed = time.time() - self.started_unix
        where = f"fit {self.fit}/{self.fits}, step {self.step}/{self.steps}" if self.phase == "fitting" else self.phase
        return f"training the GNN of {self.library}: {self.fraction:.0%} ({where}), {elapsed:.0f} s"


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
    origin: str
    trained_version: int
    backend: str


def onnx_providers(device: str) -> list[str] | None:
    """ONNX Runtime providers for the `device` setting: auto = CUDA when present, else CPU."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise FailedPrecondition(f"device cuda: ONNX Runtime here has no CUDA provider (it has {available})")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


# A library of this many models or more has the process keep freed memory for its queries (`keep_freed_memory`):
# below it a query's vectors are small, and a process serving only small libraries gives freed memory back.
LARGE_LIBRARY = 100_000
# glibc's malloc: arrays under this many bytes come from the heap, and this much freed heap is kept, not given back.
MALLOC_MMAP_THRESHOLD = 64 * 2**20
MALLOC_TRIM_THRESHOLD = 512 * 2**20
_malloc_tuned: list[bool] = []


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory of freed large arrays for the next query (once per process; False where
    the C library is not glibc).

    A Recommend at 1M models makes a dozen new 8 MB vectors (each member's scores and σ, the blend's sums) and
    frees them together at its end. By default glibc serves each from fresh pages (mmap, or a heap it trimmed
    back when they were freed), so every query paid ~2,000 page faults per vector: measured, 5,200 faults and
    2.5x the CPU of the same arithmetic on kept memory (docs/benchmarks-scale.md, run 12). The cost: up to
    `MALLOC_TRIM_THRESHOLD` of freed heap stays with the process, beside the GiBs a 1M-model estimator holds."""
    if _malloc_tuned:
        return _malloc_tuned[0]
    import ctypes
    import ctypes.util

    done = False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own allocator's defaults
        mallopt = None
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
        done = bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
            mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)
        )
    _malloc_tuned.append(done)
    return done


class RecommenderCore:
    def __init__(
        self,
        knowledge: KnowledgeClient,
        storage: StorageClient | None = None,
        *,
        estimator: str = "gnn",
        neighbours: int = 8,
        retrain_after: int = 20,
        train_inline_limit: int = 250_000,
        device: str = "auto",
        gnn_config: GnnConfig | None = None,
        answer_reserve_seconds: float = ANSWER_RESERVE_SECONDS,
        max_staleness_seconds: float = MAX_STALENESS_SECONDS,
        gnn_max_cells: int = GNN_MAX_CELLS,
        training_processes: int = 0,
        sparse_gnn: bool = SPARSE_GNN,
    ):
        if estimator not in ESTIMATORS:
            raise InvalidArgument(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
        if training_processes < IN_PROCESS:
            raise InvalidArgument(f"training_processes must be >= {IN_PROCESS}, not {training_processes}")
        self.knowledge = knowledge
        self.storage = storage
        self.estimator_kind = estimator
        self.neighbours = neighbours
        self.retrain_after = retrain_after
        self.train_inline_limit = train_inline_limit
        self.answer_reserve_seconds = answer_reserve_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self.gnn_max_cells = gnn_max_cells
        self.sparse_gnn = sparse_gnn
        self.providers = onnx_providers(device) if estimator == "gnn" else None
        self._gnn_config = gnn_config
        # Started at the first training (the pool starts no worker before its first task).
        self._pool = (
            training_pool(training_processes) if estimator == "gnn" and training_processes != IN_PROCESS else None
        )
        self._refresh_pool = refresh_pool() if self._pool is not None else None
        self._refresh_warmed = False  # the refresh worker started (torch imported) once a GNN serves here
        self._training: dict[str, threading.Lock] = {}  # held while the library's GNN trains: one at a time
        self._cache: dict[str, Served] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._retraining: dict[str, threading.Thread] = {}
        self._progress: dict[str, TrainingProgress] = {}  # the GNN trainings under way, by library
        self._refresh_jobs: dict[str, threading.Thread] = {}  # one background refresh per library at most
        self._refresh_again: set[str] = set()  # libraries whose graph moved during their refresh: once more
        self._hurry: dict[str, threading.Event] = {}  # set: a request waits for the library's refresh job
        self._refreshed = threading.Condition()  # notified after each run of a refresh job and when one ends
        self._retrained: dict[str, tuple[float, float]] = {}  # library -> (when the last retraining ended, its seconds)
        self._seen: dict[str, dict[int, float]] = {}  # newer graph versions than the served one, first seen when
        self._graphs: dict[str, Snapshot] = {}  # the whole graph last read of each library: deltas go on it
        self._guard = threading.Lock()
        self._closed = threading.Event()

    def _lock(self, library: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(library, threading.Lock())

    @property
    def gnn_config(self) -> GnnConfig:
        if self._gnn_config is None:
            from .estimators.gnn import GnnConfig

            self._gnn_config = GnnConfig()
        return self._gnn_config

    # -- the served estimator -------------------------------------------------------------------------

    def fitted(self, library: str, *, force: bool = False, fresh: bool = False, known_version: int = 0) -> Served:
        """The estimator for the library's current graph version (trained, loaded or refreshed once per version).

        A GNN of the same import whose graph fell behind for less than `max_staleness_seconds` answers at
        once while one background job refreshes it (`_refresh_soon`); `fresh` (a query of a known dataset,
        whose own records must be in its answer) and `force` wait for the current version instead.

        `known_version` is the caller's (the query service read it from knowledge during its search, after any
        write it saw completed): an estimator at least that new answers without asking knowledge, so a caller
        still sees its own writes, and knowledge is asked only when the caller knows of a newer graph (or of none).
        """
        if not library:
            raise InvalidArgument("library is required")
        if known_version < 0:
            raise InvalidArgument(f"graph_version must be >= 0 (0: unknown), not {known_version}")
        cached = self._cache.get(library)
        if not force and known_version > 0 and self._answers(library, cached, known_version):
            CACHE.labels("hit").inc()
            return cached  # type: ignore[return-value]
        # A re-import bumps the version too: the version alone decides what is current, the bundle whether
        # the cached estimator is still of this import.
        version, bundle_blob_id = self.knowledge.graph_head(library)
        cached = self._cache.get(library)
        if not force and self._answers(library, cached, version):
            CACHE.labels("hit").inc()
            return cached  # type: ignore[return-value]
        if not force and not fresh and self._may_serve_stale(library, cached, version, bundle_blob_id):
            CACHE.labels("stale").inc()
            self._refresh_soon(library)
            return cached  # type: ignore[return-value]
        if not force:
            self._wait_for_refresh_job(library, version)  # one under way may bring it: no second refresh
        with self._lock(library):  # one fit per library at a time; others wait and reuse it
            cached = self._cache.get(library)
            if not force and self._answers(library, cached, version):
                CACHE.labels("hit").inc()
                return cached  # type: ignore[return-value]
            CACHE.labels("miss").inc()
            snapshot = _learnable(self._snapshot(library))
            if not snapshot.interactions:
                raise FailedPrecondition(f"library {library!r} has no interactions to learn from")
            served = self._serve(snapshot, cached, force=force)
            served.table  # noqa: B018  # the ranking's arrays: built with the fit, not by the first query
            self._cache[library] = served
            self._caught_up(library, served.graph_version)
            if _is_gnn(served.estimator):
                self._warm_refresh_worker()
            reason = "forced" if force else ("new_version" if cached else "first_use")
            FITS.labels(library, f"{reason}:{served.origin}").inc()
            self._retrain_if_due(library, served, len(snapshot.interactions))
            return served

    def _answers(self, library: str, cached: Served | None, version: int) -> bool:
        """Whether `cached` answers at graph `version` as it is: at that version or past it (a refresh landed
        since), and not a kNN stand-in whose training has ended without replacing it (its worker died): the
        next search trains again."""
        if cached is None or cached.graph_version < version:
            return False
        if cached.origin != "interim":
            return True
        with self._guard:
            training = self._retraining.get(library)
        return training is not None and training.is_alive()

    def _retrain_if_due(self, library: str, served: Served, interactions: int) -> None:
        if served.origin == "refreshed" and interactions - served.trained_interactions >= self.retrain_after:
            self._retrain_in_background(library)

    # -- refreshing off the request path ------------------------------------------------------------------

    def _may_serve_stale(self, library: str, cached: Served | None, version: int, bundle_blob_id: str) -> bool:
        """Whether `cached` may answer although the graph is at `version`: a GNN of the same import (a
        refresh only puts its weights on the newer graph), superseded less than `max_staleness_seconds` ago."""
        if self.max_staleness_seconds <= 0 or cached is None or not _is_gnn(cached.estimator):
            return False
        if cached.origin == "interim" or cached.library.bundle_blob_id != bundle_blob_id:
            return False
        with self._guard:
            seen = self._seen.setdefault(library, {})
            seen.setdefault(version, time.monotonic())
            superseded = min(seen[v] for v in seen if v > cached.graph_version)
        return time.monotonic() - superseded < self.max_staleness_seconds

    def _caught_up(self, library: str, version: int) -> None:
        """The cache serves `version` now: forget the versions it covers (newer ones keep their clock)."""
        with self._guard:
            seen = self._seen.get(library, {})
            for v in [v for v in seen if v <= version]:
                del seen[v]

    def staleness(self) -> dict[str, float]:
        """Seconds since each library's served estimator was first seen superseded by a newer graph version
        (a library whose estimator is current is absent)."""
        now = time.monotonic()
        with self._guard:
            return {library: now - min(seen.values()) for library, seen in self._seen.items() if seen}

    def _refresh_soon(self, library: str) -> None:
        """Start the library's refresh job, or tell the one running to go once more when it ends: feedback
        during a refresh costs at most one more, however much of it arrives."""
        with self._guard:
            if self._closed.is_set():
                return
            if library in self._refresh_jobs:
                self._refresh_again.add(library)
                return
            thread = threading.Thread(target=self._refresh_job, args=(library,), name=f"refresh-{library}", daemon=True)
            self._refresh_jobs[library] = thread
        thread.start()

    def _refresh_job(self, library: str) -> None:
        with self._guard:
            hurry = self._hurry.setdefault(library, threading.Event())
        while True:
            started = time.monotonic()
            try:
                self._refresh_once(library)
            except Exception:  # no caller to tell: log; the staleness bound sends the next searches inline
                if not self._closed.is_set():
                    log.exception("background refresh of %s failed", library)
            took = time.monotonic() - started
            with self._guard:  # the check and the leaving are one step: a request never finds a job that ignores it
                leaving = self._closed.is_set() or library not in self._refresh_again
                if leaving:
                    del self._refresh_jobs[library]
                else:
                    self._refresh_again.discard(library)
            with self._refreshed:
                self._refreshed.notify_all()
            if leaving:
                return
            # Paced (see REFRESH_PAUSE_FACTOR), within a quarter of the staleness bound; feedback arriving in the
            # pause is in the next run.
            hurry.wait(min(took * REFRESH_PAUSE_FACTOR, self.max_staleness_seconds / 4))
            hurry.clear()
            if self._closed.is_set():
                with self._guard:
                    del self._refresh_jobs[library]
                with self._refreshed:
                    self._refreshed.notify_all()
                return

    def _refresh_once(self, library: str) -> None:
        """The served weights on the current graph, built outside the library's lock (searches keep being
        answered meanwhile) and swapped in unless the cache moved past them."""
        cached = self._cache.get(library)
        if cached is None:
            return
        # The change since the graph held (nothing, when a search that could not wait refreshed it already).
        snapshot = _learnable(self._snapshot(library))
        if cached.graph_version >= snapshot.graph_version or not snapshot.interactions:
            return
        refreshed = self._refresh(snapshot, cached)
        if refreshed is None:  # the weights no longer fit: as if superseded a whole bound ago, the next search fits
            with self._guard:
                seen = self._seen.setdefault(library, {})
                seen[snapshot.graph_version] = time.monotonic() - self.max_staleness_seconds
            return
        with self._lock(library):
            now = self._cache.get(library)
            if now is not None and now.graph_version >= refreshed.graph_version:
                return
            if now is not None and now.library.bundle_blob_id != refreshed.library.bundle_blob_id:
                return
            self._cache[library] = refreshed
            self._caught_up(library, refreshed.graph_version)
            FITS.labels(library, f"background:{refreshed.origin}").inc()
        self._retrain_if_due(library, refreshed, len(snapshot.interactions))

    def _snapshot(self, library: str) -> Snapshot:
        """The library's current graph: the change since the graph last read here put on it when knowledge can
        give one (a feedback's few records and nodes, not the whole graph again), else the whole graph (a
        first read, a re-import, a retraction or a confirmation since, a change that does not fit)."""
        with self._guard:
            held = self._graphs.get(library)
        graph: Snapshot | GraphDelta
        if held is None:
            graph = self.knowledge.snapshot(library)
        else:
            graph = self.knowledge.snapshot_since(library, held.graph_version)
        if isinstance(graph, GraphDelta):
            assert held is not None
            try:
                snapshot = apply_delta(held, graph)
                SNAPSHOTS.labels("delta").inc()
            except ValueError as error:  # never expected: a store's bug must not stop serving
                log.warning("library %s: the change since version %d does not fit (%s): reading the whole graph",
                            library, held.graph_version, error)  # fmt: skip
                snapshot = self.knowledge.snapshot(library)
                SNAPSHOTS.labels("whole").inc()
        else:
            snapshot = graph
            SNAPSHOTS.labels("whole").inc()
        with self._guard:  # two readers at once (a search, the refresh job): the newer stays
            now = self._graphs.get(library)
            if now is None or now.graph_version <= snapshot.graph_version:
                self._graphs[library] = snapshot
        return snapshot

    def _wait_for_refresh_job(self, library: str, version: int) -> None:
        """Wait (within the request's time) until the library's refresh job has brought `version` or ended; a
        job pausing between two runs runs at once. Not for the job's end: under steady feedback it may run on."""
        with self._guard:
            job = self._refresh_jobs.get(library)
            hurry = self._hurry.get(library)
        if job is None or job is threading.current_thread():
            return
        if hurry is not None:
            hurry.set()
        left = deadline.remaining()

        def done() -> bool:
            cached = self._cache.get(library)
            landed = cached is not None and cached.graph_version >= version
            return landed or self._refresh_jobs.get(library) is not job

        with self._refreshed:
            self._refreshed.wait_for(done, None if left is None else max(0.0, left - self.answer_reserve_seconds))

    def wait_for_refresh(self, library: str, timeout: float | None = None) -> bool:
        """Block until the library's background refresh (and the one more it may owe) ends; False if still running."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._guard:
                job = self._refresh_jobs.get(library)
            if job is None:
                return True
            job.join(None if end is None else max(0.0, end - time.monotonic()))
            if job.is_alive():
                return False

    def _serve(self, snapshot: Snapshot, cached: Served | None, *, force: bool) -> Served:
        if self.estimator_kind == "knn":
            return self._knn(snapshot, "trained")
        if self._over_cells(snapshot) and not self.sparse_gnn:
            log.warning("library %s: %d datasets x %d models is over the GNN's %d cells (dense arrays): the kNN "
                        "estimator serves it", snapshot.library.name, len(snapshot.datasets), len(snapshot.models),
                        self.gnn_max_cells)  # fmt: skip
            return self._knn(snapshot, "trained")
        if not force:
            refreshed = self._refresh(snapshot, cached)
            if refreshed is not None:
                return refreshed
            wait: float | None
            if len(snapshot.interactions) > self.train_inline_limit:
                wait = 0.0  # a large library: no search waits minutes for its first GNN
            else:
                # At most 3/4 of the call's time: after giving up, the interim kNN still has to be fitted (with
                # its calibration and blend) within this call; on a loaded machine a 2 s reserve alone let a
                # first search's SelectProbes run past its deadline.
                left = deadline.remaining()
                wait = None if left is None else min(left - self.answer_reserve_seconds, left * FIRST_TRAINING_SHARE)
            try:
                trained = self._train_in_background(snapshot, wait=wait)
            except WorkerFailed as error:  # logged as it failed; the kNN stands in, the next search trains again
                log.error("training %s failed: %s; the kNN estimator answers meanwhile", snapshot.library.name, error)
                trained = None
            return trained if trained is not None else self._knn(snapshot, "interim")
        return self._train(snapshot)

    def _over_cells(self, snapshot: Snapshot) -> bool:
        """Whether the library is past the dense GNN's (datasets x models) cells: the sparse GNN's then."""
        return len(snapshot.datasets) * len(snapshot.models) > self.gnn_max_cells

    def _knn(self, snapshot: Snapshot, origin: str) -> Served:
        start = time.perf_counter()
        neighbours = self.neighbours
        knn = fit_blend(snapshot, lambda g: KnnPopularityEstimator(g, neighbours=neighbours), neighbours=neighbours)
        seconds = time.perf_counter() - start
        FIT_SECONDS.observe(seconds)
        return Served(
            knn, snapshot.library, {m.model_id: m for m in snapshot.models}, origin, snapshot.graph_version,
            len(snapshot.interactions), time.time(), seconds, "numpy",
        )  # fmt: skip

    def _refresh(self, snapshot: Snapshot, cached: Served | None) -> Served | None:
        """Trained weights of this import (served, else from the checkpoint) on this graph; None if none fit."""
        from . import checkpoints
        from .estimators.gnn import GnnEstimator

        digest = checkpoints.models_digest([m.model_id for m in snapshot.models])
        # (weights, origin, when they were trained: version, interactions, unix time, seconds; blend weights; the
        # kNN's choices, kept from the served kNN: `KnnChoices`)
        source: tuple[Any, str, int, int, float, float, BlendWeights, KnnChoices | None] | None = None
        if (
            cached is not None
            and _is_gnn(cached.estimator)
            and cached.library.bundle_blob_id == snapshot.library.bundle_blob_id
            and checkpoints.models_digest(cached.estimator.model_ids) == digest
        ):
            source = (cached.estimator.state(), "refreshed", cached.trained_version, cached.trained_interactions,
                      cached.trained_unix, cached.train_seconds, cached.estimator.blend,
                      cached.estimator.knn.choices)  # fmt: skip
        elif self.storage is not None:
            saved = checkpoints.load(self.storage, snapshot.library.name, GnnEstimator.name)
            if (
                saved is not None
                and saved.bundle_blob_id == snapshot.library.bundle_blob_id
                and saved.models_digest == digest
                and saved.config == asdict(self.gnn_config)
            ):
                origin = "checkpoint" if saved.graph_version == snapshot.graph_version else "refreshed"
                # The kNN keeps the training's choices, as in the replica that trained (a checkpoint without
                # them: it chooses on this graph).
                source = (saved.weights, origin, saved.graph_version, saved.interactions, saved.trained_unix,
                          saved.train_seconds, BlendWeights.from_dict(saved.blend), saved.choices)  # fmt: skip
        if source is None:
            return None
        weights, origin, version, interactions, trained_unix, train_seconds, blend, knn_choices = source
        # The served weights on a newer graph: its ONNX model with the new constants, no new export.
        like = (
            cached.estimator.primary
            if origin == "refreshed" and cached is not None and _is_gnn(cached.estimator)
            else None
        )
        refreshed: RefreshedGnn | None = None
        if like is not None and self._refresh_pool is not None:
            # Off this process's GIL (training.py says why); a first use from the checkpoint stays here: the
            # worker's start (importing torch) would come on top of the first search.
            try:
                like_model = getattr(like, "onnx_model", None)
                refreshed = self._refresh_in_worker(snapshot, weights, blend, like_model, knn_choices)
            except WorkerFailed as error:  # logged as it failed; a search waiting for it must not fail with it
                log.error("refreshing %s in its worker failed (%s): refreshed in this process", snapshot.library.name,
                          error)  # fmt: skip
        if refreshed is not None:
            if refreshed.estimator is None:
                log.warning("trained weights of %s do not fit its graph (%s): training anew", snapshot.library.name,
                            refreshed.refused)  # fmt: skip
                return None
            estimator = refreshed.load()
            backend = self._to_onnx(estimator, like, model=refreshed.onnx_model)
        else:
            try:
                estimator = on_graph(
                    snapshot, self.gnn_config, weights, blend, neighbours=self.neighbours,
                    sparse=self._over_cells(snapshot), knn_choices=knn_choices,
                )  # fmt: skip
            except ValueError as error:
                log.warning("trained weights of %s do not fit its graph (%s): training anew", snapshot.library.name,
                            error)  # fmt: skip
                return None
            backend = self._to_onnx(estimator, like)
        models = {m.model_id: m for m in snapshot.models}
        return Served(
            estimator, snapshot.library, models, origin, version, interactions, trained_unix, train_seconds, backend
        )

    def _refresh_in_worker(
        self,
        snapshot: Snapshot,
        weights: Any,
        blend: BlendWeights,
        like_model: bytes | None,
        knn_choices: KnnChoices | None,
    ) -> RefreshedGnn:
        assert self._refresh_pool is not None
        refreshed: RefreshedGnn = self._refresh_pool.run(
            refresh_in_worker,
            snapshot,
            self.gnn_config,
            as_numpy(weights),
            blend.to_dict(),
            self.neighbours,
            like_model,
            self._over_cells(snapshot),
            knn_choices,
            what=f"refreshing the GNN of {snapshot.library.name}",
            cancel=self._closed,
        )
        return refreshed

    def _warm_refresh_worker(self) -> None:
        """Start the refresh worker in the background once a GNN serves here, so that the first refresh after
        feedback does not also pay its start (a fork, importing torch: seconds on a loaded machine)."""
        if self._refresh_pool is None or self._refresh_warmed:
            return
        self._refresh_warmed = True
        pool, closed = self._refresh_pool, self._closed

        def warm() -> None:
            try:
                pool.run(warm_refresh_worker, what="starting the GNN refresh worker", cancel=closed)
            except ModsnetError as error:  # the first refresh starts it instead
                log.info("the GNN refresh worker did not start ahead: %s", error)

        threading.Thread(target=warm, name="refresh-worker-start", daemon=True).start()

    def _train(self, snapshot: Snapshot) -> Served:
        library = snapshot.library.name
        progress = TrainingProgress(library, time.time(), fits=0)  # the training counts them (`fit_gnn`)
        with self._guard:
            self._progress[library] = progress
            one_at_a_time = self._training.setdefault(library, threading.Lock())
        try:
            with one_at_a_time:  # a `modsnet train` during a retraining of the library waits for it
                progress.phase = "preparing the graph"
                # The held-out fits that calibrate the intervals (one; three for a small or a large library) also
                # learn the blend's weights: estimators/blend.py.
                if self._pool is None:
                    start = time.perf_counter()
                    estimator = fit_gnn(
                        snapshot,
                        self.gnn_config,
                        neighbours=self.neighbours,
                        cancel=self._closed,
                        report=progress.update,
                        sparse=self._over_cells(snapshot),
                    )
                    seconds, model = time.perf_counter() - start, None
                else:
                    trained = self._train_in_worker(snapshot, progress)
                    progress.phase = "putting the trained weights on the graph"
                    estimator = trained.estimator(snapshot, self.gnn_config, neighbours=self.neighbours)
                    seconds, model = trained.seconds, trained.onnx_model
            FIT_SECONDS.observe(seconds)
            progress.phase = "exporting to ONNX" if model is None else "loading the ONNX model"
            backend = self._to_onnx(estimator, model=model)
            progress.phase = "storing the checkpoint"
            served = self._checkpointed(snapshot, estimator, seconds, backend)
        finally:
            with self._guard:
                if self._progress.get(library) is progress:
                    del self._progress[library]
        return served

    def _train_in_worker(self, snapshot: Snapshot, progress: TrainingProgress) -> TrainedGnn:
        """`training.train_in_worker` in a worker of the pool: its progress into `progress`, stopped (the worker
        killed: `Cancelled`) when the core closes. A worker that dies raises `WorkerFailed`."""
        assert self._pool is not None
        library = snapshot.library.name
        progress.phase = "waiting for a training process"
        return self._pool.run(
            train_in_worker,
            snapshot,
            self.gnn_config,
            self.neighbours,
            self._over_cells(snapshot),
            what=f"training the GNN of {library}",
            progress=progress.received,
            cancel=self._closed,
        )

    def _checkpointed(self, snapshot: Snapshot, estimator: BlendedEstimator, seconds: float, backend: str) -> Served:
        from . import checkpoints

        trained_unix = time.time()
        log.info("trained %s on %s at graph version %d in %.1f s; blend %s; intervals x%.2f",
                 estimator.name, snapshot.library.name, snapshot.graph_version, seconds, estimator.blend.describe(),
                 estimator.interval_scale)  # fmt: skip
        if self.storage is not None:
            checkpoint = checkpoints.Checkpoint(
                library=snapshot.library.name,
                estimator=estimator.name,
                bundle_blob_id=snapshot.library.bundle_blob_id,
                models_digest=checkpoints.models_digest(estimator.model_ids),
                graph_version=snapshot.graph_version,
                interactions=len(snapshot.interactions),
                trained_unix=trained_unix,
                train_seconds=seconds,
                config=asdict(self.gnn_config),
                weights=estimator.state(),
                blend=estimator.blend.to_dict(),
                knn_choices=estimator.knn.choices.to_dict(),
            )
            try:
                checkpoints.save(self.storage, checkpoint)
            except ModsnetError as error:  # serving goes on; the next start trains again
                log.warning("could not store the checkpoint of %s: %s", snapshot.library.name, error)
        return Served(
            estimator, snapshot.library, {m.model_id: m for m in snapshot.models}, "trained",
            snapshot.graph_version, len(snapshot.interactions), trained_unix, seconds, backend,
        )  # fmt: skip

    def _to_onnx(self, estimator: BlendedEstimator, like: Any = None, model: bytes | None = None) -> str:
        scorer = estimator.serve_onnx(providers=self.providers, like=like, model=model)
        return f"onnxruntime:{scorer.providers[0]}"

    def _retrain_in_background(self, library: str) -> None:
        with self._guard:
            running = self._retraining.get(library)
            if running is not None and running.is_alive():
                return
            ended, took = self._retrained.get(library, (0.0, 0.0))
            not_before = ended + took * RETRAIN_PAUSE_FACTOR  # paced: see RETRAIN_PAUSE_FACTOR
            thread = threading.Thread(
                target=self._retrain, args=(library, not_before), name=f"retrain-{library}", daemon=True
            )
            self._retraining[library] = thread
        thread.start()

    def _train_in_background(self, snapshot: Snapshot, *, wait: float | None) -> Served | None:
        """Train on `snapshot` in a background thread; its result if ready within `wait` seconds (None: no
        limit), else None.

        Called with the library's lock held. On time, the caller serves the result (a failure is raised
        to it); late, the thread swaps the result in itself once the caller has released the lock. The
        thread runs outside the request's deadline, so a late training still ends in a checkpoint.
        """
        library = snapshot.library.name
        outcome: list[Served | Exception] = []
        handoff = threading.Lock()  # decides once whether the request or the thread serves the result
        request_waiting = [True]

        def train() -> None:
            try:
                got: Served | Exception = self._train(snapshot)
            except Exception as exc:
                got = exc
            with handoff:
                outcome.append(got)
                late = not request_waiting[0]
            if not late:
                return
            if isinstance(got, Exception):
                if not self._closed.is_set():
                    log.error("training %s failed: %s", library, got, exc_info=got)
                self._drop_interim(library)  # the next search tries again
            else:
                self._swap_in(library, got)

        with self._guard:
            running = self._retraining.get(library)
            if running is not None and running.is_alive():
                return None  # a training of this library is under way already: answer with the stand-in
            thread = threading.Thread(target=train, name=f"train-{library}", daemon=True)
            self._retraining[library] = thread
        thread.start()
        thread.join(None if wait is None else max(0.0, wait))
        with handoff:
            request_waiting[0] = False
            got = outcome[0] if outcome else None
        if isinstance(got, Exception):
            raise got
        if got is None:
            log.info("training %s goes on in the background: the kNN estimator answers until it is done", library)
        return got

    def _drop_interim(self, library: str) -> None:
        with self._lock(library):
            cached = self._cache.get(library)
            if cached is not None and cached.origin == "interim":
                del self._cache[library]

    def _retrain(self, library: str, not_before: float = 0.0) -> None:
        """Train on the current graph off the request path (not before the monotonic time `not_before`), then
        swap the result in unless it is older."""
        if self._closed.wait(max(0.0, not_before - time.monotonic())):
            return
        started = time.monotonic()
        try:
            snapshot = _learnable(self.knowledge.snapshot(library))
            served = self._train(snapshot)
        except Exception:  # a background job has no caller to tell: log, keep serving what there is
            if not self._closed.is_set():
                log.exception("background retraining of %s failed", library)
            self._drop_interim(library)  # a stand-in is not kept for good: the next search tries again
            return
        finally:
            with self._guard:
                self._retrained[library] = (time.monotonic(), time.monotonic() - started)
        self._swap_in(library, served)

    def _swap_in(self, library: str, served: Served) -> None:
        """Serve a GNN trained off the request path, unless the cache holds a newer graph of the import."""
        with self._lock(library):
            cached = self._cache.get(library)
            same_import = cached is not None and cached.library.bundle_blob_id == served.library.bundle_blob_id
            if cached is None or (same_import and cached.graph_version <= served.graph_version):
                self._cache[library] = served
                self._caught_up(library, served.graph_version)
                FITS.labels(library, "retrained:trained").inc()
            elif same_import and cached.origin == "interim":
                # The graph moved on while training: the next search puts these weights (checkpointed)
                # on the newer graph instead of the kNN stand-in answering on.
                del self._cache[library]

    def wait_for_retraining(self, library: str, timeout: float | None = None) -> bool:
        """Block until a background retraining of the library ends; False if it is still running."""
        thread = self._retraining.get(library)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def trainings(self) -> list[TrainingProgress]:
        """The GNN trainings under way (copies: where each stands now)."""
        with self._guard:
            return [dataclasses.replace(p) for p in self._progress.values()]

    def warm_libraries(self) -> dict[str, str]:
        """The libraries whose estimator is loaded, each with what serves it."""
        with self._guard:
            served = list(self._cache.items())
        return {name: f"{s.estimator.name} {s.origin}, graph version {s.graph_version}" for name, s in served}

    def training_threads(self) -> list[threading.Thread]:
        """The threads training or retraining a library now (for a process that must not exit under them)."""
        with self._guard:
            threads = [*self._retraining.values(), *self._refresh_jobs.values()]
        return [t for t in threads if t.is_alive()]

    # -- queries -----------------------------------------------------------------------------------------

    def recommend(
        self,
        library: str,
        features: dict[str, float],
        *,
        k: int,
        constraints: Constraints,
        probe_budget: int = MAX_PROBES,
        dataset_id: str = "",
        probes: Sequence[ProbeRecord] = (),
        objective: Objective | None = None,
        profile: str = "",
        known_version: int = 0,
    ) -> Answer:
        """The top-k models for a dataset, using the probes of at most `probe_budget` models (the first
        named: the probe-selector's order, best first), and the one to take (`recommendation.py`): a model
        measured by a probe when it beat every prediction, else the top-1. A measured model recommended
        from below the top-k takes the last place, so the answer keeps k models and holds it.

        The limits are `constraints` combined with the hardware `profile`'s (the stricter wins); the models
        they allow are ranked by `objective`, and the answer says what each limit removed (`objectives.py`)."""
        objective = objective or Objective()  # the best predicted score
        objective.check()
        limits, sources = combine(constraints, profile_named(profile))
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, not {k}")
        if probe_budget < 0:
            raise InvalidArgument("probe_budget must be >= 0")
        if len(probes) > MAX_PROBES:
            raise InvalidArgument(f"at most {MAX_PROBES} probes per query, not {len(probes)}")
        for i, p in enumerate(probes):
            if not p.model_id or not p.probe or p.value != p.value or abs(p.value) == float("inf"):
                raise InvalidArgument(f"probe {i}: needs a model_id, a kind and a finite value")
        probes = _within_budget(probes, probe_budget)
        # A known dataset's own records are never stale; the caller's version: see `fitted`.
        served = self.fitted(library, fresh=bool(dataset_id), known_version=known_version)
        # Probes on the records' scale (where the library's probe records taught it): the estimator, the ranking
        # and the "best measured or top-1" comparison all weigh them against predictions of that scale.
        probes = _on_record_scale(served, probes)
        start = time.perf_counter()
        estimator = served.estimator
        if not dataset_id and features and not estimator.shared_features(features):
            raise InvalidArgument(
                f"the query's features share nothing with library {library!r} "
                f"(it uses {', '.join(estimator.feature_names[:5]) or 'no features'}…): wrong library for this data?"
            )
        scored = dataset_id if dataset_id in estimator.dataset_ids else None
        probes_used = 0
        if _is_gnn(estimator):
            # A dataset node without records still brings its similarity rows: pass it on either way.
            vectors = estimator.score_all(features, known_dataset=dataset_id or None, probes=probes)
            probes_used = estimator.probes_used(probes, known_dataset=dataset_id or None)
        else:
            vectors = estimator.score_all(features, known_dataset=scored, probes=probes)
            probes_used = estimator.probes_used(probes, known_dataset=scored)
        # A probed model is shown and weighed by its posterior under noisy probes, not its raw reading.
        vectors, estimates = _probed_by_posterior(
            served, features, dataset_id or None if _is_gnn(estimator) else scored, probes, vectors
        )
        higher_is_better = bool(served.library.meta.get("higher_is_better", True))
        objectives.check(objective, higher_is_better=higher_is_better, library=library)
        if objective.kind == "score" and limits == Constraints():
            # The common case, nothing to remove and nothing but the score to rank by: one vectorised top-k.
            ranked, excluded, pick = top_k(
                served, vectors, limits, probes, k=k, higher_is_better=higher_is_better, estimates=estimates
            )
            removals: list[Removal] = []
        else:
            ranked, excluded, pick, removals = self._by_objective(
                served,
                vectors,
                limits,
                sources,
                objective,
                probes,
                k=k,
                higher_is_better=higher_is_better,
                estimates=estimates,
            )
        RECOMMEND_SECONDS.observe(time.perf_counter() - start)
        return Answer(
            models=ranked,
            graph_version=served.graph_version,
            estimator=estimator.name,
            path="transductive" if scored else "inductive",
            probes_used=probes_used,
            excluded_by_constraints=excluded,
            recommendation=pick,
            removals=removals,
            objective=objective,
            profile=profile,
            constraints=limits,
        )

    @staticmethod
    def _by_objective(
        served: Served,
        vectors: Scored,
        limits: Constraints,
        sources: dict[str, str],
        objective: Objective,
        probes: Sequence[ProbeRecord],
        *,
        k: int,
        higher_is_better: bool,
        estimates: dict[str, tuple[float, float]] | None = None,
    ) -> tuple[list[Ranked], int, Recommendation | None, list[Removal]]:
        """Limits and objectives (`objectives.py`) over light predictions (id, score, uncertainty) of every model;
        only the models shown get their evidence and explanation."""
        table, sign = served.table, served.estimator.sign
        light = [
            Prediction(model_id, float(vectors.scores[j]), float(vectors.uncertainty[j]))
            for j, model_id in enumerate(table.ids)
        ]
        # Best first by the objective; equal values go to the better score, then lower uncertainty, then id.
        selection = objectives.select(light, served.models, limits, objective, sign=sign)
        ranking = selection.ranking
        pick = objectives.choose(
            selection, probes, objective, higher_is_better=higher_is_better, k=k, estimates=estimates
        )
        keep = next(i for i, p in enumerate(ranking) if p.model_id == pick.model_id) if pick else None
        ranked = [
            Ranked(
                i + 1,
                vectors.prediction(table.index[ranking[i].model_id]),
                served.models[ranking[i].model_id],
                on_front=ranking[i].model_id in selection.front,
                objective_value=selection.values.get(ranking[i].model_id, 0.0),
            )
            for i in answer_positions(len(ranking), k, keep)
        ]
        removals = objectives.removals(
            selection,
            [r.prediction.model_id for r in ranked],
            ranking[keep].score if keep is not None else None,
            objective,
            limits,
            sources,
            sign=sign,
            k=k,
        )
        return ranked, selection.excluded, pick, removals

    def select_probes(
        self,
        library: str,
        features: dict[str, float],
        *,
        budget: int,
        dataset_id: str = "",
        measured: Sequence[ProbeRecord] = (),
        tried: Sequence[str] = (),
        known_version: int = 0,
    ) -> ProbeChoice:
        """The next models worth probing on this query, best first, among those the query service can measure,
        given the probes `measured` on it so far and the models `tried` without a result (`policy.py`).

        None for a dataset with records of its own (nothing to learn from a probe there) and for libraries
        whose models cannot be run here. The kNN estimator takes measured scores only (no proxy kinds).
        """
        if budget < 0:
            raise InvalidArgument("budget must be >= 0")
        if len(measured) > MAX_PROBES:
            raise InvalidArgument(f"measured: at most {MAX_PROBES} probes per query, not {len(measured)}")
        if len(tried) > MAX_PROBES:
            raise InvalidArgument(f"tried: at most {MAX_PROBES} models per query, not {len(tried)}")
        for i, p in enumerate(measured):
            if not p.model_id or not p.probe or p.value != p.value or abs(p.value) == float("inf"):
                raise InvalidArgument(f"measured[{i}]: needs a model_id, a kind and a finite value")
        for i, model_id in enumerate(tried):
            if not model_id:
                raise InvalidArgument(f"tried[{i}]: empty model id")
        budget = min(budget, MAX_PROBES)
        served = self.fitted(library, fresh=bool(dataset_id), known_version=known_version)
        for field_name, ids in (("measured", [p.model_id for p in measured]), ("tried", list(tried))):
            unknown = next(((i, m) for i, m in enumerate(ids) if m not in served.models), None)
            if unknown is not None:
                raise InvalidArgument(f"{field_name}[{unknown[0]}]: model {unknown[1]!r} is not in library {library!r}")
        version = served.graph_version
        estimator = served.estimator
        if budget == 0 or dataset_id in estimator.dataset_ids:
            return ProbeChoice([], version, True, "nothing to probe: a budget of 0, or a dataset with records")
        among = _probeable(served.library, served.models.values())
        if not among:
            return ProbeChoice([], version, True, f"no model of {library!r} can be measured here")
        # The probes' noise as the library measured it: a level a query's probes share and each one's own.
        noise = policy.probe_noise(ProbeScale.of_library(served.library.meta))
        step = policy.next_probes(
            estimator,
            features,
            known_dataset=dataset_id or None,
            measured=_on_record_scale(served, measured),
            tried=tried,
            count=budget,
            among=among,
            noise_sd=noise.get("noise_sd"),
            noise_level=noise.get("noise_level", 0.0),
        )
        return ProbeChoice(step.model_ids, version, step.stop, step.reason, step.expected_gain)

    def served(self) -> list[Served]:
        """The estimators serving now, one per library used since the start (for the metrics)."""
        with self._guard:
            return list(self._cache.values())

    def train(self, library: str) -> EstimatorInfo:
        return self._info(library, self.fitted(library, force=True))

    def info(self, library: str) -> EstimatorInfo:
        return self._info(library, self.fitted(library))

    @staticmethod
    def _info(library: str, served: Served) -> EstimatorInfo:
        estimator = served.estimator
        return EstimatorInfo(
            library,
            estimator.name,
            served.graph_version,
            served.library.datasets,
            served.library.models,
            served.library.interactions,
            served.trained_unix,
            served.train_seconds,
            list(estimator.feature_names),
            served.origin,
            served.trained_version,
            served.backend,
        )

    def close(self) -> None:
        """Cancel the trainings under way, before any checkpoint of them is written (a worker's is killed within
        `workers.POLL_SECONDS`; one in this process stops at its next step), and wait until their threads have
        ended.

        Waiting to the end matters: a training thread still alive when the interpreter exits runs torch
        while the process tears it down, which aborts it ("terminate called without an active exception").
        """
        self._closed.set()
        with self._guard:
            for hurry in self._hurry.values():
                hurry.set()  # a refresh job pausing between runs sees the close at once
        for thread in self.training_threads():
            while thread.is_alive():
                thread.join(timeout=10.0)
                if thread.is_alive():
                    log.info("waiting for %s to reach its next step and stop", thread.name)
        self.knowledge.close()
        if self.storage is not None:
            self.storage.close()


def top_k(
    served: Served,
    vectors: Scored,
    constraints: Constraints,
    probes: Sequence[ProbeRecord],
    *,
    k: int,
    higher_is_better: bool,
    estimates: dict[str, tuple[float, float]] | None = None,
) -> tuple[list[Ranked], int, Recommendation | None]:
    """The answer's models, how many the constraints left out, and the one to take (`recommend_one`).

    As sorting every allowed prediction best first (ties: lower uncertainty, then id) and handing that to
    `recommend_one`, without doing it: `recommend_one` gets the ranking's head, up to the last model a
    probe measured (so its places are the true ones) and at least one model not measured, and only the
    models shown get their evidence and explanation.
    """
    table = served.table
    allowed = allowed_positions(table, constraints)
    order = Order.of(vectors.scores, vectors.uncertainty, served.estimator.sign, table)
    measured = {table.index[p.model_id] for p in probes if p.probe == MEASURED and p.model_id in table.index}
    if measured:
        mask = np.zeros(len(table.ids), dtype=bool)
        mask[allowed] = True
        measured = {j for j in measured if mask[j]}
    places = order.places(allowed, measured)
    head = order.first(allowed, max(k, len(measured) + 1, *(place + 1 for place in places.values())))
    full: dict[int, Prediction] = {}

    def prediction(j: int, *, shown: bool) -> Prediction:
        if not shown:  # recommend_one reads only the id, score and uncertainty of a model it does not show
            return Prediction(table.ids[j], float(vectors.scores[j]), float(vectors.uncertainty[j]))
        if j not in full:
            full[j] = vectors.prediction(j)
        return full[j]

    ranking = [prediction(int(j), shown=i < k) for i, j in enumerate(head)]
    pick = recommend_one(ranking, probes, higher_is_better=higher_is_better, k=k, estimates=estimates)
    keep = next(i for i, p in enumerate(ranking) if p.model_id == pick.model_id) if pick else None
    ranked = []
    for i in answer_positions(len(allowed), k, keep):
        j = int(head[i])
        ranked.append(Ranked(i + 1, prediction(j, shown=True), served.models[table.ids[j]]))
    return ranked, len(table.ids) - len(allowed), pick


def _probed_by_posterior(
    served: Served,
    features: dict[str, float],
    known_dataset: str | None,
    probes: Sequence[ProbeRecord],
    vectors: Scored,
) -> tuple[Scored, dict[str, tuple[float, float]]]:
    """`vectors` with each model probed in the library's metric at its posterior under noisy probes
    (`policy.posterior`: the reading shrunk toward the model's prediction by the probe's noise, as the library's
    probe records measured it; a probe of the whole table is exact), its sd > 0 where the probe was a sample; and
    model -> (estimate, sd) for `recommend_one`. Unchanged (and no estimates) where the estimator has no library
    behaviour to condition on or nothing was probed in the library's metric."""
    estimator = served.estimator
    # The table's positions are the estimator's (`Served.table`): no per-query dict of every model, which cost a
    # 1M-model Recommend ~350 ms with no probe at all.
    index = served.table.index
    measured = [p for p in probes if p.probe == MEASURED and p.model_id in index]
    if not measured or not callable(getattr(estimator, "behaviour", None)):
        return vectors, {}
    noise = policy.probe_noise(ProbeScale.of_library(served.library.meta))
    mean, sd, _ = policy._predicted(
        estimator,
        features,
        known_dataset,
        measured,
        index,
        condition=True,
        level=policy.LEVEL,
        noise_sd=noise.get("noise_sd"),
        noise_level=noise.get("noise_level", 0.0),
    )
    sign = estimator.sign
    scores, uncertainty = vectors.scores.copy(), vectors.uncertainty.copy()
    estimates: dict[str, tuple[float, float]] = {}
    readings: dict[str, list[ProbeRecord]] = {}
    for p in measured:
        readings.setdefault(p.model_id, []).append(p)
    for model_id in readings:
        j = index[model_id]  # the table's position is the estimator's
        if not np.isfinite(mean[j]):
            continue
        scores[j], uncertainty[j] = sign * mean[j], sd[j]
        estimates[model_id] = (float(scores[j]), float(sd[j]))
    build = vectors.build
    modality = served.library.meta.get("modality")

    def prediction(j: int) -> Prediction:
        first = build(j)
        if first.model_id not in estimates:
            return first
        estimate, spread = estimates[first.model_id]
        taken = readings[first.model_id]
        value = sum(p.value for p in taken) / len(taken)
        shift = sum(p.to_record_scale for p in taken) / len(taken)
        read = f"{value - shift:.3f} ({value:.3f} on the library's record scale)" if shift else f"{value:.3f}"
        words = "probed on a sample of your data"
        if all(p.whole for p in taken):  # a table small enough to measure whole, texts or images as the library samples
            words = (
                "measured on the whole table of your data"
                if modality == "tabular"
                else "measured on your data as the library measures"
            )
        if f"{estimate:.3f}" == f"{value:.3f}" and f"{spread:.3f}" == f"{0.0:.3f}":  # a probe that reads exactly
            explanation = f"{words}: {read}"
        else:
            explanation = (
                f"{words}: read {read}; estimated {estimate:.3f} ± {spread:.3f} given its prediction "
                "and the probe's noise"
            )
        return Prediction(first.model_id, estimate, spread, first.evidence, explanation)

    return Scored(scores, uncertainty, prediction), estimates


def _is_gnn(estimator: BlendedEstimator) -> bool:
    return not isinstance(estimator.primary, KnnPopularityEstimator)


def _on_record_scale(served: Served, probes: Sequence[ProbeRecord]) -> list[ProbeRecord]:
    """The probes with each measurement shifted to the library's record scale (`modsnet.data.probe_scale`); as
    given for a library without probe records."""
    scale = ProbeScale.of_library(served.library.meta)
    if scale is None:
        return list(probes)

    def family_of(model_id: str) -> str:
        model = served.models.get(model_id)
        return model.metadata.get(FAMILY_COLUMN, "") if model is not None else ""

    return on_record_scale(scale, probes, family_of)


def _within_budget(probes: Sequence[ProbeRecord], budget: int) -> list[ProbeRecord]:
    """The probes of the first `budget` models they name (a model may have several probes)."""
    models: set[str] = set()
    kept = []
    for probe in probes:
        if probe.model_id not in models:
            if len(models) == budget:
                continue
            models.add(probe.model_id)
        kept.append(probe)
    return kept


def _probeable(library: LibraryInfo, models: Collection[ModelNode]) -> list[str]:
    return [m.model_id for m in models if can_probe(library, m)]
