"""Adagrad, Adam and Momentum against onnx's reference implementation
(onnxruntime's inference build has no ai.onnx.preview.training ops)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import webinfer

rng = np.random.default_rng(0)
DOMAIN = "ai.onnx.preview.training"


def training_model(op_type: str, feed: dict[str, np.ndarray], n_out: int, name: str = "opt",
                   **attrs: Any) -> onnx.ModelProto:
    node = helper.make_node(op_type, list(feed), [f"y{i}" for i in range(n_out)], domain=DOMAIN, name=name,
                            **attrs)
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in feed.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = helper.make_graph([node], "test", ins, outs)
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                                  helper.make_opsetid(DOMAIN, 1)])


def feed_for(groups: int, shapes: list[tuple[int, ...]], step: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    feed = {"r": np.array(0.1, dtype=dtype), "t": np.array(step, dtype=np.int64)}
    for g in range(groups):
        for i, shape in enumerate(shapes):
            a = rng.standard_normal(shape).astype(dtype)
            feed[f"in{g}_{i}"] = np.abs(a) if g == groups - 1 else a  # the last state is a squared sum
    return feed


@pytest.mark.parametrize("op_type, groups, attrs", [
    ("Adagrad", 3, {"decay_factor": 0.1, "epsilon": 1e-5, "norm_coefficient": 0.01}),
    ("Adam", 4, {"alpha": 0.95, "beta": 0.85, "epsilon": 1e-2, "norm_coefficient": 0.001,
                 "norm_coefficient_post": 0.02}),
    ("Momentum", 3, {"alpha": 0.9, "beta": 0.5, "mode": "standard", "norm_coefficient": 0.01}),
    ("Momentum", 3, {"alpha": 0.9, "beta": 1.0, "mode": "nesterov", "norm_coefficient": 0.0}),
])
@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize("shapes", [[(5,)], [(2, 3), (4,)]])
def test_optimizers(op_type: str, groups: int, attrs: dict[str, Any], step: int,
                    shapes: list[tuple[int, ...]]) -> None:
    feed = feed_for(groups, shapes, step)
    model = training_model(op_type, feed, (groups - 1) * len(shapes), **attrs)
    options = webinfer.SessionOptions(strict_shape_checks=True)
    ours = webinfer.InferenceSession(model.SerializeToString(), options).run(None, feed)
    ref = ReferenceEvaluator(model).run(None, feed)
    for a, b in zip(ours, ref):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_double_precision_kept() -> None:
    feed = feed_for(3, [(4,)], 2, np.float64)
    model = training_model("Adagrad", feed, 2)
    out = webinfer.InferenceSession(model.SerializeToString()).run(None, feed)
    assert [o.dtype for o in out] == [np.float64, np.float64]


def test_wrong_input_count_names_node() -> None:
    feed = feed_for(3, [(4,)], 1)
    feed["extra"] = np.ones(4, np.float32)
    model = training_model("Momentum", feed, 2, alpha=0.9, beta=0.1, mode="standard", norm_coefficient=0.0)
    with pytest.raises(webinfer.ShapeInferenceError, match=r"Momentum node 'opt'.*got 6 inputs and 2 outputs"):
        webinfer.InferenceSession(model.SerializeToString())


def test_bad_momentum_mode_names_node() -> None:
    feed = feed_for(3, [(4,)], 1)
    model = training_model("Momentum", feed, 2, alpha=0.9, beta=0.1, mode="heavy", norm_coefficient=0.0)
    with pytest.raises(webinfer.WebinferError, match=r"Momentum node 'opt'.*mode must be 'standard' or 'nesterov'"):
        webinfer.InferenceSession(model.SerializeToString())
