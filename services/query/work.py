"""The query service's CPU-heavy steps, as functions a worker process runs (`modsnet.runtime.workers`).

Parsing an upload, its features and the probes are Python that holds the GIL for up to seconds; in the
service's own process they made every other call wait (feedback p99 of 8.9 s under load). Each function
here takes and returns plain picklable values, so it runs the same in a worker or in-process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from modsnet.data.exemplar import Exemplar, Limits, dataset_features, load_exemplar
from modsnet.data.graph import LibraryInfo, ModelNode, ProbeRecord
from modsnet.features import single_threaded_blas
from modsnet.models import probing, sandbox

# What a worker's fork server imports once, so that each worker costs a fork, not these imports. The fork
# server is the XRD sandbox's too (one per process): its modules first.
PRELOAD = [
    *sandbox.PRELOAD,
    "pandas",
    "sklearn",
    "modsnet.models.tabular",
    "modsnet.data.exemplar",
    "services.query.work",
]

_blas_limited = False


def _one_blas_thread() -> None:
    # As in the service process (features are fastest so); the worker's parallelism is the pool's size.
    global _blas_limited
    if not _blas_limited:
        single_threaded_blas()
        _blas_limited = True


def parse_and_describe(
    spool: str, name: str, modality: str, target: str, limits: Limits, cache_dir: Path | None
) -> tuple[Exemplar, str, dict[str, float], float]:
    """The upload at `spool` parsed and validated (InvalidArgument naming the file, row or column), its
    (feature set, features), and the seconds the parse took (the rest was the features)."""
    _one_blas_thread()
    started = time.perf_counter()
    exemplar = load_exemplar(spool, name=name, modality=modality, target=target, limits=limits)
    parse_seconds = time.perf_counter() - started
    feature_set, features = dataset_features(exemplar, cache_dir=cache_dir)
    return exemplar, feature_set, features, parse_seconds


def measure_probes(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    budget_seconds: float,
) -> list[ProbeRecord]:
    """`modsnet.models.probing.measure` of the chosen models on the exemplar within the budget."""
    _one_blas_thread()
    return probing.measure(library, exemplar, models, budget_seconds=budget_seconds)
