"""MaxPool / AveragePool on the GPU over windows past 8192 taps, against onnxruntime.

On llvmpipe an invocation's loops stop silently after 65535 iterations in all, so the one-pass pool
kernel summed only a 128x128 window's first 8192 taps (ones in the top half averaged to 1.0, not
0.5). The kernel now walks windows in passes; these windows sit on both sides of the old limit and
of the pass size. Data are random multiples of 1/64 in [1/64, 1): any summation order gives the same
f32 sum, so rtol 1e-5 checks the taps, not rounding order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.devices.gpu.conv_kernels import TAPS_PER_PASS

pytestmark = pytest.mark.gpu

RTOL = 1e-5


def _model(op: str, shape: list[int], kernel: list[int], indices: bool = False, **attrs: Any) -> bytes:
    outs = ["y", "i"] if indices else ["y"]
    node = helper.make_node(op, ["x"], outs, kernel_shape=kernel, **attrs)
    vis = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if indices:
        vis.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], vis)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def _data(shape: list[int], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).integers(1, 64, shape) / 64).astype(np.float32)


def _compare(data: bytes, x: np.ndarray) -> None:
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    got = sess.run(None, {"x": x})
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=0)


WINDOWS = [8191, 8192, 8193, 3 * TAPS_PER_PASS + 1]


@pytest.mark.parametrize("taps", WINDOWS)
@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_row_window(gpu_device: Any, op: str, taps: int) -> None:
    """A [1, taps] window (2-D: the decode the old limit hit at 8192 taps), several outputs per plane
    (stride 2, a pad each side) so passes carry distinct running states; a unique maximum sits in the
    last taps of the last two windows."""
    shape = [1, 2, 1, taps + 4]
    x = _data(shape, taps)
    x[..., -2] = 2.0
    _compare(_model(op, shape, [1, taps], strides=[1, 2], pads=[0, 1, 0, 1]), x)


def test_1d_window(gpu_device: Any) -> None:
    """One spatial dim, past any pass boundary."""
    shape = [2, 1, 3 * TAPS_PER_PASS + 7]
    x = _data(shape, 5)
    x[..., -1] = 2.0
    for op in ("AveragePool", "MaxPool"):
        _compare(_model(op, shape, [3 * TAPS_PER_PASS + 2], strides=[2]), x)


@pytest.mark.parametrize("include_pad", [0, 1])
def test_128x128_average(gpu_device: Any, include_pad: int) -> None:
    shape = [2, 3, 130, 129]
    _compare(_model("AveragePool", shape, [128, 128], pads=[1, 0, 1, 1], count_include_pad=include_pad),
             _data(shape, 7))


def test_128x128_average_of_top_half_ones(gpu_device: Any) -> None:
    """The reported case: a window as large as the input, ones in its top half, averages to 0.5."""
    x = np.zeros((1, 1, 128, 128), np.float32)
    x[:, :, :64] = 1
    data = _model("AveragePool", [1, 1, 128, 128], [128, 128])
    got = webinfer.InferenceSession(data, providers=["webgpu"]).run(None, {"x": x})[0]
    assert got.shape == (1, 1, 1, 1) and got[0, 0, 0, 0] == 0.5
    _compare(data, x)


@pytest.mark.parametrize("order", [0, 1])
def test_128x128_max_with_indices(gpu_device: Any, order: int) -> None:
    """The maxima sit past the first passes (last rows), so `best` must survive the passes."""
    shape = [1, 2, 128, 130]
    x = _data(shape, 3)
    x[0, 0, 127, 5] = 2.0
    x[0, 1, 100, 128] = 2.0
    _compare(_model("MaxPool", shape, [128, 128], indices=True, strides=[1, 2], storage_order=order), x)


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_3d_window(gpu_device: Any, op: str) -> None:
    """Three spatial dims decode each tap with the most loop iterations: 24^3 = 13824 taps."""
    shape = [1, 2, 25, 24, 26]
    x = _data(shape, 11)
    x[..., 23, 23, 23] = 2.0
    x[..., -1, -1, -1] = 3.0
    _compare(_model(op, shape, [24, 24, 24], strides=[1, 1, 2]), x)
