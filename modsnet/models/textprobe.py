"""Probes and runs of TextZoo models on a user's texts: the library's protocol on the upload.

A probe measures a model as the library measured its datasets: its head fitted on the encoder's embeddings
of the same stratified sample of at most `ROW_CAP` labelled texts (at least `FOLDS` per class, seed 0) that
`modsnet run` (`run_text`) and a library build draw, and scored by the library's 3-fold stratified CV
(`modsnet.models.text.evaluate`). So a probe reads the score the library would record for the upload, and
the search takes it as a full measurement (`ProbeRecord.whole`). On 200 texts, as probes read before, heads
scored 0.05-0.15 under their protocol scores on the held-out food reviews (400 and 1,000 texts: less to fit
on), which no TextZoo record could correct.

An encoder embeds the sample once per search: a search probes one model a round (each chosen given the
last), and the worker keeps the last embeddings for the next round (`_EMBEDDED`). A transformer's embedding
is the costly part (MiniLM-L6 about 5 s for 400 reviews, 12 s for 1,000 on an idle core), so within a call
the cheap encoders go first, and a transformer's embedding is given up as soon as its pace says it cannot
finish in the time left (`embed_by`): its heads are left out, never read on a smaller sample, and the
search's next round picks another model. `modsnet run` can also save the head fitted on all the texts
(`.npz`, no pickle).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.data.graph import QUERY_DATASET, LibraryInfo, ModelNode, ProbeRecord

if TYPE_CHECKING:
    from modsnet.data.exemplar import Exemplar
    from modsnet.models.text import TextModel

__all__ = ["PROTOCOL_SEED", "measure_text", "run_text", "text_model_of"]

PROTOCOL_SEED = 0  # the sample's and the folds' seed: a library build's (`python -m modsnet.offline.zoo.text --seed`)
# Embeddings of the last protocol samples, per encoder: a search probes in rounds (one model each, given the last),
# each round a call in the worker process that took the last (the pool hands out the last idle one), so a second
# head on an encoder costs its fit, not the embedding again. 1,000 texts at 384 floats: 1.5 MB an entry.
_EMBEDDED: collections.OrderedDict[tuple[str, str], tuple[np.ndarray, float]] = collections.OrderedDict()
_EMBEDDED_KEPT = 4
_EMBEDDED_LOCK = threading.Lock()  # searches share it in one process where no worker pool runs them
# ... and the seconds that were too few to embed a sample (`embed_by` gave up): a later round, with fewer, skips
# that encoder's heads at once instead of timing it again on a chunk.
_TOO_FEW_SECONDS: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
_log = logging.getLogger(__name__)


def text_model_of(library: LibraryInfo, model: ModelNode) -> TextModel | None:
    """The TextZoo model `model` stands for, when this version rebuilds it exactly; else None.

    The library must be a text library in balanced accuracy; where models.csv describes the model
    (encoder, estimator, params) the description must match, so another library's model sharing an id
    does not qualify. Without a description only a library named 'textzoo' qualifies.
    """
    from modsnet.models.heads import zoo_model_of
    from modsnet.models.text import text_model

    built: TextModel | None = zoo_model_of(library, model, modality="text", build=text_model, builtin="textzoo")
    return built


def _sample(texts: Sequence[str], labels: Sequence[str], size: int, seed: int) -> tuple[list[str], list[str]] | None:
    """A stratified sample with every class at `FOLDS`+ texts, or None when fewer than two classes qualify."""
    import pandas as pd

    from modsnet.features.tabular import stratified_sample
    from modsnet.models.text import FOLDS

    if not labels:
        return None
    codes, _ = pd.factorize(pd.Series(list(labels), dtype=object))
    rows = stratified_sample(codes, size, seed, min_per_class=FOLDS)
    picked = pd.Series([labels[i] for i in rows])
    counts = picked.value_counts()
    keep = [i for i, label in zip(rows, picked, strict=True) if counts[label] >= FOLDS]
    if len({labels[i] for i in keep}) < 2:
        return None
    return [texts[i] for i in keep], [labels[i] for i in keep]


def measure_text(
    library: LibraryInfo,
    exemplar: Exemplar,
    models: Sequence[tuple[ModelNode, bytes | None]],
    deadline: float,
    seed: int,
) -> list[ProbeRecord]:
    """Measure each model (with its artifact: a transfer model's trunk) on the upload as the library measures,
    until `deadline`; the probes come back in the order asked. `seed` is unused: the protocol has its own."""
    from modsnet.models.heads import artifact_trunk
    from modsnet.models.text import FOLDS, ROW_CAP, TRANSFORMERS, evaluate

    del seed
    chosen = [(model, text_model_of(library, model), artifact) for model, artifact in models]
    if not any(built for _, built, _ in chosen):
        return []
    sample = _sample(exemplar.texts, exemplar.labels, ROW_CAP, PROTOCOL_SEED)
    if sample is None:
        _log.debug("no text probes on %s: unlabelled, or fewer than two classes of %d texts", exemplar.name, FOLDS)
        return []
    texts, labels = sample
    # Cheap encoders first: a transformer that takes the rest of the time then costs no other probe.
    runs = sorted(
        ((i, model, built, artifact) for i, (model, built, artifact) in enumerate(chosen) if built is not None),
        key=lambda run: run[2].encoder.encoder_id in TRANSFORMERS,
    )
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    embedded: dict[str, tuple[np.ndarray, float] | None] = {}
    results: dict[int, ProbeRecord] = {}
    for i, model, built, artifact in runs:
        if time.perf_counter() >= deadline:
            break
        runnable, trunk = artifact_trunk(built, model.model_id, artifact)
        if not runnable:
            continue
        started = time.perf_counter()
        vectors, per_text = None, 0.0
        encoder_id = built.encoder.encoder_id
        if built.encoder.kind == "dense":
            if encoder_id not in embedded:
                embedded[encoder_id] = _embedded(encoder_id, texts, digest, deadline)
            done = embedded[encoder_id]
            if done is None:
                _log.debug("not probed: %s (%s cannot embed %d texts in time)", model.model_id, encoder_id, len(texts))
                continue
            vectors, per_text = done
        result = evaluate(
            built,
            texts,
            labels,
            seed=PROTOCOL_SEED,
            embeddings=vectors,
            encode_seconds_per_text=per_text,
            deadline=deadline,
            trunk=trunk,
        )
        if result.get("status") != "ok":
            _log.debug("not probed: %s %s %s", model.model_id, result.get("status"), result.get("error", ""))
            continue
        value = float(result["score"])
        results[i] = ProbeRecord(
            model.model_id,
            QUERY_DATASET,
            "score",
            value,
            time.perf_counter() - started,
            f"balanced accuracy {value:.3f} by {FOLDS}-fold CV on {len(texts)} of {exemplar.n_items} texts, "
            "as the library measures",
            whole=True,
        )
    return [results[i] for i in sorted(results)]


def _embedded(encoder_id: str, texts: list[str], digest: str, deadline: float) -> tuple[np.ndarray, float] | None:
    """`embed_by`, kept for the next round of the same search (`_EMBEDDED`); None (not kept) where it gave up."""
    from modsnet.models.text import embed_by

    key = (encoder_id, digest)
    left = deadline - time.perf_counter()
    with _EMBEDDED_LOCK:
        if key in _EMBEDDED:
            _EMBEDDED.move_to_end(key)
            return _EMBEDDED[key]
        if left <= _TOO_FEW_SECONDS.get(key, 0.0):
            return None
    done = embed_by(encoder_id, texts, deadline)
    with _EMBEDDED_LOCK:
        kept: collections.OrderedDict[tuple[str, str], Any] = _TOO_FEW_SECONDS if done is None else _EMBEDDED
        kept[key] = left if done is None else done
        kept.move_to_end(key)
        while len(kept) > _EMBEDDED_KEPT:
            kept.popitem(last=False)
    return done


def run_text(
    model: ModelNode,
    library: LibraryInfo,
    file: Path,
    *,
    target: str = "",
    save: Path | None = None,
    artifact: bytes | None = None,
) -> str:
    """Cross-validate a TextZoo model on the user's labelled texts as the library did; optionally save the head.

    A transfer model runs with the trunk of its `artifact` (the library's .npz), frozen, as the library ran it.
    """
    from modsnet.data.exemplar import load_exemplar
    from modsnet.models.heads import required_trunk
    from modsnet.models.text import FOLDS, ROW_CAP, evaluate, fit_artifact
    from modsnet.runtime.errors import InvalidArgument, NotFound

    built = text_model_of(library, model)
    if built is None:
        raise NotFound(f"{model.model_id!r} is not a TextZoo model this version can rebuild")
    trunk = required_trunk(built, model.model_id, artifact)
    exemplar = load_exemplar(file, name=file.name, modality="text", target=target)
    if not exemplar.labels:
        raise InvalidArgument(f"{file.name}: no label column (name one with --target): cannot cross-validate")
    sample = _sample(exemplar.texts, exemplar.labels, ROW_CAP, PROTOCOL_SEED)
    if sample is None:
        raise InvalidArgument(f"{file.name}: fewer than two classes with {FOLDS} texts each: cannot cross-validate")
    texts, labels = sample
    result = evaluate(built, texts, labels, seed=PROTOCOL_SEED, trunk=trunk)
    if result.get("status") != "ok":
        return f"{model.model_id} on {file.name}: {result.get('status')} {result.get('error', '')}"
    lines = [
        f"{model.model_id} on {file.name} (labels {exemplar.target or 'from folders'!r}, {len(texts)} of "
        f"{exemplar.n_items} texts, {FOLDS}-fold stratified CV): balanced accuracy {result['score']:.3f}, "
        f"accuracy {result['accuracy']:.3f}, fit {result['train_seconds']:.3f} s per fold"
    ]
    if save is not None:
        save.write_bytes(fit_artifact(built, texts, labels, trunk))
        lines.append(f"head fitted on all {len(texts)} texts written to {save} (NumPy .npz, no pickle)")
    return "\n".join(lines)
