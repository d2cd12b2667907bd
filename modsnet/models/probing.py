"""Probes: cheap, bounded real measurements of candidate models on the query's own data.

The recommender's probe-selector names the models worth measuring; this module measures them where the
upload is (the query service), and each measurement becomes a virtual probe edge of the query node. A
probe is optional evidence: a model that cannot be measured in time, or at all, is simply left out.

What a probe measures, per modality:
- tabular (kind "score", TabZoo settings): the library's own metric, balanced accuracy by the library's
  `FOLDS`-fold stratified CV (`modsnet.models.tabular.evaluate`), on the rows the library measures a table on:
  the whole table up to `SAMPLE_ROWS` (TabZoo's `ROW_CAP`) labelled rows, else a stratified sample of that many
  drawn as TabZoo drew its own (the same function, seed and class floor: every class keeps min(its count,
  `CLASS_FLOOR`) rows, as a balanced accuracy is only as good as its rarest class). So a probe reads what the
  library would have recorded for the table: on 28 of TabZoo's own tables, 4,327 of 4,332 probes equal the
  record to its 6 digits (docs/benchmarks-decisions.md, "Probes that read what the library records"); at 300
  rows they ran 0.015 under it with an sd of 0.06, and a budget spent on them decided worse than the same
  budget spent on full measurements. Most settings fit 1,000 rows in a fraction of a second (median 0.085 s of
  CPU a probe, 1.2x the 300-row sample's), so several probes still fit in a search's budget.
  Needs the target column; classes with fewer than `FOLDS` rows are dropped and at least two classes must
  remain.
- text (kind "score", TextZoo encoder + head models): balanced accuracy by the library's 3-fold stratified
  CV (`modsnet.models.text.evaluate`) on the sample of at most `ROW_CAP` (1,000) labelled texts the library
  draws, so a probe reads what the library would record; each encoder embeds the sample once for all its
  probed heads, and a transformer that cannot embed it in the time left is not probed
  (`modsnet.models.textprobe`).
- image (kind "score", ImageZoo encoder + head models): the same, on the library's sample of at most
  `PROTOCOL_IMAGES` images, labelled by their class folders, that the upload's loader decoded
  (`Limits.protocol_images`); where that sample is past its memory bound, on the features' 128 images, a
  reading of a sample (`modsnet.models.imageprobe`).
- XRD (kind "agreement", finders with an artifact): there is no ground truth for an uploaded scan, so a
  finder is scored by how well its peaks agree with the consensus of the probed finders: peak F1 within
  ±`TOLERANCE_DEG` 2θ against the consensus peaks (see `_consensus`), averaged over the first
  `MAX_SCANS` scans of the exemplar's (seeded) sample. Agreement needs at least `MIN_FINDERS` finders
  (two finders agreeing says nothing about which is right); the value is relative to the probed set,
  which is how probe edges are used (z-scored among the probed models of one kind).

Bounds, because the user waits for the search: the call stops starting probes once `budget_seconds` are
spent. A tabular probe gets at most min(`PROBE_LIMIT_S`, remaining budget), split over its `FOLDS` fits;
a fit past its share is interrupted and the probe left out, in the main thread and in a worker thread
alike (`modsnet.models.tabular.evaluate` bounds fits in any thread). An XRD finder is checked between scans
and dropped if the budget ran out while it ran; a neural finder (an ONNX model the library brought) runs
in a child process bounded in address space and killed at the deadline (`modsnet.models.sandbox`; the
first one in a process also starts its forkserver). Scans longer than `MAX_SCAN_POINTS` are not probed (a
finder's cost grows with the points).
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.data.graph import QUERY_DATASET, LibraryInfo, ModelNode, ProbeRecord

if TYPE_CHECKING:
    import pandas as pd

    from modsnet.data.exemplar import Exemplar
    from modsnet.models.tabular import ModelSetting

__all__ = [
    "CLASS_FLOOR",
    "KIND_AGREEMENT",
    "KIND_SCORE",
    "MAX_SCANS",
    "MIN_FINDERS",
    "PROBE_LIMIT_S",
    "SAMPLE_ROWS",
    "TOLERANCE_DEG",
    "can_probe",
    "measure",
    "needs_artifact",
    "probe_sample",
]

KIND_SCORE = "score"  # the library's own metric measured on a sample of the query (probes.MEASURED)
KIND_AGREEMENT = "agreement"  # XRD: agreement of a finder's peaks with the consensus of the probed finders

SAMPLE_ROWS = 1_000  # tabular: rows drawn for a probe: TabZoo's ROW_CAP (models/tabular.py), checked by a test
PROTOCOL_IMAGES = 500  # image: images a probe measures on: ImageZoo's ROW_CAP (models/image.py), checked by a test
CLASS_FLOOR = 20  # tabular: every class keeps at least min(its count, this) rows of the sample (as TabZoo's cap)
PROBE_LIMIT_S = 5.0  # tabular: most seconds one probe may take
MAX_SCANS = 5  # XRD: scans each finder runs on
MAX_SCAN_POINTS = 200_000  # XRD: longer scans are not probed
TOLERANCE_DEG = 0.1  # XRD: peaks match within ± this many degrees 2θ (the library's scoring tolerance)
MIN_FINDERS = 3  # XRD: fewer measured finders give no agreement probes

_TABULAR_METRIC = "balanced_accuracy"
_log = logging.getLogger(__name__)


def can_probe(library: LibraryInfo, model: ModelNode) -> bool:
    """True when this module knows how to measure `model` on a query of `library`.

    Tabular: a TabZoo setting that `model_settings()` rebuilds. The library must be tabular with the
    TabZoo metric, and where its models.csv describes the model (estimator, params, preprocessing) the
    description must be this version's setting, so a library under another name built by
    `modsnet.offline.zoo.tabular` qualifies and a model of another library that merely shares an id does not.
    Without such columns only a library named 'tabzoo' qualifies. XRD: any model with an artifact (a
    resolved blob, or the bundle's `artifact` path that `get_model` resolves).
    """
    modality = library.meta.get("modality")
    if modality == "xrd":
        # Graph snapshots name the artifact (metadata `artifact`); `get_model` resolves it to a blob.
        return bool(model.artifact_blob_id or model.metadata.get("artifact"))
    if modality == "tabular":
        return _tabzoo_setting(library, model) is not None
    if modality == "text":
        from modsnet.models.textprobe import text_model_of

        return text_model_of(library, model) is not None
    if modality == "image":
        from modsnet.models.imageprobe import image_model_of

        return image_model_of(library, model) is not None
    return False


def needs_artifact(library: LibraryInfo) -> bool:
    """Whether a probe needs the model's artifact bytes: an XRD finder is its artifact, a TextZoo or ImageZoo
    transfer model's artifact holds its trunk (their other models ignore their small JSON spec); TabZoo is rebuilt."""
    return library.meta.get("modality") in ("xrd", "text", "image")


def measure(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    *,
    budget_seconds: float = 10.0,
    seed: int = 0,
) -> list[ProbeRecord]:
    """Measure each model (in the given order) until the time budget is spent.

    Models not measured (budget spent, not probeable, a failure such as a fit error or a timeout) are left
    out: a probe is optional evidence, never an error for the search. Raises nothing for bad models or
    data; failures are logged at debug level.
    """
    started = time.perf_counter()
    if budget_seconds <= 0 or not models:
        return []
    modality = library.meta.get("modality")
    if exemplar.modality != modality:
        _log.debug("no probes: a %s exemplar for %s library %r", exemplar.modality, modality, library.name)
        return []
    try:
        if modality == "tabular":
            return _measure_tabular(library, exemplar, models, started + budget_seconds, seed)
        if modality == "xrd":
            return _measure_xrd(library, exemplar, models, started + budget_seconds)
        if modality == "text":
            from modsnet.models.textprobe import measure_text

            return measure_text(library, exemplar, models, started + budget_seconds, seed)
        if modality == "image":
            from modsnet.models.imageprobe import measure_image

            return measure_image(library, exemplar, models, started + budget_seconds, seed)
    except Exception:  # evidence, not a requirement: an unexpected failure costs the probes, not the search
        _log.debug("probing %s on library %r failed", exemplar.name, library.name, exc_info=True)
    return []


# ----------------------------------------------------------------------------------------------- tabular


@functools.lru_cache(maxsize=1)
def _settings() -> dict[str, ModelSetting]:
    from modsnet.models.tabular import model_settings  # scikit-learn: only where tabular probes run

    return {s.model_id: s for s in model_settings()}


def _tabzoo_setting(library: LibraryInfo, model: ModelNode) -> ModelSetting | None:
    if library.meta.get("modality") != "tabular" or library.meta.get("metric", _TABULAR_METRIC) != _TABULAR_METRIC:
        return None
    setting = _settings().get(model.model_id)
    if setting is None:
        return None
    described = {k: model.metadata[k] for k in ("estimator", "params", "preprocessing") if k in model.metadata}
    if not described:
        return setting if library.name == "tabzoo" else None
    from modsnet.models.tabular import PREPROCESSING

    try:
        params = json.loads(described["params"]) if "params" in described else dict(setting.params)
    except (TypeError, ValueError):
        return None
    same = (
        described.get("estimator", setting.estimator) == setting.estimator
        and _canonical(params) == _canonical(dict(setting.params))
        and described.get("preprocessing", PREPROCESSING) == PREPROCESSING
    )
    return setting if same else None


def _canonical(params: Any) -> str:
    return json.dumps(params, sort_keys=True)  # tuples and lists alike, as models.csv writes them


def probe_sample(exemplar: Exemplar, seed: int) -> pd.DataFrame | None:
    """The stratified sample a tabular probe fits on, target renamed to TARGET; None when it cannot be CV'd
    (also what `modsnet.offline.zoo.tabular_probes` records the rows of)."""
    import pandas as pd

    from modsnet.features.tabular import stratified_sample
    from modsnet.models.tabular import FOLDS, TARGET

    table, target = exemplar.table, exemplar.target
    if table is None or not target or target not in table.columns:
        return None
    if target != TARGET and TARGET in table.columns:  # a feature that happens to be called like the target
        table = table.rename(columns={TARGET: _unused_name(table.columns, TARGET)})
    table = table.rename(columns={target: TARGET})
    codes, _ = pd.factorize(table[TARGET])  # -1 for a missing label: never sampled
    # As the library was measured (`stratified_sample`'s floor, the zoo's own call): a rare class keeps
    # min(count, CLASS_FLOOR) rows, so balanced accuracy does not hang on the two or three a uniform draw leaves.
    sample = table.iloc[stratified_sample(codes, SAMPLE_ROWS, seed, min_per_class=CLASS_FLOOR)]
    counts = sample[TARGET].value_counts()
    sample = sample[sample[TARGET].isin(counts.index[counts >= FOLDS])].reset_index(drop=True)
    return sample if sample[TARGET].nunique() >= 2 else None


def _unused_name(columns: Any, base: str) -> str:
    taken = {str(c) for c in columns}
    number = 1
    while f"{base}_{number}" in taken:
        number += 1
    return f"{base}_{number}"


def _measure_tabular(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    deadline: float,
    seed: int,
) -> list[ProbeRecord]:
    from threadpoolctl import threadpool_limits

    from modsnet.models.tabular import FOLDS

    settings = [(model, _tabzoo_setting(library, model)) for model, _ in models]
    if not any(setting for _, setting in settings):
        return []
    sample = probe_sample(exemplar, seed)
    if sample is None:
        _log.debug("no tabular probes on %s: no target, or fewer than two classes of %d rows", exemplar.name, FOLDS)
        return []
    # One OpenMP thread (histogram boosting), as the library was measured: concurrent searches are the
    # parallelism, and OpenMP threads spinning on a busy node made a 0.4 s probe miss its 1.7 s fits.
    with threadpool_limits(limits=1, user_api="openmp"):
        return _probe_settings(settings, sample, exemplar, deadline, seed)


def _probe_settings(
    settings: list[tuple[ModelNode, ModelSetting | None]],
    sample: pd.DataFrame,
    exemplar: Exemplar,
    deadline: float,
    seed: int,
) -> list[ProbeRecord]:
    from modsnet.models.tabular import FOLDS, evaluate

    results = []
    if len(sample) >= exemplar.n_items:
        rows_read = f"all {len(sample)} rows"
    else:
        rows_read = f"{len(sample)} of {exemplar.n_items} rows, as the library samples a table"
    for model, setting in settings:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        if setting is None:
            _log.debug("not probed: %s is not a setting this version rebuilds", model.model_id)
            continue
        limit = min(PROBE_LIMIT_S, remaining)
        started = time.perf_counter()
        # evaluate()'s timeout is per fit (in any thread): a share of the limit each keeps the probe within it.
        result = evaluate(setting, sample, seed=seed, timeout=limit / FOLDS)
        seconds = time.perf_counter() - started
        if result.get("status") != "ok":
            _log.debug("not probed: %s %s (%s)", model.model_id, result.get("status"), result.get("error", ""))
            continue
        value = float(result["score"])
        results.append(
            ProbeRecord(
                model.model_id,
                QUERY_DATASET,
                KIND_SCORE,
                value,
                seconds,
                f"balanced accuracy {value:.3f} by {FOLDS}-fold CV on {rows_read}",
                # A table of at most SAMPLE_ROWS rows is probed whole: the record's protocol, no sample.
                whole=0 < exemplar.n_items <= SAMPLE_ROWS,
            )
        )
    return results


# ----------------------------------------------------------------------------------------------- XRD


def _measure_xrd(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    deadline: float,
) -> list[ProbeRecord]:
    from modsnet.models import sandbox
    from modsnet.models.peaks import f1_at_tolerance, load_finder

    scans = [s for s in exemplar.scans if 0 < len(s.two_theta) <= MAX_SCAN_POINTS][:MAX_SCANS]
    if not scans:
        return []
    found: list[tuple[ModelNode, list[np.ndarray], float]] = []  # model, peaks per scan, seconds
    for model, artifact in models:
        if time.perf_counter() >= deadline:
            break
        if not model.artifact_blob_id or not artifact:
            _log.debug("not probed: %s has no artifact", model.model_id)
            continue
        started = time.perf_counter()
        peaks: list[np.ndarray] = []
        try:
            if artifact.lstrip()[:1] == b"{":  # a spec: parameters of a built-in algorithm, run here
                finder = load_finder(artifact)
                for scan in scans:
                    if time.perf_counter() > deadline:
                        break
                    peaks.append(np.sort(np.asarray(finder.find(scan.two_theta, scan.intensity), dtype=float).ravel()))
            else:  # a network the library brought: its own process, bounded in memory and killed at the deadline
                pairs = [(scan.two_theta, scan.intensity) for scan in scans]
                peaks = sandbox.find_peaks(artifact, pairs, seconds=deadline - time.perf_counter())
        except Exception:  # a finder from storage fails in any way: one probe fewer
            _log.debug("not probed: %s failed", model.model_id, exc_info=True)
            continue
        if len(peaks) < len(scans):  # the budget ran out while it ran: a finder on some scans only is no probe
            _log.debug("not probed: %s ran past the probe budget", model.model_id)
            break
        found.append((model, peaks, time.perf_counter() - started))
    if len(found) < MIN_FINDERS:
        _log.debug("no agreement probes: %d finders measured, %d needed", len(found), MIN_FINDERS)
        return []
    consensus = [_consensus([peaks[i] for _, peaks, _ in found]) for i in range(len(scans))]
    results = []
    for model, peaks, seconds in found:
        value = float(np.mean([f1_at_tolerance(p, c, TOLERANCE_DEG) for p, c in zip(peaks, consensus, strict=True)]))
        results.append(
            ProbeRecord(
                model.model_id,
                QUERY_DATASET,
                KIND_AGREEMENT,
                value,
                seconds,
                f"peak agreement {value:.3f}: mean F1 (±{TOLERANCE_DEG:g}° 2θ) with the consensus of "
                f"{len(found)} probed finders on {len(scans)} of {exemplar.n_items} scans",
            )
        )
    return results


def _consensus(
    peak_sets: Sequence[np.ndarray], tol: float = TOLERANCE_DEG, weights: Sequence[float] | None = None
) -> np.ndarray:
    """The peaks at least half of the finders agree on (sorted 2θ positions).

    `weights` gives finders unequal votes (half of the total weight then decides); the probe uses equal
    votes, which beat the weighted rules tried in `benchmarks/xrd_agreement.py`.

    Every peak a finder reports is a candidate; its support is the number of finders (itself included)
    with a peak within ±`tol` of it. Candidates with support ≥ half the finders are taken strongest first
    (most support, then the tightest agreement, then lowest 2θ), and one within `tol` of a candidate
    already taken is the same peak, so it is dropped. A consensus peak lies at the median of the
    supporting finders' nearest peaks. The window is fixed around each candidate rather than chained
    from peak to peak, so a finder reporting every noise wiggle cannot merge neighbouring peaks into one.
    """
    sets = [np.sort(np.asarray(p, dtype=float).ravel()) for p in peak_sets]
    candidates = np.concatenate(sets) if sets else np.empty(0)
    if not len(candidates):
        return np.empty(0)
    nearest = np.full((len(sets), len(candidates)), np.nan)
    for row, peaks in enumerate(sets):
        if not len(peaks):
            continue
        k = np.searchsorted(peaks, candidates)
        left, right = peaks[np.clip(k - 1, 0, len(peaks) - 1)], peaks[np.clip(k, 0, len(peaks) - 1)]
        closest = np.where(candidates - left <= right - candidates, left, right)
        nearest[row] = np.where(np.abs(closest - candidates) <= tol, closest, np.nan)
    present = ~np.isnan(nearest)
    vote = np.ones(len(sets)) if weights is None else np.asarray(weights, dtype=float)
    support = vote @ present
    spread = np.where(present, np.abs(nearest - candidates), 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1)
    agreed = np.flatnonzero(2 * support >= vote.sum())
    order = agreed[np.lexsort((candidates[agreed], spread[agreed], -support[agreed]))]
    taken: list[float] = []
    positions = []
    for j in order:
        c = float(candidates[j])
        at = bisect.bisect_left(taken, c)
        if (at < len(taken) and taken[at] - c <= tol) or (at > 0 and c - taken[at - 1] <= tol):
            continue
        taken.insert(at, c)
        positions.append(float(np.median(nearest[present[:, j], j])))
    return np.sort(np.asarray(positions)) if positions else np.empty(0)
