"""What the web app shows about a library, computed from its graph snapshot (plain Python, no HTTP, no grpc).

Counts and density, the score matrix (models x datasets, sorted so that strong models and easy datasets come
first), a model's page (its scores across datasets), a dataset's page (its best models and its nearest
datasets, with why they are near), the stored evaluation report of `modsnet eval`, and the peaks an XRD
finder finds on a scan. The snapshot comes from Knowledge once per graph version (a library's graph is read
whole: a few MB for the built-in ones) and is shared by every request at that version.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modsnet.data.graph import LibraryInfo, ModelNode, Snapshot
from modsnet.runtime.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from modsnet.runtime.stubs import EVALUATION_POINTER, KnowledgeClient, StorageClient

NEAREST = 8  # datasets listed as nearest on a dataset's page
BEST = 10  # models listed as best on a dataset's page
MAX_SCAN_POINTS = 200_000  # points of one scan the XRD view draws (a finder gets them all)


def library_summary(info: LibraryInfo) -> dict[str, Any]:
    cells = info.models * info.datasets
    return {
        "name": info.name,
        "description": str(info.meta.get("description", "")),
        "modality": str(info.meta.get("modality", "")),
        "metric": str(info.meta.get("metric", "")),
        "higher_is_better": bool(info.meta.get("higher_is_better", True)),
        "models": info.models,
        "datasets": info.datasets,
        "interactions": info.interactions,
        # Share of (model, dataset) pairs with a record: how much of the matrix the estimator sees.
        "density": info.interactions / cells if cells else 0.0,
        "graph_version": info.graph_version,
    }


def cost_json(model: ModelNode) -> dict[str, float]:
    c = model.cost
    return {"train_seconds": c.train_seconds, "inference_seconds": c.inference_seconds, "memory_bytes": c.memory_bytes}


@dataclass(frozen=True)
class _Indexed:
    """A snapshot with the lookups the pages need, built once per graph version."""

    snapshot: Snapshot
    models: dict[str, ModelNode]
    scores: dict[tuple[str, str], float]  # (model, dataset) -> mean recorded score (learned-from records)
    by_model: dict[str, dict[str, float]]
    by_dataset: dict[str, dict[str, float]]


class LibraryInsight:
    def __init__(self, knowledge: KnowledgeClient, storage: StorageClient):
        self.knowledge = knowledge
        self.storage = storage
        self._cache: dict[str, _Indexed] = {}
        self._lock = threading.Lock()

    # -- the snapshot -------------------------------------------------------------------------------

    def _indexed(self, library: str) -> _Indexed:
        version = self.knowledge.graph_version(library)  # NotFound for an unknown library
        with self._lock:
            cached = self._cache.get(library)
        if cached is not None and cached.snapshot.graph_version == version:
            return cached
        snapshot = self.knowledge.snapshot(library)
        sums: dict[tuple[str, str], list[float]] = defaultdict(list)
        for rec in snapshot.interactions:
            if not rec.quarantine and math.isfinite(rec.score):
                sums[(rec.model_id, rec.dataset_id)].append(rec.score)
        scores = {key: float(np.mean(values)) for key, values in sums.items()}
        by_model: dict[str, dict[str, float]] = defaultdict(dict)
        by_dataset: dict[str, dict[str, float]] = defaultdict(dict)
        for (m, d), s in scores.items():
            by_model[m][d] = s
            by_dataset[d][m] = s
        indexed = _Indexed(snapshot, {m.model_id: m for m in snapshot.models}, scores, by_model, by_dataset)
        with self._lock:
            self._cache[library] = indexed
        return indexed

    def library(self, library: str) -> dict[str, Any]:
        for info in self.knowledge.list_libraries():
            if info.name == library:
                return library_summary(info)
        raise NotFound(f"library {library!r} not found")

    # -- the score matrix ---------------------------------------------------------------------------

    def matrix(self, library: str) -> dict[str, Any]:
        """Scores as rows of models and columns of datasets, models by mean z-score (best first), datasets by
        mean score (easiest first); a missing record is null."""
        ix = self._indexed(library)
        higher = bool(ix.snapshot.library.meta.get("higher_is_better", True))
        models = [m.model_id for m in ix.snapshot.models]
        datasets = [d.dataset_id for d in ix.snapshot.datasets]
        grid = np.full((len(models), len(datasets)), np.nan)
        mi = {m: i for i, m in enumerate(models)}
        di = {d: j for j, d in enumerate(datasets)}
        for (m, d), s in ix.scores.items():
            if m in mi and d in di:
                grid[mi[m], di[d]] = s
        sign = 1.0 if higher else -1.0
        with np.errstate(all="ignore"):
            # z-scores per dataset, so a model is judged against the others where both have records
            mean = np.nanmean(grid, axis=0, keepdims=True)
            std = np.nanstd(grid, axis=0, keepdims=True)
            z = (grid - mean) / np.where(std > 0, std, 1.0)
            model_key = np.nan_to_num(np.nanmean(z, axis=1), nan=-np.inf) * sign
            dataset_key = np.nan_to_num(np.nanmean(grid, axis=0), nan=-np.inf) * sign
        rows = sorted(range(len(models)), key=lambda i: (-model_key[i], models[i]))
        cols = sorted(range(len(datasets)), key=lambda j: (-dataset_key[j], datasets[j]))
        sorted_grid = grid[np.ix_(rows, cols)] if rows and cols else grid
        return {
            "library": library,
            "metric": str(ix.snapshot.library.meta.get("metric", "")),
            "graph_version": ix.snapshot.graph_version,
            "models": [models[i] for i in rows],
            "datasets": [datasets[j] for j in cols],
            "scores": [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in sorted_grid],
        }

    # -- a model's page -----------------------------------------------------------------------------

    def model(self, library: str, model_id: str) -> dict[str, Any]:
        ix = self._indexed(library)
        # The node itself from Knowledge: a snapshot's models carry no artifact blob (estimators need none).
        model = self.knowledge.get_model(library, model_id)
        higher = bool(ix.snapshot.library.meta.get("higher_is_better", True))
        scores = ix.by_model.get(model_id, {})
        ranks = []  # the model's place among the models recorded on each dataset
        for d, s in scores.items():
            others = ix.by_dataset[d].values()
            ranks.append(1 + sum(1 for o in others if (o > s if higher else o < s)))
        rows = sorted(scores.items(), key=lambda kv: (-kv[1] if higher else kv[1], kv[0]))
        return {
            "library": library,
            "model_id": model_id,
            "metadata": dict(model.metadata),
            "cost": cost_json(model),
            "has_artifact": bool(model.artifact_blob_id),
            "interactions": len(scores),
            "mean_score": float(np.mean(list(scores.values()))) if scores else None,
            "median_rank": float(np.median(ranks)) if ranks else None,
            "scores": [{"dataset_id": d, "score": s, "models_on_dataset": len(ix.by_dataset[d])} for d, s in rows],
        }

    # -- a dataset's page ---------------------------------------------------------------------------

    def dataset(self, library: str, dataset_id: str) -> dict[str, Any]:
        ix = self._indexed(library)
        datasets = {d.dataset_id: d for d in ix.snapshot.datasets}
        node = datasets.get(dataset_id)
        if node is None:
            raise NotFound(f"library {library!r} has no dataset {dataset_id!r}")
        higher = bool(ix.snapshot.library.meta.get("higher_is_better", True))
        scores = ix.by_dataset.get(dataset_id, {})
        best = sorted(scores.items(), key=lambda kv: (-kv[1] if higher else kv[1], kv[0]))[:BEST]
        return {
            "library": library,
            "dataset_id": dataset_id,
            "metadata": dict(node.metadata),
            "features": {k: v for k, v in node.features.items() if math.isfinite(v)},
            "interactions": len(scores),
            "best_models": [{"model_id": m, "score": s} for m, s in best],
            "nearest": self._nearest(ix, dataset_id),
        }

    def _nearest(self, ix: _Indexed, dataset_id: str) -> list[dict[str, Any]]:
        """The library's recorded similarities when it has some for this dataset, else the closest datasets in
        standardised feature space; each with the features that agree most and how their scores correlate."""
        datasets = [d for d in ix.snapshot.datasets if d.features]
        names = sorted({k for d in datasets for k in d.features})
        recorded = {}
        for sim in ix.snapshot.similarities:
            if sim.dataset_a == dataset_id:
                recorded[sim.dataset_b] = sim.distance
            elif sim.dataset_b == dataset_id:
                recorded[sim.dataset_a] = sim.distance
        x = np.array([[d.features.get(k, np.nan) for k in names] for d in datasets], dtype=float)
        ids = [d.dataset_id for d in datasets]
        z = np.zeros_like(x)
        if len(ids) and names:
            with np.errstate(all="ignore"):
                mean = np.nanmean(x, axis=0)
                std = np.nanstd(x, axis=0)
                z = np.nan_to_num((x - mean) / np.where(std > 0, std, 1.0))
        row = {d: i for i, d in enumerate(ids)}
        if recorded:
            candidates = sorted(recorded.items(), key=lambda kv: (kv[1], kv[0]))[:NEAREST]
            source = "recorded"
        elif dataset_id in row and names:
            distance = np.sqrt(((z - z[row[dataset_id]]) ** 2).mean(axis=1))
            order = [i for i in np.argsort(distance, kind="stable") if ids[i] != dataset_id][:NEAREST]
            candidates = [(ids[i], float(distance[i])) for i in order]
            source = "features"
        else:
            return []
        out = []
        mine = ix.by_dataset.get(dataset_id, {})
        for other, dist in candidates:
            closest: list[str] = []
            if dataset_id in row and other in row and names:
                gap = np.abs(z[row[dataset_id]] - z[row[other]])
                closest = [names[i] for i in np.argsort(gap, kind="stable")[:3]]
            theirs = ix.by_dataset.get(other, {})
            shared = sorted(set(mine) & set(theirs))
            correlation = None
            if len(shared) >= 3:
                a = np.array([mine[m] for m in shared])
                b = np.array([theirs[m] for m in shared])
                if a.std() > 0 and b.std() > 0:
                    correlation = float(np.corrcoef(a, b)[0, 1])
            why = "the library records this distance" if source == "recorded" else "closest in dataset features"
            if closest:
                why += f"; most alike in {', '.join(closest)}"
            if correlation is not None:
                why += f"; the {len(shared)} models recorded on both score with correlation {correlation:.2f}"
            out.append(
                {
                    "dataset_id": other,
                    "distance": round(float(dist), 6),
                    "source": source,
                    "closest_features": closest,
                    "shared_models": len(shared),
                    "score_correlation": correlation,
                    "why": why,
                }
            )
        return out

    # -- evaluation reports -------------------------------------------------------------------------

    def evaluation(self, library: str) -> dict[str, Any]:
        """The latest report `modsnet eval LIBRARY` stored (it is a long computation: never run on a page view)."""
        self.library(library)  # NotFound names an unknown library first
        try:
            blob = self.storage.get_pointer(EVALUATION_POINTER.format(library=library))
        except NotFound:
            blob = ""
        if not blob:
            raise NotFound(f"no evaluation of {library!r} is stored yet: run `modsnet eval {library}`")
        try:
            report = json.loads(self.storage.get_bytes(blob))
        except ValueError as exc:
            raise DataLoss(f"the stored evaluation of {library!r} is not JSON: {exc}") from None
        if not isinstance(report, dict) or report.get("library") != library:
            raise DataLoss(f"the stored evaluation of {library!r} is not a report of that library")
        return report

    # -- XRD peaks ----------------------------------------------------------------------------------

    def xrd_peaks(self, library: str, model_id: str, path: str, filename: str, limits: Any) -> dict[str, Any]:
        """A scan (as uploaded, already spooled at `path`) with the peaks `model_id` finds on it: the finder runs
        as a probe runs it (a spec here, a network in its sandboxed process)."""
        from modsnet.data.exemplar import load_exemplar
        from modsnet.models import sandbox
        from modsnet.models.peaks import load_finder

        info = self.knowledge.get_model(library, model_id)
        if not info.artifact_blob_id:
            raise FailedPrecondition(f"model {model_id!r} of {library!r} has no runnable artifact")
        exemplar = load_exemplar(path, name=filename, modality="xrd", limits=limits)
        if not exemplar.scans:
            raise InvalidArgument(f"{filename}: no XRD scan found")
        artifact = self.storage.get_bytes(info.artifact_blob_id)
        if artifact.lstrip()[:1] == b"{":
            finder = load_finder(artifact)
            found = [np.asarray(finder.find(s.two_theta, s.intensity), dtype=float).ravel() for s in exemplar.scans]
        else:
            pairs = [(s.two_theta, s.intensity) for s in exemplar.scans]
            found = sandbox.find_peaks(artifact, pairs, seconds=30.0)
        scans = []
        for scan, peaks in zip(exemplar.scans, found, strict=True):
            x = np.asarray(scan.two_theta, dtype=float)
            y = np.asarray(scan.intensity, dtype=float)
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
            step = max(1, math.ceil(len(x) / MAX_SCAN_POINTS))
            peaks = np.sort(peaks[np.isfinite(peaks)])
            heights = np.interp(peaks, x, y) if len(peaks) and len(x) else np.zeros(0)
            scans.append(
                {
                    "wavelength": float(scan.wavelength) if scan.wavelength else None,
                    "two_theta": [round(float(v), 5) for v in x[::step]],
                    "intensity": [round(float(v), 4) for v in y[::step]],
                    "peaks": [
                        {"two_theta": round(float(p), 5), "intensity": round(float(h), 4)}
                        for p, h in zip(peaks, heights, strict=True)
                    ],
                }
            )
        return {"library": library, "model_id": model_id, "filename": Path(filename).name, "scans": scans}
