"""Probes and runs of ImageZoo models on a user's images: the library's protocol on a sample of the upload.

A probe fits each chosen model's head on the encoder's embeddings of the images the upload's loader
already decoded and scores it by the library's 3-fold stratified CV (`modsnet.models.image.evaluate`); the
sample is embedded once per encoder, so several heads on one encoder cost one embedding. Labels are the class
folders. Where the loader decoded the library's protocol sample (`Limits.protocol_images` = `ROW_CAP`: what the
query service asks), the probe measures on it and reads what the library would record for the upload (`whole`:
the search takes it as a full measurement); else on the features' sample (at most
`modsnet.features.image.SAMPLE_IMAGES`, at least 4 a class), a noisy reading. On 200 digits the features'
sample of 128 read 0.806-0.816 for four mobilenet heads the protocol scores 0.874-0.879, and the search, taking
those as readings near predictions of 0.93, showed them 0.823-0.904 ± 0.008-0.028: none held the truth.
`modsnet run` (`run_image`) decodes up to `ROW_CAP` images, as the library did, and can save the head fitted on all
of them (`.npz`, no pickle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modsnet.data.graph import QUERY_DATASET, LibraryInfo, ModelNode, ProbeRecord

if TYPE_CHECKING:
    from modsnet.data.exemplar import Exemplar
    from modsnet.models.image import ImageModel

__all__ = ["image_model_of", "labelled_sample", "measure_image", "run_image"]

_log = logging.getLogger(__name__)


def image_model_of(library: LibraryInfo, model: ModelNode) -> ImageModel | None:
    """The ImageZoo model `model` stands for, when this version rebuilds it exactly; else None.

    The library must be an image library in balanced accuracy; where models.csv describes the model
    (encoder, estimator, params) the description must match, so another library's model sharing an id
    does not qualify. Without a description only a library named 'imagezoo' qualifies.
    """
    from modsnet.models.heads import zoo_model_of
    from modsnet.models.image import image_model

    built: ImageModel | None = zoo_model_of(library, model, modality="image", build=image_model, builtin="imagezoo")
    return built


def labelled_sample(exemplar: Exemplar) -> tuple[list[np.ndarray], list[str]] | None:
    """The decoded images a model is measured on (the protocol sample where the loader decoded one, else the
    features' sample) and their labels, classes with fewer than `FOLDS` images left out; None when fewer than two
    classes remain (or the images are unlabelled)."""
    from modsnet.models.image import FOLDS

    if not exemplar.labels:
        return None
    protocol = bool(exemplar.protocol_rows)
    rows = exemplar.protocol_rows if protocol else exemplar.image_rows
    images = exemplar.protocol_images if protocol else exemplar.images
    labels = [exemplar.labels[i] for i in rows]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    keep = [i for i, label in enumerate(labels) if counts[label] >= FOLDS]
    if len({labels[i] for i in keep}) < 2:
        return None
    return [images[i] for i in keep], [labels[i] for i in keep]


def measure_image(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    deadline: float,
    seed: int,
) -> list[ProbeRecord]:
    """Probe each model (with its artifact: a transfer model's trunk) on a sample of the exemplar until `deadline`."""
    from modsnet.models.heads import artifact_trunk
    from modsnet.models.image import FOLDS, embed, evaluate

    chosen = [(model, image_model_of(library, model), artifact) for model, artifact in models]
    if not any(built for _, built, _ in chosen):
        return []
    sample = labelled_sample(exemplar)
    if sample is None:
        _log.debug("no image probes on %s: unlabelled, or fewer than two classes of %d images", exemplar.name, FOLDS)
        return []
    images, labels = sample
    protocol = bool(exemplar.protocol_rows)  # the library's own protocol: a full measurement, not a reading
    embedded: dict[str, tuple[np.ndarray, float]] = {}
    results = []
    for model, built, artifact in chosen:
        if time.perf_counter() >= deadline:
            break
        if built is None:
            continue
        runnable, trunk = artifact_trunk(built, model.model_id, artifact)
        if not runnable:
            continue
        started = time.perf_counter()
        encoder_id = built.encoder.encoder_id
        if encoder_id not in embedded:
            embed(encoder_id, images[:1])  # the network's one-off export and load are no per-image cost
            begun = time.perf_counter()
            vectors = embed(encoder_id, images)
            embedded[encoder_id] = (vectors, (time.perf_counter() - begun) / len(images))
        vectors, per_image = embedded[encoder_id]
        result = evaluate(
            built,
            images,
            labels,
            seed=seed,
            embeddings=vectors,
            encode_seconds_per_image=per_image,
            deadline=deadline,
            trunk=trunk,
        )
        if result.get("status") != "ok":
            _log.debug("not probed: %s %s %s", model.model_id, result.get("status"), result.get("error", ""))
            continue
        value = float(result["score"])
        results.append(
            ProbeRecord(
                model.model_id,
                QUERY_DATASET,
                "score",
                value,
                time.perf_counter() - started,
                f"balanced accuracy {value:.3f} by {FOLDS}-fold CV on {len(images)} of {exemplar.n_items} images"
                + (", as the library measures" if protocol else ""),
                whole=protocol,
            )
        )
    return results


def run_image(
    model: ModelNode, library: LibraryInfo, file: Path, *, save: Path | None = None, artifact: bytes | None = None
) -> str:
    """Cross-validate an ImageZoo model on the user's labelled images as the library did; optionally save the head.

    A transfer model runs with the trunk of its `artifact` (the library's .npz), frozen, as the library ran it.
    """
    from modsnet.data.exemplar import Limits, load_exemplar
    from modsnet.models.heads import required_trunk
    from modsnet.models.image import FOLDS, ROW_CAP, evaluate, fit_artifact
    from modsnet.runtime.errors import InvalidArgument, NotFound

    built = image_model_of(library, model)
    if built is None:
        raise NotFound(f"{model.model_id!r} is not an ImageZoo model this version can rebuild")
    trunk = required_trunk(built, model.model_id, artifact)
    exemplar = load_exemplar(file, name=file.name, modality="image", limits=Limits(decode_images=ROW_CAP))
    if not exemplar.labels:
        raise InvalidArgument(
            f"{file.name}: the images are not labelled (put each class in a folder named after it): "
            "cannot cross-validate"
        )
    sample = labelled_sample(exemplar)
    if sample is None:
        raise InvalidArgument(f"{file.name}: fewer than two classes with {FOLDS} images each: cannot cross-validate")
    images, labels = sample
    result = evaluate(built, images, labels, seed=0, trunk=trunk)
    if result.get("status") != "ok":
        return f"{model.model_id} on {file.name}: {result.get('status')} {result.get('error', '')}"
    lines = [
        f"{model.model_id} on {file.name} ({len(set(labels))} classes from folders, {len(images)} of "
        f"{exemplar.n_items} images, {FOLDS}-fold stratified CV): balanced accuracy {result['score']:.3f}, "
        f"accuracy {result['accuracy']:.3f}, fit {result['train_seconds']:.3f} s per fold"
    ]
    if save is not None:
        save.write_bytes(fit_artifact(built, images, labels, trunk))
        lines.append(f"head fitted on all {len(images)} images written to {save} (NumPy .npz, no pickle)")
    return "\n".join(lines)
