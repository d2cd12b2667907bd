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
from .network import QueryScorer

# torch.onnx.export flags the whole process as exporting (`GLOBALS.in_onnx_export`) and asserts that no
# other export is running: a search's export and the background retrain's must take turns.
EXPORT_LOCK = threading.Lock()
# A newer graph may hold more dataset nodes (and another import other models): their counts are axes too.
DYNAMIC_AXES = {"dataset_weights": {1: "nodes"}, "model_index": {0: "edges"}, "model_weights": {1: "edges"}}


def export_onnx(
    module: QueryScorer,
    example: Mapping[str, np.ndarray],
    path: str | Path | io.BytesIO,
    *,
    feature_names: Sequence[str],
    config: GnnConfig,
) -> None:
    """Write `module` as ONNX (opset 18, the legacy exporter), traced on `example` inputs (the module's own, in its
    order: `INPUTS`, and for the sparse GNN's `prior` after them), wiring as metadata.

    Constants are not folded by the exporter (ONNX Runtime folds them when it loads the model): each of the
    module's buffers, the library side of the graph, stays an initializer of its own name, so a newer graph
    under the same weights is this model with other initializers (`with_constants`), not a new export.
    """
    names = list(example)
    args = tuple(torch.from_numpy(example[k]) for k in names)
    target: Any = path  # a path or a file-like object: torch takes both
    with EXPORT_LOCK, warnings.catch_warnings():  # the legacy exporter announces its deprecation; it works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            args,
            target,
            input_names=names,
            output_names=["mean_z", "std_z"],
            dynamic_axes={**DYNAMIC_AXES, **({"prior": {1: "models"}} if "prior" in names else {})},
            opset_version=18,
            dynamo=False,
            do_constant_folding=False,
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


def with_constants(model: bytes, module: QueryScorer) -> bytes | None:
    """`model` (exported from a module with the same parameters) with `module`'s buffers as its initializers:
    the query module of a newer graph under the same weights, without tracing it again. None when `model`
    holds an initializer that is not a buffer of `module` or a parameter of equal value (other weights)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(model)
    buffers = dict(module.named_buffers())
    parameters = dict(module.named_parameters())
    for init in proto.graph.initializer:
        if init.name in buffers:
            init.CopyFrom(numpy_helper.from_array(buffers[init.name].detach().numpy(), init.name))
        elif init.name not in parameters or not np.array_equal(
            numpy_helper.to_array(init), parameters[init.name].detach().numpy()
        ):
            return None
    return proto.SerializeToString()


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
        self.inputs = [i.name for i in self.session.get_inputs()]  # `INPUTS`, and the sparse GNN's `prior`

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.run_module(inputs)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def run_module(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The module's outputs as it gives them (float32): no float64 copies of every model's values."""
        mean, std = self.session.run(None, {k: np.asarray(inputs[k]) for k in self.inputs})
        return np.asarray(mean), np.asarray(std)
