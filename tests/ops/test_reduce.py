"""Reductions, ArgMax/ArgMin, softmax family and the loss ops against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import WebinferError

from .util import check_node, make_model

RNG = np.random.default_rng(11)

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def positive(*shape: int) -> np.ndarray:
    """Values in [0.5, 1.5): LogSum stays finite, Prod stays well scaled."""
    return (RNG.random(shape) + 0.5).astype(np.float32)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_attribute_and_input(op: str, keepdims: int) -> None:
    x = positive(2, 3, 4)
    check_node(op, {"x": x}, opset=11, rtol=1e-5, axes=[0, -1], keepdims=keepdims)
    check_node(op, {"x": x}, opset=18, rtol=1e-5, initializers={"axes": np.array([1], np.int64)},
               keepdims=keepdims)
    check_node(op, {"x": x}, opset=18, rtol=1e-5, keepdims=keepdims)


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_noop_with_empty_axes(op: str) -> None:
    check_node(op, {"x": positive(3, 4)}, opset=18, rtol=1e-5, noop_with_empty_axes=1,
               initializers={"axes": np.array([], np.int64)})


def test_reduce_axes_fed_at_run_time() -> None:
    check_node("ReduceSum", {"x": positive(2, 3, 4), "axes": np.array([2, 0], np.int64)}, opset=13, keepdims=0,
               rtol=1e-5)
    check_node("ReduceMax", {"x": positive(2, 3, 4), "axes": np.array([1], np.int64)}, opset=18)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceSumSquare",
                                "ReduceL1", "ReduceLogSumExp"])
def test_reduce_empty_set(op: str) -> None:
    check_node(op, {"x": np.zeros((2, 0, 4), np.float32)}, opset=18,
               initializers={"axes": np.array([1], np.int64)})


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceMean"])
def test_reduce_ints(op: str, dtype: type) -> None:
    check_node(op, {"x": RNG.integers(-9, 9, size=(3, 4, 2)).astype(dtype)}, opset=11, axes=[1])


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_bool(op: str) -> None:
    check_node(op, {"x": RNG.random((3, 4)) > 0.5}, opset=20, initializers={"axes": np.array([1], np.int64)})


def test_reduce_float16() -> None:
    x = RNG.standard_normal((4, 64)).astype(np.float16)
    check_node("ReduceSum", {"x": x}, opset=13, rtol=2e-3, atol=2e-3, initializers={"axes": np.array([1])})
    check_node("ReduceMean", {"x": x}, opset=13, rtol=2e-3, atol=2e-3, axes=[1])


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("attrs", [{}, {"axis": 1, "keepdims": 0}, {"axis": -1, "select_last_index": 1},
                                   {"axis": 0, "keepdims": 0, "select_last_index": 1}])
def test_arg_extremes(op: str, attrs: dict) -> None:
    x = RNG.integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # many ties
    check_node(op, {"x": x}, opset=13, **attrs)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, 1), (11, -1), (11, 0), (13, 1), (13, -1), (13, 0)])
def test_softmax_family(op: str, opset: int, axis: int) -> None:
    x = (RNG.standard_normal((2, 3, 4)) * 5).astype(np.float32)
    check_node(op, {"x": x}, opset=opset, rtol=1e-5, atol=1e-5, axis=axis)


def test_softmax_large_values_and_float16() -> None:
    check_node("Softmax", {"x": np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]], np.float32)})
    x = RNG.standard_normal((3, 16)).astype(np.float16)
    check_node("Softmax", {"x": x}, rtol=2e-3, atol=2e-4)
    check_node("LogSoftmax", {"x": x}, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("op", ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted,ignore_index", [(False, None), (True, None), (False, 1), (True, -1)])
def test_losses(op: str, reduction: str, weighted: bool, ignore_index: int | None) -> None:
    scores = RNG.standard_normal((3, 5, 2, 2)).astype(np.float32)
    if op == "NegativeLogLikelihoodLoss":
        scores = -np.abs(scores)
    target = RNG.integers(0, 5, size=(3, 2, 2)).astype(np.int64)
    if ignore_index is not None:
        target[0, 0, 0] = ignore_index
    inputs = {"x": scores, "t": target}
    if weighted:
        inputs["w"] = (RNG.random(5) + 0.1).astype(np.float32)
    attrs = {"reduction": reduction} | ({"ignore_index": ignore_index} if ignore_index is not None else {})
    n_out = 2 if op == "SoftmaxCrossEntropyLoss" else 1
    check_node(op, inputs, n_outputs=n_out, opset=13, rtol=1e-5, atol=1e-5, **attrs)


def _session(node: object, inputs: dict[str, np.ndarray], opset: int = 18) -> webinfer.InferenceSession:
    model = make_model([node], inputs, ["y"], opset)
    return webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))


def test_bad_inputs_name_the_node() -> None:
    node = helper.make_node("ReduceSum", ["x"], ["y"], name="r1", axes=[3])
    with pytest.raises(WebinferError, match=r"ReduceSum node 'r1'.*axes \[3\].*\[2,3\]"):
        _session(node, {"x": positive(2, 3)}, opset=11)
    node = helper.make_node("ReduceMax", ["x", "axes"], ["y"], name="r2")
    sess = _session(node, {"x": positive(2, 3), "axes": np.array([0, 1], np.int64)})
    with pytest.raises(WebinferError, match=r"ReduceMax node 'r2'.*axes \[0, 0\]"):
        sess.run(None, {"x": positive(2, 3), "axes": np.array([0, 0], np.int64)})
    node = helper.make_node("Softmax", ["x"], ["y"], name="s1", axis=2)
    with pytest.raises(WebinferError, match=r"Softmax node 's1'.*axis 2.*rank 2"):
        _session(node, {"x": positive(2, 3)})
    node = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["y"], name="l1", reduction="average")
    with pytest.raises(WebinferError, match=r"SoftmaxCrossEntropyLoss node 'l1'.*'average'"):
        _session(node, {"x": positive(2, 3), "t": np.array([0, 2], np.int64)})
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="l2")
    sess = _session(node, {"x": positive(2, 3), "t": np.array([0, 2], np.int64)})
    with pytest.raises(WebinferError, match=r"NegativeLogLikelihoodLoss node 'l2'.*\[0, 3\)"):
        sess.run(None, {"x": positive(2, 3), "t": np.array([0, 7], np.int64)})
