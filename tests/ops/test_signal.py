"""DFT, STFT, window functions and MelWeightMatrix against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from tests.ops.util import assert_close, check_node, make_model, run_both

rng = np.random.default_rng(0)


@pytest.mark.parametrize("shape, axis, inverse, onesided, length", [
    ((2, 16, 2), 1, 0, 0, None),      # complex forward
    ((3, 10, 1), 1, 0, 1, None),      # RFFT
    ((2, 8, 5, 2), 2, 1, 0, None),    # inverse on an inner axis
    ((2, 9, 2), 1, 1, 1, None),       # IRFFT, default length 2 * (9 - 1)
    ((2, 12, 1), 1, 0, 0, 16),        # zero-padded
    ((2, 12, 2), 1, 0, 0, 7),         # truncated
    ((4, 6, 2), -2, 0, 0, None),      # negative axis
])
def test_dft_opset17(shape: tuple[int, ...], axis: int, inverse: int, onesided: int, length: int | None) -> None:
    x = rng.standard_normal(shape).astype(np.float32)
    inits = {"n": np.array(length, dtype=np.int64)} if length is not None else None
    check_node("DFT", {"x": x}, opset=17, rtol=1e-4, atol=1e-4, initializers=inits,
               axis=axis, inverse=inverse, onesided=onesided)


@pytest.mark.parametrize("axis, onesided", [(0, 0), (1, 1), (-2, 0)])
def test_dft_opset20_axis_input(axis: int, onesided: int) -> None:
    x = rng.standard_normal((6, 8, 1)).astype(np.float64)
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"], onesided=onesided)
    feed = {"x": x, "axis": np.array(axis, dtype=np.int64)}
    ours, ref = run_both(make_model([node], feed, ["y"], opset=20), feed)
    assert_close(ours, ref, rtol=1e-9, atol=1e-9)


def test_dft_float16_runs_in_float32() -> None:
    x = rng.standard_normal((2, 8, 2)).astype(np.float16)
    node = helper.make_node("DFT", ["x"], ["y"], axis=1)
    out = webinfer.InferenceSession(make_model([node], {"x": x}, ["y"], opset=17).SerializeToString()).run(
        None, {"x": x})[0]
    want = np.fft.fft(x[..., 0].astype(np.float32) + 1j * x[..., 1].astype(np.float32), axis=1)
    assert out.dtype == np.float16 and out.shape == (2, 8, 2)
    np.testing.assert_allclose(out[..., 0], want.real, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("with_window, onesided, frame_length", [(True, 1, None), (False, 0, 16), (True, 0, 12)])
def test_stft(with_window: bool, onesided: int, frame_length: int | None) -> None:
    signal = rng.standard_normal((2, 64, 1)).astype(np.float32)
    inits: dict[str, np.ndarray] = {"step": np.array(5, dtype=np.int64)}
    names = ["signal", "step"]
    if with_window:
        inits["window"] = rng.random(frame_length or 16).astype(np.float32)
        names.append("window")
    else:
        names.append("")
    if frame_length is not None:
        inits["frame_length"] = np.array(frame_length, dtype=np.int64)
        names.append("frame_length")
    node = helper.make_node("STFT", names, ["y"], onesided=onesided)
    model = make_model([node], {"signal": signal}, ["y"], opset=17, initializers=inits)
    ours, ref = run_both(model, {"signal": signal})
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op_type", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic, dtype", [(1, TensorProto.FLOAT), (0, TensorProto.DOUBLE)])
def test_windows(op_type: str, periodic: int, dtype: int) -> None:
    check_node(op_type, {"size": np.array(11, dtype=np.int64)}, opset=17, atol=1e-6,
               periodic=periodic, output_datatype=dtype)


@pytest.mark.parametrize("mels, length, rate, lo, hi", [(8, 16, 8192, 0.0, 4096.0), (10, 64, 16000, 20.0, 7600.0)])
def test_mel_weight_matrix(mels: int, length: int, rate: int, lo: float, hi: float) -> None:
    feed = {"m": np.array(mels, np.int64), "n": np.array(length, np.int64), "r": np.array(rate, np.int64),
            "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}
    check_node("MelWeightMatrix", feed, opset=17)


def test_dft_bad_axis_names_node() -> None:
    x = rng.standard_normal((2, 8, 2)).astype(np.float32)
    node = helper.make_node("DFT", ["x"], ["y"], axis=2, name="my_dft")
    data = make_model([node], {"x": x}, ["y"], opset=17).SerializeToString()
    with pytest.raises(webinfer.errors.ShapeInferenceError, match=r"DFT node 'my_dft'.*axis 2 is out of range"):
        webinfer.InferenceSession(data)


def test_stft_window_length_mismatch_names_node() -> None:
    signal = rng.standard_normal((1, 32, 1)).astype(np.float32)
    node = helper.make_node("STFT", ["signal", "step", "window", "len"], ["y"], name="spec")
    inits = {"step": np.array(4, np.int64), "window": np.ones(8, np.float32), "len": np.array(10, np.int64)}
    data = make_model([node], {"signal": signal}, ["y"], opset=17, initializers=inits).SerializeToString()
    with pytest.raises(webinfer.errors.ShapeInferenceError, match=r"STFT node 'spec'.*window has length 8"):
        webinfer.InferenceSession(data)
