"""ONNX export of the query module (with its wiring as metadata) and scoring under ONNX Runtime."""

from __future__ import annotations

import io
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import NAME, GnnConfig
from .network import INPUTS, QueryScorer

# torch.onnx.export flags the whole process as exporting (`GLOBALS.in_onnx_export`) and asserts that no
# other export is running: a search's export and the background retrain's must take turns.
EXPORT_LOCK = threading.Lock()


def export_onnx(
    module: QueryScorer,
    example: Mapping[str, np.ndarray],
    path: str | Path | io.BytesIO,
    *,
    feature_names: Sequence[str],
    config: GnnConfig,
) -> None:
    """Write `module` as ONNX (opset 18, the legacy exporter), traced on `example` inputs, wiring as metadata."""
    args = tuple(torch.from_numpy(example[k]) for k in INPUTS)
    target: Any = path  # a path or a file-like object: torch takes both
    with EXPORT_LOCK, warnings.catch_warnings():  # the legacy exporter announces its deprecation; it works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            target,
            input_names=list(INPUTS),
            output_names=["mean_z", "std_z"],
            dynamic_axes={"model_index": {0: "edges"}, "model_weights": {1: "edges"}},
            opset_version=18,
            dynamo=False,
        )
    import onnx

    if isinstance(path, io.BytesIO):
        path.seek(0)
        model = onnx.load_model(path)
    else:
        model = onnx.load(str(path))
    meta = {
        "modsnet.estimator": NAME,
        "modsnet.data_relations": json.dumps([r[1] for r in module.data_relations]),
        "modsnet.model_relations": json.dumps([r[1] for r in module.model_relations]),
        "modsnet.feature_names": json.dumps(list(feature_names)),
        "modsnet.config": json.dumps(asdict(config)),
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    if isinstance(path, io.BytesIO):
        path.seek(0)
        path.truncate()
        path.write(model.SerializeToString())
    else:
        onnx.save(model, str(path))


class OnnxScorer:
    """The exported query module under ONNX Runtime: CUDA when the machine has it, CPU otherwise."""

    def __init__(self, model: str | Path | bytes, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one query is small; threads cost more than they bring
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, sess_options=options, providers=list(providers))
        self.providers = self.session.get_providers()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.data_relations: list[str] = json.loads(meta.get("modsnet.data_relations", "[]"))
        self.model_relations: list[str] = json.loads(meta.get("modsnet.model_relations", "[]"))

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.session.run(None, {k: np.asarray(inputs[k]) for k in INPUTS})
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
