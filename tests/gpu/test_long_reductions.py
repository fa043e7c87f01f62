"""Reduce* and GlobalAveragePool/GlobalMaxPool on the GPU over more elements than one pass, against
onnxruntime.

On llvmpipe an invocation's loops stop silently after 65535 iterations in all, so the one-pass
reduce kernel read only the first tens of thousands of a 512x512 GlobalAveragePool's elements. The
kernel now walks long reductions in passes; these sizes sit on both sides of the pass size and of
the old limit. Data are random multiples of 1/64 in [1/64, 1) (sums exact in f32 in any order), so
rtol 1e-5 checks the elements, not rounding order; log-sum-exp's only rounding is its exp terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer
from webinfer.devices.gpu.norm_kernels import ELEMENTS_PER_PASS

pytestmark = pytest.mark.gpu

RTOL = 1e-5


def _model(op: str, shape: list[int], axes: list[int] | None) -> bytes:
    inputs = ["x"] + (["axes"] if axes is not None else [])
    inits = [numpy_helper.from_array(np.array(axes, np.int64), "axes")] if axes is not None else []
    node = helper.make_node(op, inputs, ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def _compare(data: bytes, x: np.ndarray) -> None:
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    got = sess.run(None, {"x": x})[0]
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


def _data(shape: list[int], seed: int) -> np.ndarray:
    x = (np.random.default_rng(seed).integers(1, 64, shape) / 64).astype(np.float32)
    x.reshape(shape[0], -1)[:, -1] = 2.0  # a unique maximum at the last element of each row
    return x


OPS = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceLogSumExp", "ReduceL2"]


@pytest.mark.parametrize("count", [ELEMENTS_PER_PASS, ELEMENTS_PER_PASS + 1, 8191, 8192, 8193, 70001])
@pytest.mark.parametrize("op", OPS)
def test_reduce_last_axis(gpu_device: Any, op: str, count: int) -> None:
    shape = [3, count]
    _compare(_model(op, shape, [1]), _data(shape, count))


@pytest.mark.parametrize("op", OPS)
def test_reduce_strided_axes(gpu_device: Any, op: str) -> None:
    """Axes 0 and 2 of [64, 3, 130]: 8320 elements per output, walked with strides."""
    shape = [64, 3, 130]
    _compare(_model(op, shape, [0, 2]), _data(shape, 1))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_512x512(gpu_device: Any, op: str) -> None:
    shape = [1, 2, 512, 512]
    _compare(_model(op, shape, None), _data(shape, 2))


def test_global_average_of_bottom_half_ones(gpu_device: Any) -> None:
    x = np.zeros((1, 1, 512, 512), np.float32)
    x[:, :, 256:] = 1
    got = webinfer.InferenceSession(_model("GlobalAveragePool", [1, 1, 512, 512], None),
                                    providers=["webgpu"]).run(None, {"x": x})[0]
    assert got.shape == (1, 1, 1, 1) and got[0, 0, 0, 0] == 0.5
