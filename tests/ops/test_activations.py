"""The one activation table (webinfer/activations.py): every row, standalone and fused into MatMul and Conv,
against onnxruntime on random data (the GPU's: tests/gpu/test_activations_gpu.py).

Tolerances: 1e-5 relative and absolute (float32; the GPU's exp/tanh/erf are a few ulp).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import webinfer
from webinfer.activations import ACTIVATIONS

RNG = np.random.default_rng(11)
OPSET = 20  # Gelu's opset; every other source op exists there

#: Attributes to try per source op (not the defaults, which the plain node tests).
ATTRS: dict[str, dict[str, Any]] = {"LeakyRelu": {"alpha": 0.2}, "HardSigmoid": {"alpha": 0.3, "beta": 0.4}}
#: The domains onnxruntime runs (webinfer's own ops are checked through their ONNX sources).
ORT_DOMAINS = ("", "com.microsoft")
#: Every source op of the table that onnxruntime can run: (domain, op_type).
ONNX_ROWS = [(domain, op) for spec in ACTIVATIONS.values() for domain, op, _ in spec.sources if domain in ORT_DOMAINS]


def act_node(domain: str, op: str, x: str, attrs: dict[str, Any]) -> onnx.NodeProto:
    if op == "Clip":
        return helper.make_node("Clip", [x, "lo", "hi"], ["y"])
    return helper.make_node(op, [x], ["y"], domain=domain, **attrs)


def model(nodes: list[onnx.NodeProto], x_shape: tuple[int, ...], inits: dict[str, np.ndarray]) -> bytes:
    inits = {**inits, "lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def check(data: bytes, x: np.ndarray, fused_op: str | None, providers: list[str] | None = None) -> None:
    sess = webinfer.InferenceSession(data, providers=providers)
    if fused_op is not None:
        assert [n.op_type for n in sess.graph.nodes] == [fused_op]
    if providers == ["webgpu"]:
        assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    ours = sess.run(None, {"x": x})[0]
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("domain, op", ONNX_ROWS)
@pytest.mark.parametrize("with_attrs", [False, True])
def test_activation_fuses_into_matmul(domain: str, op: str, with_attrs: bool) -> None:
    """MatMul + Add(bias) + the activation becomes one webinfer.FusedMatMul, equal to the three nodes."""
    w, b = RNG.standard_normal((16, 12)).astype(np.float32), RNG.standard_normal(12).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             act_node(domain, op, "a", ATTRS.get(op, {}) if with_attrs else {})]
    x = (RNG.standard_normal((3, 5, 16)) * 2).astype(np.float32)
    check(model(nodes, x.shape, {"w": w, "b": b}), x, "FusedMatMul")


@pytest.mark.parametrize("domain, op", ONNX_ROWS)
def test_activation_fuses_into_conv(domain: str, op: str) -> None:
    """Conv + the activation becomes one webinfer.FusedConv, equal to the two nodes."""
    w = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             act_node(domain, op, "c", ATTRS.get(op, {}))]
    x = RNG.standard_normal((2, 4, 7, 7)).astype(np.float32)
    check(model(nodes, x.shape, {"w": w}), x, "FusedConv")


def test_every_row_is_registered_and_has_a_gpu_kernel() -> None:
    """Each source op of the table is an op of the registry and of the GPU's kernel table."""
    from webinfer.devices.gpu.kernels import KERNELS
    from webinfer.ops import REGISTRY
    for spec in ACTIVATIONS.values():
        for domain, op, _ in spec.sources:
            assert (domain, op) in REGISTRY.ops and (domain, op) in KERNELS, (domain, op)


@pytest.mark.parametrize("attrs", [{}, {"alpha": 1.2}])
def test_quick_gelu(attrs: dict[str, Any]) -> None:
    """com.microsoft.QuickGelu, x * sigmoid(alpha * x) with alpha 1.702 by default, against onnxruntime (which
    has it) and the formula in float64, on random data of a wide range (the GPU: test_activations_gpu.py)."""
    x = (RNG.standard_normal((3, 7, 5)) * 4).astype(np.float32)
    check(model([act_node("com.microsoft", "QuickGelu", "x", attrs)], x.shape, {}), x, None)
    sess = webinfer.InferenceSession(model([act_node("com.microsoft", "QuickGelu", "x", attrs)], x.shape, {}))
    x64 = x.astype(np.float64)
    want = x64 / (1 + np.exp(-attrs.get("alpha", 1.702) * x64))
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-6, atol=1e-6)
