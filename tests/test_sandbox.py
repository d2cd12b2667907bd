"""Neural peak finders from a library run in a child process bounded in memory and time
(`modsnet.models.sandbox`): a model that allocates past its budget or runs past its time fails there,
and the service process carries on."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from modsnet.models import sandbox
from modsnet.models.peaks import METADATA_KEY, load_finder

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "modsnet" / "libraries" / "xrdzoo" / "artifacts" / "cnn-all-fold0.onnx"
SCAN = (np.linspace(10, 80, 5000), np.random.default_rng(0).random(5000))


def hog(floats: int) -> bytes:
    """An ONNX 'peak finder' that fills `floats` 4-byte floats before answering."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, floats])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceMax", ["big"], ["m"], keepdims=1),
        helper.make_node("Mul", ["x", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "hog",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: json.dumps({"grid_step": 0.02, "threshold": 0.5})})
    return bytes(model.SerializeToString())


def test_a_finder_in_the_sandbox_finds_what_it_finds_in_process() -> None:
    artifact = CNN.read_bytes()
    expected = np.sort(load_finder(artifact).find(*SCAN))
    (found,) = sandbox.find_peaks(artifact, [SCAN], seconds=60)
    np.testing.assert_array_equal(found, expected)


def test_a_finder_allocating_past_its_memory_fails_in_its_own_process() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(sandbox.find_peaks(hog(1 << 20), [SCAN], seconds=60, memory_bytes=256 << 20)[0]) > 0  # 4 MiB: fine
    with pytest.raises(sandbox.SandboxError):
        sandbox.find_peaks(hog(1 << 29), [SCAN], seconds=60, memory_bytes=256 << 20)  # 2 GiB: refused
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 * 1024  # this process never held it


def test_a_finder_past_its_time_is_killed() -> None:
    with pytest.raises(sandbox.SandboxError, match="ran past"):
        sandbox.find_peaks(CNN.read_bytes(), [SCAN] * 2000, seconds=0.5)
