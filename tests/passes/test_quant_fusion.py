"""passes/quant_fusion.py: onnxruntime's quantisation patterns fused, the numbers kept.

The dynamic chain's fused op must give bit for bit what the unfused graph
gives; the static QDQ rewrite runs the float graph's arithmetic in another
order, so its quantised values may differ by one step where a value lies
within float32 rounding of a half step: bounded below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer

RNG = np.random.default_rng(12)


def _sessions(model: onnx.ModelProto) -> tuple[webinfer.InferenceSession, webinfer.InferenceSession]:
    """The model fused (all optimizations) and unfused (folding and cleanup only)."""
    data = model.SerializeToString()
    return (webinfer.InferenceSession(data),
            webinfer.InferenceSession(data, webinfer.SessionOptions(graph_optimization_level=1)))


def _ops(sess: webinfer.InferenceSession) -> list[str]:
    return [f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in sess._main.graph.nodes]


def _dynamic_model(k: int, n: int, bias: bool, per_channel: bool) -> onnx.ModelProto:
    """onnxruntime's quantize_dynamic chain for x [2, 7, k] @ W [k, n] (+ b)."""
    w = RNG.integers(-127, 128, (k, n)).astype(np.int8)
    wz = (RNG.integers(-3, 4, n) if per_channel else np.zeros(())).astype(np.int8)
    ws = (RNG.random(n if per_channel else ()) * 0.01 + 0.001).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wz, "wz"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(RNG.standard_normal(n).astype(np.float32), "b")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["xs", "ws"], ["s"]),
             helper.make_node("Mul", ["accf", "s"], ["y" if not bias else "yb"])]
    if bias:
        nodes.append(helper.make_node("Add", ["b", "yb"], ["y"]))
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("k,n,bias,per_channel", [(384, 33, True, True), (1537, 17, True, False),
                                                  (64, 5, False, True)])
def test_dynamic_matmul_fused_bit_exact(k: int, n: int, bias: bool, per_channel: bool) -> None:
    model = _dynamic_model(k, n, bias, per_channel)
    fused, plain = _sessions(model)
    assert sorted(_ops(fused)) == ["Mul", "webinfer.DynamicQuantizeToGrid", "webinfer.MatMulIntegerScaled"]
    assert "MatMulInteger" in _ops(plain)
    x = RNG.standard_normal((2, 7, k)).astype(np.float32) * 3
    got, want = fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * float(np.abs(ref).max()))


def test_dynamic_matmul_not_fused_when_scale_is_a_matrix() -> None:
    """A Mul by something of rank 2 would broadcast differently: the chain stays as it is."""
    model = _dynamic_model(40, 6, False, True)
    ws = next(i for i in model.graph.initializer if i.name == "ws")
    ws.CopyFrom(numpy_helper.from_array((RNG.random((7, 6)) * 0.01).astype(np.float32), "ws"))
    fused, plain = _sessions(model)
    assert "MatMulInteger" in _ops(fused)
    x = RNG.standard_normal((2, 7, 40)).astype(np.float32)
    np.testing.assert_array_equal(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0])


def _float_cnn(path: Path) -> None:
    """Three convs (3x3 padded, strided 1x1, depthwise 3x3) with Relu, a residual Add, and a Gemm head."""
    def conv_init(name: str, shape: tuple[int, ...]) -> list[onnx.TensorProto]:
        return [numpy_helper.from_array((RNG.standard_normal(shape) * 0.2).astype(np.float32), name),
                numpy_helper.from_array((RNG.standard_normal(shape[0]) * 0.1).astype(np.float32), name + "_b")]

    inits = conv_init("w1", (16, 3, 3, 3)) + conv_init("w2", (16, 16, 1, 1)) + conv_init("w3", (16, 1, 3, 3)) + [
        numpy_helper.from_array((RNG.standard_normal((16, 10)) * 0.3).astype(np.float32), "fc"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "w1", "w1_b"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "w2_b"], ["c2"], strides=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "w3_b"], ["c3"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("Add", ["c3", "r1"], ["s"]),
             helper.make_node("Relu", ["s"], ["r3"]),
             helper.make_node("GlobalAveragePool", ["r3"], ["p"]),
             helper.make_node("Reshape", ["p", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 13, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _float_mlp(path: Path) -> None:
    """MatMul -> Add -> Relu -> MatMul on [2, 5, 24]: the QDQ MatMul path."""
    inits = [numpy_helper.from_array((RNG.standard_normal((24, 32)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((RNG.standard_normal(32) * 0.1).astype(np.float32), "b1"),
             numpy_helper.from_array((RNG.standard_normal((32, 7)) * 0.3).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"]), helper.make_node("Add", ["m", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 7])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _qdq_model(tmp_path: Path, mlp: bool = False, qoperator: bool = False) -> onnx.ModelProto:
    """The float CNN or MLP through onnxruntime's quantize_static, in QDQ or QOperator format."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src, out = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    (_float_mlp if mlp else _float_cnn)(src)
    shape = (2, 5, 24) if mlp else (1, 3, 13, 11)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"x": RNG.standard_normal(shape).astype(np.float32)} for _ in range(3)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    fmt = QuantFormat.QOperator if qoperator else QuantFormat.QDQ
    quantize_static(str(src), str(out), Reader(), quant_format=fmt, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(out))


def _conv_outputs_within_one_step(model: onnx.ModelProto, fused: Any, plain: Any
                                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """On 4 random inputs of the CNN: each quantised conv output (outputs 1...) of `fused` is within one
    step of `plain`'s on at most 2% of its elements, and the logits (output 0) agree with onnxruntime's
    top-1; yields (fused, plain) logits per input for the caller's own bound on them."""
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal((1, 3, 13, 11)).astype(np.float32)
        got, want, theirs = fused.run(None, {"x": x}), plain.run(None, {"x": x}), ref.run(None, {"x": x})
        for g, w in zip(got[1:], want[1:]):
            assert g.dtype == w.dtype == np.uint8
            diff = np.abs(g.astype(np.int32) - w.astype(np.int32))
            assert diff.max() <= 1 and np.mean(diff != 0) <= 0.02
        assert np.argmax(got[0]) == np.argmax(theirs[0])
        yield got[0], want[0]


def test_qdq_conv_fused_within_one_step(tmp_path: Path) -> None:
    """Every conv is fused; each quantised tensor the graph outputs differs from the unfused graph's by at
    most one step, on at most 2% of its elements; the logits stay within two steps of the last
    quantisation and agree with onnxruntime's top-1."""
    model = _qdq_model(tmp_path)
    # expose the quantised output of every Conv's QuantizeLinear, to compare them one by one
    conv_q = [n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"
              and any(m.op_type == "Conv" and m.output[0] == n.input[0] for m in model.graph.node)]
    assert len(conv_q) == 3
    model.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in conv_q)
    fused, plain = _sessions(model)
    assert "webinfer.FusedConv" in _ops(fused) and all(n.attrs.get("activation") == "QuantizeGrid"
                                                       for n in fused._main.graph.nodes if n.op_type == "FusedConv")
    for got, want in _conv_outputs_within_one_step(model, fused, plain):
        np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()))


def test_qdq_matmul_fused_within_one_step(tmp_path: Path) -> None:
    """QDQ MatMuls become FusedMatMuls on the grid; the float output stays within two steps of its
    quantisation of the unfused graph's, and within a few of onnxruntime's."""
    model = _qdq_model(tmp_path, mlp=True)
    fused, plain = _sessions(model)
    ops = _ops(fused)
    assert "MatMul" not in ops and ops.count("webinfer.FusedMatMul") == 2 and "QuantizeLinear" not in ops
    # the first product's real values feed the bias Add: its epilogue scales them (QuantizeGridScaled)
    assert {n.attrs.get("activation") for n in fused._main.graph.nodes if n.op_type == "FusedMatMul"} \
        >= {"QuantizeGridScaled"}
    step = float(numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "y_scale")))
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = RNG.standard_normal((2, 5, 24)).astype(np.float32)
    got, want = fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0]
    assert np.max(np.abs(got - want)) <= 2 * step * 1.0001
    assert np.max(np.abs(got - ref.run(None, {"x": x})[0])) <= 3 * step * 1.0001


#: The QOperator ops expand_qoperator rewrites (the others stay: their kernels are exact lookups).
_EXPANDED = {"QLinearConv", "QLinearMatMul", "com.microsoft.QGemm", "com.microsoft.QLinearAdd",
             "com.microsoft.QLinearMul", "com.microsoft.QLinearGlobalAveragePool"}


def _output_step(model: onnx.ModelProto) -> float:
    """The scale of the DequantizeLinear giving the model's first output: one step of its values."""
    dq = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    assert dq.op_type == "DequantizeLinear"
    return float(numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == dq.input[1])))


def test_qoperator_cnn_expanded_and_fused_within_one_step(tmp_path: Path) -> None:
    """The QOperator file (QLinearConv, QLinearAdd, QLinearGlobalAveragePool, QGemm) takes the QDQ fast
    path: no QOperator node is left, every conv is a FusedConv on the grid.  Each QLinearConv output
    differs from the unfused graph's (onnxruntime's kernels, op tests) by at most one step, on at most
    2% of its elements; the logits stay within two output steps and agree with onnxruntime's top-1."""
    model = _qdq_model(tmp_path, qoperator=True)
    ops = [f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in model.graph.node]
    assert {"QLinearConv", "com.microsoft.QLinearAdd", "com.microsoft.QLinearGlobalAveragePool",
            "com.microsoft.QGemm"} <= set(ops)
    conv_q = [n.output[0] for n in model.graph.node if n.op_type == "QLinearConv"]
    assert len(conv_q) == 3
    model.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in conv_q)
    fused, plain = _sessions(model)
    assert not _EXPANDED & set(_ops(fused)) and _ops(fused).count("webinfer.FusedConv") == 3
    step = _output_step(model)
    for got, want in _conv_outputs_within_one_step(model, fused, plain):
        assert np.max(np.abs(got - want)) <= 2 * step * 1.0001


def test_qoperator_matmul_expanded_and_fused_within_one_step(tmp_path: Path) -> None:
    """QLinearMatMul and QLinearAdd become FusedMatMuls on the grid; the output stays within two
    steps of the unfused graph's (onnxruntime's kernels)."""
    model = _qdq_model(tmp_path, mlp=True, qoperator=True)
    assert "QLinearMatMul" in {n.op_type for n in model.graph.node}
    fused, plain = _sessions(model)
    ops = _ops(fused)
    assert not _EXPANDED & set(ops) and ops.count("webinfer.FusedMatMul") == 2
    x = RNG.standard_normal((2, 5, 24)).astype(np.float32)
    got, want = fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0]
    assert np.max(np.abs(got - want)) <= 2 * _output_step(model) * 1.0001


def test_qlinear_conv_with_fed_weight_not_expanded() -> None:
    """A QLinearConv whose weight is fed, not constant, keeps its own kernel: exact against onnxruntime."""
    x = RNG.integers(0, 256, (1, 4, 7, 6)).astype(np.uint8)
    w = RNG.integers(-128, 128, (5, 4, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("xs", np.array(0.05, np.float32)), ("xz", np.array(120, np.uint8)), ("ws", np.array(0.02, np.float32)),
        ("wz", np.array(0, np.int8)), ("ys", np.array(0.7, np.float32)), ("yz", np.array(100, np.uint8))]]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape),
                                                helper.make_tensor_value_info("w", TensorProto.INT8, w.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fused, _ = _sessions(model)
    assert _ops(fused) == ["QLinearConv"]
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(fused.run(None, {"x": x, "w": w})[0], ref.run(None, {"x": x, "w": w})[0])


# ------------------------------------------------------------ float16 graphs computed in float32

def _half_mlp(keep_io_types: bool) -> onnx.ModelProto:
    """MatMul + bias + Gelu-like Erf chain + LayerNormalization in float16, converted by onnxruntime's
    own float16 tool (as transformers.js makes model_fp16.onnx)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    inits = [numpy_helper.from_array((RNG.standard_normal((24, 40)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(RNG.standard_normal(40).astype(np.float32), "b"),
             numpy_helper.from_array(np.ones(40, np.float32), "g"), numpy_helper.from_array(np.zeros(40, np.float32), "z"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Erf", ["a"], ["e"]), helper.make_node("Mul", ["e", "half"], ["h"]),
             helper.make_node("Add", ["h", "a"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g", "z"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 40])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return convert_float_to_float16(model, keep_io_types=keep_io_types)


@pytest.mark.parametrize("keep_io_types", [True, False])
def test_float16_graph_runs_in_float32(keep_io_types: bool) -> None:
    """No float16 value is left inside the optimized graph (outside the casts at its edges); outputs
    have the declared type and match onnxruntime within float16's tolerance."""
    model = _half_mlp(keep_io_types)
    sess = webinfer.InferenceSession(model.SerializeToString())
    io = np.float32 if keep_io_types else np.float16
    inner = [v for n in sess._main.graph.nodes if n.op_type != "Cast" for v in n.inputs + n.outputs
             if v and isinstance(sess._main.types.types.get(v), webinfer.ir.TensorType)
             and sess._main.types.types[v].elem == TensorProto.FLOAT16]
    assert inner == [], inner
    assert all(t.array.dtype != np.float16 for t in sess._main.graph.initializers.values())
    x = RNG.standard_normal((3, 24)).astype(io)
    got = sess.run(None, {"x": x})[0]
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == ref.dtype == io
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_dequantize_pair_becomes_grid_bit_exact(dtype: type) -> None:
    """QuantizeLinear read only by DequantizeLinear with its own parameters -> webinfer.QuantizeToGrid and
    grid * scale: the same numbers, saturation included (inputs beyond the range)."""
    zp = np.array(17 if dtype == np.uint8 else -9, dtype)
    inits = [numpy_helper.from_array(np.array(0.037, np.float32), "s"), numpy_helper.from_array(zp, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 50])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 50])], inits)
    fused, plain = _sessions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert "webinfer.QuantizeToGrid" in _ops(fused) and "QuantizeLinear" not in _ops(fused)
    x = (RNG.standard_normal((4, 50)) * 8).astype(np.float32)
    x[0, :4] = [0.037 * 0.5, -0.037 * 1.5, 1e6, -1e6]  # ties and saturation
    np.testing.assert_array_equal(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0])


@pytest.mark.parametrize("act", ["HardSwish", "HardSigmoid"])
def test_qdq_conv_activation_chain_fused(act: str) -> None:
    """DQ -> Conv -> Q -> DQ -> HardSwish/HardSigmoid -> Q -> DQ: one Conv whose QuantizeGridThen activation
    does the chain in cache; the result within one output step of the unfused graph's, on at most 2% of
    the elements."""
    rng = np.random.default_rng(21)
    s = {n: numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
         (("s0", 0.02), ("s1", 0.031), ("s2", 0.011))}
    z = {n: numpy_helper.from_array(np.array(v, np.uint8), n) for n, v in (("z0", 128), ("z1", 120), ("z2", 30))}
    w = numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32), "w")
    nodes = [helper.make_node("DequantizeLinear", ["x", "s0", "z0"], ["xd"]),
             helper.make_node("Conv", ["xd", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s1", "z1"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "s1", "z1"], ["cd"]),
             helper.make_node(act, ["cd"], ["a"]),
             helper.make_node("QuantizeLinear", ["a", "s2", "z2"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "s2", "z2"], ["y"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 9, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 9, 7])],
                              [w, *s.values(), *z.values()])
    fused, plain = _sessions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert _ops(fused) == ["DequantizeLinear", "webinfer.FusedConv", "Mul"]  # shift the input, the chain, grid * s2
    assert fused._main.graph.nodes[1].attrs["activation"] == "QuantizeGridThen"
    x = rng.integers(0, 256, (1, 4, 9, 7)).astype(np.uint8)
    got, want = fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0]
    steps = np.abs(got - want) / np.float32(0.011)
    assert steps.max() <= 1.001 and np.mean(steps > 0.5) <= 0.02
