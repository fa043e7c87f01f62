"""Compare one node (or a small model) between webinfer and onnxruntime on random data."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

import webinfer


def make_model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, np.ndarray], outputs: Sequence[str],
               opset: int = 21, initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A model over `nodes` whose inputs are typed (with exact shapes) like the given arrays."""
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(n) for n in outputs]
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), "test", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def load_node(node: onnx.NodeProto, inputs: dict[str, np.ndarray], opset: int,
              initializers: dict[str, np.ndarray] | None = None) -> webinfer.InferenceSession:
    """A session (strict shape checks on) over the one `node`, whose outputs are the model's: for the
    errors a node raises when the model loads."""
    model = make_model([node], inputs, list(node.output), opset, initializers)
    return webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))


def strided_mode() -> bool:
    """Whether this run hands kernels non-contiguous inputs (`--strided`, see tests/conftest.py):
    layouts then differ, and with them the engines some kernels choose."""
    return webinfer.SessionOptions().strided_test_inputs


def run_both(model: onnx.ModelProto, feed: dict[str, np.ndarray],
             providers: Sequence[str] = ("cpu",),
             level: int = webinfer.GraphOptimizationLevel.ORT_ENABLE_ALL) -> tuple[list[Any], list[Any]]:
    """Outputs of webinfer (strict shape checks on, optimization `level`) and of onnxruntime for the same feed."""
    data = model.SerializeToString()
    options = webinfer.SessionOptions(strict_shape_checks=True, graph_optimization_level=level)
    ours = webinfer.InferenceSession(data, options, providers=list(providers)).run(None, feed)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    return ours, ref


def assert_close(ours: Sequence[Any], ref: Sequence[Any], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.dtype == b.dtype, f"output {i}: dtype {a.dtype} vs onnxruntime {b.dtype}"
        assert a.shape == b.shape, f"output {i}: shape {a.shape} vs onnxruntime {b.shape}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"output {i}")


def check_node(op_type: str, inputs: dict[str, np.ndarray], n_outputs: int = 1, opset: int = 21,
               rtol: float = 1e-5, atol: float = 1e-6, initializers: dict[str, np.ndarray] | None = None,
               **attrs: Any) -> list[Any]:
    """Run one node in both runtimes and compare; return webinfer's outputs."""
    outs = [f"y{i}" for i in range(n_outputs)]
    names = list(inputs) + list(initializers or {})
    node = helper.make_node(op_type, names, outs, **attrs)
    model = make_model([node], inputs, outs, opset, initializers)
    ours, ref = run_both(model, inputs)
    assert_close(ours, ref, rtol, atol)
    return ours


LAYOUTS = ("contiguous", "transposed", "sliced", "reversed")


def strided(x: np.ndarray, how: str) -> np.ndarray:
    """`x`'s values in one of `LAYOUTS`: as is, a transposed copy seen back, every other element of a
    wider buffer, or a reversed copy seen back through negative strides."""
    if how == "contiguous":
        return x
    if how == "transposed":
        return np.ascontiguousarray(x.T).T
    if how == "sliced":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1] + 1,), x.dtype)
        wide[..., 1::2] = x
        return wide[..., 1::2]
    flip = (slice(None, None, -1),) * x.ndim
    return np.ascontiguousarray(x[flip])[flip]
