"""The layout pass: Transposes sink through layout-agnostic ops and inverse pairs cancel, exactly.

Each graph is an NHWC island pattern as the TFLite loader writes it; the
rewritten graph must compute the same values (onnxruntime on the original
ONNX graph is the reference, random normal inputs, 1e-6 relative) and hold
the stated number of Transposes.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import webinfer
from webinfer.loader import read_model
from webinfer.passes.cleanup import remove_dead, remove_identities
from webinfer.passes.layout import sink_transposes

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _model(nodes: list, inits: list, x_shape: list[int], y_shape: list[int] | None = None) -> bytes:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _transposes_after(data: bytes) -> list[list[int]]:
    graph = remove_dead(remove_identities(sink_transposes(read_model(data).graph)))
    return [n.attrs["perm"] for n in graph.nodes if n.op_type == "Transpose"]


def _check(data: bytes, x_shape: list[int]) -> None:
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = webinfer.InferenceSession(data).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))


def _island(i: int, src: str, dst: str) -> list:
    """NHWC src -> Transpose -> a 1x1 MaxPool (a layout-sensitive op, standing in for a conv) ->
    Transpose back -> NHWC dst."""
    return [helper.make_node("Transpose", [src], [f"t{i}"], perm=TO_NCHW),
            helper.make_node("MaxPool", [f"t{i}"], [f"r{i}"], kernel_shape=[1, 1]),
            helper.make_node("Transpose", [f"r{i}"], [dst], perm=TO_NHWC)]


def test_inverse_pair_cancels() -> None:
    nodes = [*_island(0, "x", "a"), *_island(1, "a", "y")]
    data = _model(nodes, [], [1, 4, 5, 3])
    assert _transposes_after(data) == [TO_NCHW, TO_NHWC]
    _check(data, [1, 4, 5, 3])


def test_sinks_through_add_with_a_channel_constant_and_residual() -> None:
    """NHWC Add of two islands' outputs and a per-channel constant [3]: runs in NCHW with the constant
    made [1, 3, 1, 1]; one Transpose in, one out."""
    bias = numpy_helper.from_array(np.arange(3, dtype=np.float32), "bias")
    nodes = [*_island(0, "x", "a"), *_island(1, "a", "b"),
             helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Add", ["s", "bias"], ["u"]),
             *_island(2, "u", "y")]
    data = _model(nodes, [bias], [1, 4, 5, 3])
    assert _transposes_after(data) == [TO_NCHW, TO_NHWC]
    _check(data, [1, 4, 5, 3])


def test_sinks_through_concat_pad_and_reduce_mean() -> None:
    pads = numpy_helper.from_array(np.array([0, 1, 2, 0, 0, 0, 1, 3], np.int64), "pads")
    nodes = [*_island(0, "x", "a"), *_island(1, "x", "b"),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=3),
             helper.make_node("Pad", ["c", "pads"], ["p"], mode="constant"),
             helper.make_node("ReduceMean", ["p"], ["m"], axes=[1, 2], keepdims=1),
             *_island(2, "m", "y")]
    data = _model(nodes, [pads], [1, 4, 5, 3])
    # the two islands' own input Transposes stay; the three ops between them run in NCHW
    assert _transposes_after(data) == [TO_NCHW, TO_NCHW, TO_NHWC]
    _check(data, [1, 4, 5, 3])


def test_stops_at_reshape() -> None:
    """Reshape reads memory order: the Transpose back to NHWC must stay before it."""
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [*_island(0, "x", "a"), helper.make_node("Reshape", ["a", "shape"], ["y"])]
    data = _model(nodes, [shape], [1, 4, 5, 3])
    assert _transposes_after(data) == [TO_NCHW, TO_NHWC]
    _check(data, [1, 4, 5, 3])


def test_mixed_layouts_are_left_alone() -> None:
    """An Add of a transposed tensor and an untransposed one of the same shape has nothing to gain."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Add", ["t", "x"], ["y"])]
    data = _model(nodes, [], [1, 4, 4, 3])
    assert _transposes_after(data) == [[0, 2, 1, 3]]
    _check(data, [1, 4, 4, 3])


def test_elementwise_chain_between_islands_leaves_no_transpose() -> None:
    """Transpose -> Relu -> Transpose back: the pair meets through the Relu and both go."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=TO_NCHW), helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=TO_NHWC)]
    data = _model(nodes, [], [1, 4, 5, 3])
    assert _transposes_after(data) == []
    _check(data, [1, 4, 5, 3])


def test_sinks_through_per_tensor_quantize_dequantize() -> None:
    """QDQ between islands (TFLite's int8 tensors): per-tensor QuantizeLinear/DequantizeLinear are
    elementwise, so the pair around them cancels."""
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(3, np.int8), "zero")
    nodes = [*_island(0, "x", "a"), helper.make_node("QuantizeLinear", ["a", "scale", "zero"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["d"]), *_island(1, "d", "y")]
    data = _model(nodes, [scale, zero], [1, 4, 5, 3])
    assert _transposes_after(data) == [TO_NCHW, TO_NHWC]
    _check(data, [1, 4, 5, 3])
