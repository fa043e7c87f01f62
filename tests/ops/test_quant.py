"""Quantization ops against onnxruntime on random data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import check_node, make_model, run_both

RNG = np.random.default_rng(3)


def _x(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 4).astype(np.float32)


def _scale(*shape: int) -> np.ndarray:
    return (RNG.random(shape) * 0.1 + 0.01).astype(np.float32)


def test_quantize_per_tensor() -> None:
    x = _x(3, 4, 5)
    check_node("QuantizeLinear", {"x": x}, initializers={"s": np.float32(0.05)})
    check_node("QuantizeLinear", {"x": x}, initializers={"s": np.float32(0.03), "z": np.int8(-7)})


def test_quantize_per_axis_and_blocked() -> None:
    x = _x(2, 6, 4)
    check_node("QuantizeLinear", {"x": x}, initializers={"s": _scale(6), "z": RNG.integers(0, 255, 6).astype(np.uint8)})
    check_node("QuantizeLinear", {"x": x}, axis=-1,
               initializers={"s": _scale(4), "z": RNG.integers(-9, 9, 4).astype(np.int8)})
    check_node("QuantizeLinear", {"x": x}, axis=1, block_size=2,
               initializers={"s": _scale(2, 3, 4), "z": RNG.integers(0, 255, (2, 3, 4)).astype(np.uint8)})


def test_quantize_wider_and_half() -> None:
    x = _x(4, 7)
    check_node("QuantizeLinear", {"x": x}, output_dtype=T.INT16, initializers={"s": np.float32(1e-3)})


def test_quantize_float16_divides_in_float16() -> None:
    """x / scale is computed in x's precision, as the spec and onnx's reference do.

    onnxruntime divides float16 inputs in float32, so near a rounding tie it
    can land one step away (e.g. 1.66 / 0.04 is 41.5 in float16 but 41.495
    in float32); the expected values here follow the spec, exactly.
    """
    x = np.concatenate([_x(200).astype(np.float16), np.array([1.66, -1.82, 3.46], np.float16)])
    scale, zero = np.float16(0.04), np.uint8(128)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    model = make_model([node], {"x": x}, ["y"], initializers={"s": scale, "z": zero})
    (ours,) = webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    expected = np.clip(np.rint(x / scale).astype(np.float32) + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ours, expected)
    assert ours[-3:].tolist() == [170, 82, 214]  # the ties onnxruntime rounds the other way


def test_quantize_float8_bits() -> None:
    x = _x(5, 6) * 100
    zp = np.zeros((), np.uint8)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    model = make_model([node], {"x": x}, ["y"], initializers={"s": np.float32(0.5), "z": zp})
    model.graph.initializer[1].data_type = T.FLOAT8E4M3FN
    ours, ref = run_both(model, {"x": x})
    np.testing.assert_array_equal(ours[0].view(np.uint8), ref[0])


def test_dequantize() -> None:
    q8 = RNG.integers(-128, 128, (3, 6, 4)).astype(np.int8)
    check_node("DequantizeLinear", {"x": q8}, initializers={"s": np.float32(0.02), "z": np.int8(3)})
    check_node("DequantizeLinear", {"x": q8.view(np.uint8)},
               initializers={"s": _scale(6), "z": RNG.integers(0, 255, 6).astype(np.uint8)})
    check_node("DequantizeLinear", {"x": q8}, axis=1, block_size=4,
               initializers={"s": _scale(3, 2, 4), "z": RNG.integers(-5, 5, (3, 2, 4)).astype(np.int8)})
    check_node("DequantizeLinear", {"x": RNG.integers(-10**6, 10**6, 8).astype(np.int32)},
               initializers={"s": np.float32(1e-3)})
    check_node("DequantizeLinear", {"x": q8}, opset=23, output_dtype=T.FLOAT16, rtol=1e-3,
               initializers={"s": np.float32(0.3)})


@pytest.mark.parametrize("to", [T.INT4, T.UINT4, T.FLOAT8E5M2, T.FLOAT8E4M3FNUZ])
def test_quantize_dequantize_round_trip(to: int) -> None:
    """Quantize to a type onnxruntime can't hand to numpy, then dequantize inside the model."""
    x = _x(4, 6)
    zp = helper.make_tensor("z", to, [], [1 if to in (T.INT4, T.UINT4) else 0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = make_model(nodes, {"x": x}, ["y"], initializers={"s": np.float32(0.7)})
    model.graph.initializer.append(zp)
    ours, ref = run_both(model, {"x": x})
    np.testing.assert_array_equal(ours[0], ref[0])


def test_dynamic_quantize() -> None:
    for x in (_x(3, 17), np.abs(_x(40)), -np.abs(_x(2, 2, 5))):
        check_node("DynamicQuantizeLinear", {"x": x}, n_outputs=3)


@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
def test_matmul_integer(a_type: type, b_type: type) -> None:
    info_a, info_b = np.iinfo(a_type), np.iinfo(b_type)
    a = RNG.integers(info_a.min, info_a.max + 1, (2, 5, 33)).astype(a_type)
    b = RNG.integers(info_b.min, info_b.max + 1, (33, 7)).astype(b_type)
    check_node("MatMulInteger", {"a": a, "b": b},
               initializers={"az": np.array(info_a.max // 3, a_type), "bz": np.array(info_b.max // 5, b_type)})
    check_node("MatMulInteger", {"a": a, "b": b},
               initializers={"az": np.array(7, a_type), "bz": RNG.integers(0, 9, 7).astype(b_type)})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_matmul(dt: type) -> None:
    info = np.iinfo(dt)
    a = RNG.integers(info.min, info.max + 1, (2, 4, 300)).astype(dt)
    b = RNG.integers(info.min, info.max + 1, (300, 6)).astype(dt)
    inits = {"as": np.float32(0.02), "az": np.array(3, dt), "bs": np.float32(0.01), "bz": np.array(-2 if dt == np.int8
             else 130, dt), "ys": np.float32(1.7), "yz": np.array(5, dt)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y0"])
    model = make_model([node], {"a": a, "b": b}, ["y0"], initializers=inits)
    ours, ref = run_both(model, {"a": a, "b": b})
    assert ours[0].dtype == ref[0].dtype
    np.testing.assert_array_equal(ours[0], ref[0])


def test_qlinear_conv() -> None:
    x = RNG.integers(0, 256, (2, 4, 9, 8)).astype(np.uint8)
    w = RNG.integers(-128, 128, (6, 2, 3, 3)).astype(np.int8)
    inits = {"xs": np.float32(0.05), "xz": np.uint8(120), "w": w, "ws": _scale(6), "wz": np.zeros(6, np.int8),
             "ys": np.float32(0.9), "yz": np.uint8(100), "b": RNG.integers(-500, 500, 6).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y0"],
                            group=2, pads=[1, 0, 1, 2], strides=[2, 1])
    model = make_model([node], {"x": x}, ["y0"], initializers=inits)
    # BASIC: the kernel itself (the default level expands a QLinearConv with constant weights into float ops)
    ours, ref = run_both(model, {"x": x}, level=webinfer.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    assert ours[0].dtype == ref[0].dtype
    np.testing.assert_array_equal(ours[0], ref[0])


def test_bad_scale_shape_names_node() -> None:
    x = _x(2, 6)
    node = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], axis=1, name="quant")
    model = make_model([node], {"x": x}, ["y"], initializers={"s": _scale(5)})
    with pytest.raises(ShapeInferenceError, match=r"QuantizeLinear node 'quant'.*y_scale has shape \[5\].*\[2,6\]"):
        webinfer.InferenceSession(model.SerializeToString())


def test_output_dtype_conflict_names_node() -> None:
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], output_dtype=T.INT8, name="q2")
    model = make_model([node], {"x": _x(3)}, ["y"], initializers={"s": np.float32(0.1), "z": np.uint8(0)})
    with pytest.raises(ShapeInferenceError, match="QuantizeLinear node 'q2'.*output_dtype is int8.*uint8"):
        webinfer.InferenceSession(model.SerializeToString())


# ------------------------------------------------ exact blocked integer products (issue 12)

def _int_matmul(a: np.ndarray, b: np.ndarray, az: np.ndarray, bz: np.ndarray) -> np.ndarray:
    """The integer product computed in int64: the ground truth the blocked float32 path must equal."""
    return np.matmul(a.astype(np.int64) - az.astype(np.int64), b.astype(np.int64) - bz.astype(np.int64))


@pytest.mark.parametrize("a_type,b_type,k", [(np.uint8, np.int8, 1537), (np.int8, np.int8, 1031),
                                             (np.uint8, np.uint8, 517), (np.uint8, np.int8, 7)])
@pytest.mark.parametrize("const_b", [True, False])
def test_matmul_integer_blocked_is_exact(a_type: type, b_type: type, k: int, const_b: bool) -> None:
    """K long enough for several float32 blocks (full-range operands, per-column zero points): the
    result equals int64 arithmetic bit for bit, with B constant (prepared at load) or fed."""
    info_a, info_b = np.iinfo(a_type), np.iinfo(b_type)
    a = RNG.integers(info_a.min, info_a.max + 1, (3, 5, k)).astype(a_type)
    b = RNG.integers(info_b.min, info_b.max + 1, (k, 11)).astype(b_type)
    az = np.array(info_a.max // 3, a_type)
    bz = RNG.integers(info_b.min, info_b.max + 1, 11).astype(b_type)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    inputs = {"a": a} if const_b else {"a": a, "b": b}
    inits = {"az": az, "bz": bz, **({"b": b} if const_b else {})}
    ours, ref = run_both(make_model([node], inputs, ["y"], initializers=inits), inputs)
    want = _int_matmul(a, b, az, bz)
    assert ours[0].dtype == np.int32
    np.testing.assert_array_equal(ours[0], want.astype(np.int32))
    np.testing.assert_array_equal(ours[0], ref[0])


def test_matmul_integer_per_row_a_zero_point_exact() -> None:
    a = RNG.integers(0, 256, (6, 1300)).astype(np.uint8)
    b = RNG.integers(-128, 128, (1300, 5)).astype(np.int8)
    az = RNG.integers(0, 256, 6).astype(np.uint8)
    bz = np.array(-3, np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    model = make_model([node], {"a": a}, ["y"], initializers={"b": b, "az": az, "bz": bz})
    sess = webinfer.InferenceSession(model.SerializeToString())
    got = sess.run(None, {"a": a})[0]
    np.testing.assert_array_equal(got, _int_matmul(a, b, az.reshape(-1, 1), bz).astype(np.int32))


def _requantize(acc: np.ndarray, scale: np.ndarray, yz: np.ndarray, dt: type) -> np.ndarray:
    """ONNX's requantization of an exact accumulator, as the float64 path computes it."""
    info = np.iinfo(dt)
    return np.clip(np.rint(acc.astype(np.float64) * scale.astype(np.float64)) + float(yz), info.min,
                   info.max).astype(dt)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinear_matmul_blocked_is_exact(dt: type) -> None:
    info = np.iinfo(dt)
    a = RNG.integers(info.min, info.max + 1, (2, 3, 1100)).astype(dt)
    b = RNG.integers(info.min, info.max + 1, (1100, 9)).astype(dt)
    az, bz, yz = np.array(info.max // 2, dt), np.array(info.min // 3, dt), np.array(info.max // 4, dt)
    scales = {"as": np.float32(0.0021), "bs": np.float32(0.013), "ys": np.float32(6.1)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    model = make_model([node], {"a": a}, ["y"], initializers={"az": az, "b": b, "bz": bz, "yz": yz, **scales})
    ours, ref = run_both(model, {"a": a})
    scale = np.float32(scales["as"] * scales["bs"]) / scales["ys"]
    np.testing.assert_array_equal(ours[0], _requantize(_int_matmul(a, b, az, bz), scale, yz, dt))
    np.testing.assert_array_equal(ours[0], ref[0])


def _int_conv2d(x: np.ndarray, w: np.ndarray, pads: list[int], strides: list[int]) -> np.ndarray:
    """A group-1 2-D convolution in int64 (im2col by sliding windows): the exact accumulator."""
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
    return np.einsum("nchwij,mcij->nmhw", win, w.astype(np.int64))


@pytest.mark.parametrize("channels,kernel", [(67, 3), (130, 1), (3, 7)])
def test_qlinear_conv_blocked_is_exact(channels: int, kernel: int) -> None:
    """Input channels enough for several exact float32 blocks, per-channel weight scales and zero
    points: equal to int64 accumulation and ONNX's requantization, and to onnxruntime."""
    x = RNG.integers(0, 256, (2, channels, 11, 9)).astype(np.uint8)
    w = RNG.integers(-128, 128, (13, channels, kernel, kernel)).astype(np.int8)
    xz, wz, yz = np.uint8(77), np.zeros(13, np.int8), np.uint8(128)
    ws, bias = _scale(13) * 0.01, RNG.integers(-5000, 5000, 13).astype(np.int32)
    pads, strides = [kernel // 2, 0, kernel // 2, 1], [1, 2]
    inits = {"xs": np.float32(0.03), "xz": xz, "w": w, "ws": ws, "wz": wz, "ys": np.float32(2.5), "yz": yz,
             "b": bias}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=pads, strides=strides)
    ours, ref = run_both(make_model([node], {"x": x}, ["y"], initializers=inits), {"x": x})
    acc = _int_conv2d(x.astype(np.int64) - int(xz), w, pads, strides) + bias.reshape(1, -1, 1, 1)
    scale = (np.float32(0.03) * ws / np.float32(2.5)).reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(ours[0], _requantize(acc, scale, yz, np.uint8))
    np.testing.assert_array_equal(ours[0], ref[0])


@pytest.mark.parametrize("const_w", [True, False])
def test_conv_integer_blocked_is_exact(const_w: bool) -> None:
    """ConvInteger over enough input channels for several exact float32 blocks, weights constant (packed
    at load) or fed: equal to int64 accumulation and to onnxruntime (which takes per-tensor zero points)."""
    x = RNG.integers(0, 256, (1, 70, 10, 7)).astype(np.uint8)
    w = RNG.integers(0, 256, (5, 70, 3, 3)).astype(np.uint8)
    xz, wz = np.uint8(3), np.uint8(250)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=[1, 1, 1, 1])
    inputs = {"x": x} if const_w else {"x": x, "w": w}
    inits = {"xz": xz, "wz": wz, **({"w": w} if const_w else {})}
    ours, ref = run_both(make_model([node], inputs, ["y"], opset=10, initializers=inits), inputs)
    want = _int_conv2d(x.astype(np.int64) - 3, w.astype(np.int64) - 250, [1, 1, 1, 1], [1, 1])
    assert ours[0].dtype == np.int32
    np.testing.assert_array_equal(ours[0], want.astype(np.int32))
    np.testing.assert_array_equal(ours[0], ref[0])
