"""Planning: the shape cache skips shape-only steps for shapes seen before, and stays correct;
kernels write into a dead input's buffer (consuming variants) only where nothing else can see it."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
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


def _residual_model(use: str, group: int) -> bytes:
    """y = Relu(Conv(x) + r), r = Sigmoid(t): fusion makes r the Conv's residual; `use` says what else sees r.

    dead: nothing; output: r is also a model output; later: a later node
    reads r; view: a Reshape of r (a view of its buffer), read before the
    Conv, is a model output; feed: r is the model input t itself.
    """
    r = "t" if use == "feed" else "r"
    nodes = [] if use == "feed" else [helper.make_node("Sigmoid", ["t"], ["r"])]
    outputs = ["y"]
    if use == "view":
        nodes.append(helper.make_node("Reshape", ["r", "flat"], ["v"]))
        outputs.append("v")
    nodes += [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group),
              helper.make_node("Add", ["c", r], ["s"]),
              helper.make_node("Relu", ["s"], ["y"])]
    if use == "output":
        outputs.append("r")
    if use == "later":
        nodes.append(helper.make_node("Mul", ["r", "r"], ["z"]))
        outputs.append("z")
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8 // group, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    if use == "view":
        inits.append(numpy_helper.from_array(np.array([2, -1], np.int64), "flat"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 5, 5]),
                                           helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 16, 5, 5])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _count_consuming_runs(sess: Any) -> list[int]:
    """Wrap every consuming variant of the plan with a call counter; returns [planned variants, calls]."""
    counts = [0, 0]

    def counted(variant: Any) -> Any:
        def run(*args: Any) -> Any:
            counts[1] += 1
            return variant(*args)
        return run

    for step in sess.plan.steps:
        if step.consume is not None:
            counts[0] += 1
            step.consume = (step.consume[0], counted(step.consume[1]))
    return counts


@pytest.mark.parametrize("use, consumed", [("dead", True), ("output", False), ("later", False), ("view", False),
                                           ("feed", False)])
@pytest.mark.parametrize("group", [1, 2])
def test_conv_consumes_its_residual_only_when_nothing_else_sees_it(use: str, consumed: bool, group: int) -> None:
    """The fused Conv accumulates into a residual that dies with it; every other holder keeps its values."""
    data = _residual_model(use, group)
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((2, 8, 5, 5)).astype(np.float32),
            "t": rng.standard_normal((2, 16, 5, 5)).astype(np.float32)}
    kept = {k: v.copy() for k, v in feed.items()}
    sess = webinfer.InferenceSession(data)
    assert [s.node.op_type for s in sess.plan.steps].count("FusedConv") == 1
    counts = _count_consuming_runs(sess)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    for _ in range(2):
        ours = sess.run(None, feed)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for k in feed:
        np.testing.assert_array_equal(feed[k], kept[k])
    assert counts[1] == (2 if consumed else 0)
    # r's slot dies at the Conv in these; the view and the caller's feed are seen at run time
    assert counts[0] == (1 if use in ("dead", "view", "feed") else 0)
