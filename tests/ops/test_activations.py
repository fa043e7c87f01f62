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
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("webinfer", 1)]
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


#: The quantised rows (no source op: passes/quant_fusion.py attaches them) and, for QuantizeGridThen, the
#: inner row its `activation_then` names.
QUANTIZED_ROWS = [("QuantizeGrid", None), ("QuantizeGridScaled", None),
                  *(("QuantizeGridThen", inner) for inner in ("HardSwish", "HardSigmoid", "Relu"))]


def quantized_case(name: str, inner: str | None) -> tuple[bytes, bytes, np.ndarray]:
    """A webinfer.FusedMatMul with a quantised activation, the QDQ chain it stands for (uint8 grids:
    product -> Q(1, z) -> DQ(s, z) [-> inner -> Q(s2, z2) -> DQ(1, z2)]) for onnxruntime, and an input."""
    w, b = (RNG.standard_normal((16, 12)) * 4).astype(np.float32), (RNG.standard_normal(12) * 8).astype(np.float32)
    z, s, z2, s2 = 100, 0.05, 30, 0.011
    attrs: dict[str, Any] = {"activation": name, "activation_min": -z, "activation_max": 255 - z}
    inits = {"w": w, "b": b, "one": np.array(1, np.float32), "z": np.array(z, np.uint8),
             "s": np.array(s if name != "QuantizeGrid" else 1, np.float32)}
    chain = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("QuantizeLinear", ["a", "one", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y" if inner is None else "d"])]
    if name != "QuantizeGrid":
        attrs["activation_scale"] = s
    if inner is not None:
        inner_attrs = {"alpha": 0.3, "beta": 0.4} if inner == "HardSigmoid" else {}
        attrs.update({"activation_then": inner, "activation_out_scale": s2, "activation_out_min": -z2,
                      "activation_out_max": 255 - z2, **{f"activation_{k}": v for k, v in inner_attrs.items()}})
        inits.update({"s2": np.array(s2, np.float32), "z2": np.array(z2, np.uint8)})
        chain += [helper.make_node(inner, ["d"], ["h"], **inner_attrs),
                  helper.make_node("QuantizeLinear", ["h", "s2", "z2"], ["q2"]),
                  helper.make_node("DequantizeLinear", ["q2", "one", "z2"], ["y"])]
    fused = [helper.make_node("FusedMatMul", ["x", "w", "b"], ["y"], domain="webinfer", **attrs)]
    x = (RNG.standard_normal((4, 16)) * 2).astype(np.float32)
    return model(fused, x.shape, {"w": w, "b": b}), model(chain, x.shape, inits), x


def check_quantized(name: str, inner: str | None, providers: list[str] | None = None) -> None:
    """The fused row against onnxruntime's chain: the same grid values, but for one step on at most 5% of
    them (a product within float32 rounding of a half step may round the other way)."""
    fused, chain, x = quantized_case(name, inner)
    sess = webinfer.InferenceSession(fused, providers=providers)
    if providers == ["webgpu"]:
        assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    got = sess.run(None, {"x": x})[0]
    want = ort.InferenceSession(chain, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    step = 0.05 if name == "QuantizeGridScaled" else 1.0
    steps = np.abs(got.astype(np.float64) - want) / step
    assert np.all(np.abs(got / step - np.rint(got / step)) < 1e-3), "the output is not on the grid"
    assert steps.max() <= 1.001 and np.mean(steps > 0.5) <= 0.05, steps.max()
    assert len(np.unique(want)) > 10  # the data spans the grid, not one saturated value


@pytest.mark.parametrize("name, inner", QUANTIZED_ROWS)
def test_quantized_rows(name: str, inner: str | None) -> None:
    check_quantized(name, inner)


def test_composition_needs_a_known_inner_row() -> None:
    """A composition naming an inner row it is not built around is an error naming the node and the choices."""
    fused, _, x = quantized_case("QuantizeGridThen", "HardSwish")
    bad = onnx.load_from_string(fused)
    for a in bad.graph.node[0].attribute:
        if a.name == "activation_then":
            a.s = b"Tanh"
    with pytest.raises(webinfer.errors.WebinferError, match="activation_then 'Tanh'.*HardSwish, HardSigmoid, Relu"):
        webinfer.InferenceSession(bad.SerializeToString()).run(None, {"x": x})
