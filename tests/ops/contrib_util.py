"""Models over onnxruntime's com.microsoft ops, run in both runtimes (single-threaded onnxruntime)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

import webinfer

MS = "com.microsoft"


def contrib_model(nodes: Sequence[onnx.NodeProto], feed: dict[str, np.ndarray], outputs: Sequence[str],
                  initializers: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    """A model over `nodes` importing com.microsoft, its inputs typed exactly like the feed."""
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feed.items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), "contrib", ins, outs, inits)
    return helper.make_model(graph, ir_version=8,
                             opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])


def run_pair(model: onnx.ModelProto, feed: dict[str, np.ndarray],
             level: int = webinfer.GraphOptimizationLevel.ORT_ENABLE_ALL) -> tuple[list[Any], list[Any]]:
    """(webinfer's outputs with strict shape checks, single-threaded onnxruntime's); `level` BASIC runs
    the ops' own kernels where a fusion would rewrite them."""
    data = model.SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feed)
    options = webinfer.SessionOptions(strict_shape_checks=True, graph_optimization_level=level)
    ours = webinfer.InferenceSession(data, options).run(None, feed)
    return ours, ref


def one_node(op_type: str, feed: dict[str, np.ndarray], initializers: dict[str, np.ndarray] | None = None,
             inputs: Sequence[str] | None = None, n_out: int = 1,
             level: int = webinfer.GraphOptimizationLevel.ORT_ENABLE_ALL, **attrs: Any) -> tuple[list[Any], list[Any]]:
    """Run one com.microsoft node in both runtimes (webinfer at optimization `level`); `inputs` orders
    the names ('' = absent)."""
    names = list(inputs) if inputs is not None else list(feed) + list(initializers or {})
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, domain=MS, name="n", **attrs)
    return run_pair(contrib_model([node], feed, outs, initializers), feed, level)


def assert_quantized_equal(ours: np.ndarray, ref: np.ndarray) -> None:
    """Quantized outputs: same dtype, shape and values (the kernels follow onnxruntime's arithmetic)."""
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (ours.dtype, ours.shape, ref.dtype, ref.shape)
    np.testing.assert_array_equal(ours, ref)


def run_ours(op_type: str, feed: dict[str, np.ndarray], initializers: dict[str, np.ndarray] | None = None,
             inputs: Sequence[str] | None = None, n_out: int = 1, **attrs: Any) -> list[Any]:
    """Load and run one com.microsoft node in webinfer alone: for the errors it must raise."""
    names = list(inputs) if inputs is not None else list(feed) + list(initializers or {})
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, domain=MS, name="n", **attrs)
    model = contrib_model([node], feed, outs, initializers)
    options = webinfer.SessionOptions(strict_shape_checks=True)
    return webinfer.InferenceSession(model.SerializeToString(), options).run(None, feed)
