"""Run a recommended model on the user's own data (`modsnet run MODEL_ID FILE`).

Runs in the client's process on the artifact fetched (checksum-verified) from storage, so the user's data
never has to travel: an XRD peak finder prints the peaks it finds in each scan; a TabZoo setting is fitted
and scored by the same stratified cross-validation that measured the library, on a bounded sample; a TextZoo
model (encoder + head) likewise on the user's labelled texts (`modsnet.models.textprobe.run_text`), and an
ImageZoo model on the user's folder or zip of images, one sub-folder per class (`modsnet.models.imageprobe.run_image`);
a transfer model of either runs with the trunk its artifact holds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from modsnet.data.exemplar import load_exemplar
from modsnet.data.graph import LibraryInfo, ModelNode
from modsnet.runtime.errors import FailedPrecondition, InvalidArgument, NotFound


def run_xrd(model: ModelNode, artifact: bytes, file: Path) -> str:
    from modsnet.models.peaks import load_finder  # onnxruntime and scipy: only when a finder runs

    exemplar = load_exemplar(file, name=file.name, modality="xrd")
    finder = load_finder(artifact)
    lines = [f"{model.model_id} on {file.name}:"]
    for number, scan in enumerate(exemplar.scans, start=1):
        peaks = np.sort(np.asarray(finder.find(scan.two_theta, scan.intensity), dtype=float))
        heights = np.interp(peaks, scan.two_theta, scan.intensity) if len(peaks) else np.zeros(0)
        lines.append(
            f"scan {number}: {len(peaks)} peaks" + (f" (wavelength {scan.wavelength:g} Å)" if scan.wavelength else "")
        )
        header = "  2θ (deg)    intensity" + ("    d (Å)" if scan.wavelength else "")
        lines.append(header)
        for position, height in zip(peaks, heights, strict=True):
            row = f"  {position:9.3f}  {height:11.1f}"
            if scan.wavelength:
                row += f"  {scan.wavelength / (2 * math.sin(math.radians(position / 2))):8.4f}"
            lines.append(row)
    return "\n".join(lines)


def run_tabular(model: ModelNode, file: Path, target: str = "") -> str:
    from modsnet.features.tabular import infer_target, read_table, stratified_sample
    from modsnet.models.tabular import FOLDS, ROW_CAP, TARGET, evaluate, model_settings

    settings = {s.model_id: s for s in model_settings()}
    if model.model_id not in settings:
        raise NotFound(f"{model.model_id!r} is not a TabZoo setting this version can rebuild")
    table = read_table(file, name=file.name)
    column = infer_target(table, target or None, name=file.name)
    table = table.rename(columns={column: TARGET}) if column != TARGET else table
    codes, _ = pd.factorize(table[TARGET])
    sample = table.iloc[stratified_sample(codes, ROW_CAP, 0)]
    counts = sample[TARGET].value_counts()
    sample = sample[sample[TARGET].isin(counts.index[counts >= FOLDS])].reset_index(drop=True)
    if sample[TARGET].nunique() < 2:
        raise InvalidArgument(f"{file.name}: fewer than two classes with {FOLDS} rows each: cannot cross-validate")
    result = evaluate(settings[model.model_id], sample, seed=0, timeout=60.0)
    if result.get("status") != "ok":
        return f"{model.model_id} on {file.name}: {result.get('status')} (recorded as chance level)"
    return (
        f"{model.model_id} on {file.name} (target {column!r}, {len(sample)} of {len(table)} rows, "
        f"{FOLDS}-fold stratified CV): balanced accuracy {result['score']:.3f}, accuracy {result['accuracy']:.3f}, "
        f"fit {result['train_seconds']:.3f} s per fold"
    )


def run_model(
    model: ModelNode,
    modality: str,
    artifact: bytes | None,
    file: Path,
    *,
    target: str = "",
    library: LibraryInfo | None = None,
    save: Path | None = None,
) -> str:
    if not file.exists():
        raise InvalidArgument(f"{file}: no such file")
    if modality == "xrd":
        if artifact is None:
            raise NotFound(f"model {model.model_id!r} has no runnable artifact")
        return run_xrd(model, artifact, file)
    if modality == "tabular" and model.library == "tabzoo":
        return run_tabular(model, file, target)
    if modality == "text" and library is not None:
        from modsnet.models.textprobe import run_text  # encoders load only when a text model runs

        return run_text(model, library, file, target=target, save=save, artifact=artifact)
    if modality == "image" and library is not None:
        from modsnet.models.imageprobe import run_image  # encoders load only when an image model runs

        return run_image(model, library, file, save=save, artifact=artifact)
    raise FailedPrecondition(
        f"running {modality} models of library {model.library!r} here is not supported: "
        "download the artifact with `modsnet model download` instead"
    )
