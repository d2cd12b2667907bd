"""Estimator checkpoints in the storage service: the trained weights of a library's GNN and what they fit.

A checkpoint is one blob (`torch.save` of plain containers and tensors, read back with
`weights_only=True`, so loading one never runs code) named by the pointer `estimators/<library>/<name>`.
It keeps only what training produced: the members' parameters, the blend's weights, the kNN member's choices on
held-out datasets (`KnnChoices`), the config, and the graph they were trained at. Everything else (node features,
edges, the precomputed embeddings, the ONNX query module) is rebuilt from the graph when it is loaded, which is
also how trained weights serve a newer graph version of the same import without a refit.

The kNN's choices make a replica that restores the checkpoint serve what the replica that trained serves: the
same choices on any graph version of the import (a refresh keeps them), without choosing again (three quarters of
a kNN fit's time). A checkpoint of format 3 (before the choices were kept) still loads: its kNN then chooses on
the graph it is put on, as it did then (the same choices on the training's own graph, as the kNN's choice is
deterministic; perhaps other ones on a newer graph).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modsnet.runtime.errors import NotFound
from modsnet.runtime.stubs import StorageClient

from .estimators.blend import BlendWeights
from .estimators.knn import KnnChoices

log = logging.getLogger(__name__)

# 2: with the interval scale; 3: the blend's weights (and its scale); 4: the kNN's choices
FORMAT = "modsnet-estimator-checkpoint/4"
READABLE = ("modsnet-estimator-checkpoint/3", FORMAT)  # a 3 has no kNN's choices (None)


def pointer_name(library: str, estimator: str) -> str:
    return f"estimators/{library}/{estimator.replace('/', '-')}"


def models_digest(model_ids: Sequence[str]) -> str:
    """Which models, in which order, the weights score: a checkpoint of other models is not used."""
    return hashlib.sha256("\n".join(model_ids).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    library: str
    estimator: str
    bundle_blob_id: str  # the import the weights were trained on (content address of its bundle)
    models_digest: str
    graph_version: int  # trained at
    interactions: int  # in the graph at that version
    trained_unix: float
    train_seconds: float
    config: dict[str, Any]
    weights: list[dict[str, torch.Tensor]]
    # The served blend's weights per kind of query and σ multiplier (`BlendWeights.to_dict`, estimators/blend.py),
    # learned with calibration on held-out datasets.
    blend: dict[str, Any]
    # What the kNN member chose on held-out datasets at the training (`KnnChoices.to_dict`); None: it chooses on
    # the graph the checkpoint is put on (a checkpoint of format 3).
    knn_choices: dict[str, Any] | None = None

    @property
    def choices(self) -> KnnChoices | None:
        return None if self.knn_choices is None else KnnChoices.from_dict(self.knn_choices)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, **self.__dict__}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        state = torch.load(io.BytesIO(data), weights_only=True)
        if not isinstance(state, dict) or state.pop("format", None) not in READABLE:
            raise ValueError(f"not a {FORMAT} blob")
        checkpoint = cls(**state)
        BlendWeights.from_dict(checkpoint.blend)  # weights that cannot serve: refused here, so training anew
        if checkpoint.knn_choices is not None:
            KnnChoices.from_dict(checkpoint.knn_choices)  # choices a kNN cannot fit with: refused likewise
        return checkpoint


def save(storage: StorageClient, checkpoint: Checkpoint) -> str:
    """Store the checkpoint and point `estimators/<library>/<name>` at it; the blob id."""
    blob = storage.put_bytes(checkpoint.to_bytes(), name=f"{checkpoint.library}-checkpoint.pt")
    storage.set_pointer(pointer_name(checkpoint.library, checkpoint.estimator), blob.blob_id)
    return blob.blob_id


def load(storage: StorageClient, library: str, estimator: str) -> Checkpoint | None:
    """The library's latest checkpoint, or None when there is none or it cannot be read (then: retrain)."""
    try:
        blob_id = storage.get_pointer(pointer_name(library, estimator))
        checkpoint = Checkpoint.from_bytes(storage.get_bytes(blob_id))
    except NotFound:
        return None
    except (ValueError, TypeError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        log.warning("checkpoint of %s unreadable (%s): training anew", library, error)
        return None
    if checkpoint.library != library or checkpoint.estimator != estimator:
        log.warning("checkpoint under %s is for %s/%s: ignored", library, checkpoint.library, checkpoint.estimator)
        return None
    return checkpoint
