"""Planning: the shape cache skips shape-only steps for shapes seen before, and stays correct."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import webinfer


def _reshape_by_runtime_shape() -> bytes:
    """y = Relu(x).reshape(batch*seq, 8) + 1, with the target computed from Shape at run time."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Gather", ["s", "i1"], ["seq"], axis=0),
             helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
             helper.make_node("Mul", ["b", "seq"], ["rows"]),
             helper.make_node("Unsqueeze", ["rows", "ax0"], ["rows1"]),
             helper.make_node("Concat", ["rows1", "eight"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["flat"]),
             helper.make_node("Add", ["flat", "one"], ["y"])]
    inits = [numpy_helper.from_array(np.array(1, np.int64), "i1"), numpy_helper.from_array(np.array(0, np.int64), "i0"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([8], np.int64), "eight"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_shape_cache_skips_shape_steps_and_stays_correct() -> None:
    data = _reshape_by_runtime_shape()
    sess = webinfer.InferenceSession(data)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    cache = sess.plan.shape_cache
    assert cache is not None
    assert [s.node.op_type for s in cache.steps] == ["Relu", "Reshape", "Add"]
    assert sess.get_outputs()[0].shape == ["batch*seq", 8]
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 8), (1, 5, 8), (2, 3, 8), (4, 1, 8), (1, 5, 8)]:
        x = rng.standard_normal(shape).astype(np.float32)
        (ours,) = sess.run(None, {"x": x})
        np.testing.assert_allclose(ours, ref.run(None, {"x": x})[0], rtol=1e-6)
    assert len(cache.entries) == 3


def test_shape_cache_ignores_data_dependent_shapes() -> None:
    """A Shape read after NonZero depends on values, not on feed shapes: no caching."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Shape", ["nz"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    sess = webinfer.InferenceSession(helper.make_model(graph).SerializeToString())
    a = sess.run(None, {"x": np.array([1, 0, 0, 2], np.float32)})[0]
    b = sess.run(None, {"x": np.array([1, 1, 1, 2], np.float32)})[0]
    assert a.tolist() == [1, 2] and b.tolist() == [1, 4]
