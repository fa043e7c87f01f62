"""Resize, Upsample, GridSample and AffineGrid against onnxruntime on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.errors import WebinferError

from .util import check_node, load_node, make_model

RNG = np.random.default_rng(9)
NO_ROI = np.zeros(0, np.float32)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


COORDS = ["half_pixel", "pytorch_half_pixel", "asymmetric", "half_pixel_symmetric", "align_corners"]


@pytest.mark.parametrize("mode, coord", itertools.product(["nearest", "linear", "cubic"], COORDS))
def test_resize_scales(mode: str, coord: str) -> None:
    # align_corners with a fractional output length differs between onnx's spec
    # (which webinfer follows) and onnxruntime, so only exact-size scales there
    scale_sets = [(1, 1, 2, 2), (1, 1, 3, 0.5)] if coord == "align_corners" else [(1, 1, 0.6, 1.7), (1, 1, 1.5, 2.5)]
    for scales in scale_sets:
        check_node("Resize", {"x": rand(2, 3, 5, 8)}, opset=19, mode=mode, coordinate_transformation_mode=coord,
                   initializers={"roi": NO_ROI, "scales": np.array(scales, np.float32)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("sizes", [(2, 3, 10, 14), (2, 3, 3, 4), (2, 3, 1, 9)])
def test_resize_sizes(mode: str, sizes: tuple[int, ...]) -> None:
    check_node("Resize", {"x": rand(2, 3, 5, 7)}, opset=19, mode=mode, rtol=1e-4, atol=1e-4,
               initializers={"roi": NO_ROI, "scales": NO_ROI, "sizes": np.array(sizes, np.int64)})


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_modes(nearest_mode: str) -> None:
    for coord in ["half_pixel", "asymmetric", "align_corners"]:
        check_node("Resize", {"x": rand(1, 2, 5, 7)}, opset=19, mode="nearest", nearest_mode=nearest_mode,
                   coordinate_transformation_mode=coord,
                   initializers={"roi": NO_ROI, "scales": NO_ROI, "sizes": np.array((1, 2, 9, 12), np.int64)})


def test_resize_cubic_options_and_antialias() -> None:
    check_node("Resize", {"x": rand(1, 2, 6, 7)}, opset=19, mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5,
               initializers={"roi": NO_ROI, "scales": np.array((1, 1, 1.6, 0.7), np.float32)}, rtol=1e-4, atol=1e-4)
    for mode in ["linear", "cubic"]:
        check_node("Resize", {"x": rand(1, 2, 16, 16)}, opset=19, mode=mode, antialias=1,
                   initializers={"roi": NO_ROI, "scales": np.array((1, 1, 0.5, 0.3), np.float32)},
                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_tf_crop_and_resize(mode: str) -> None:
    roi = np.array([0, 0, 0.1, -0.2, 1, 1, 0.9, 1.3], np.float32)
    sizes = np.array((2, 3, 6, 6), np.int64)
    check_node("Resize", {"x": rand(2, 3, 5, 7)}, opset=19, mode=mode, extrapolation_value=3.0,
               coordinate_transformation_mode="tf_crop_and_resize",
               initializers={"roi": roi, "scales": NO_ROI, "sizes": sizes}, rtol=1e-4, atol=1e-4)


def test_resize_axes_and_aspect_policies() -> None:
    check_node("Resize", {"x": rand(2, 3, 5, 7)}, opset=19, mode="linear", axes=[3, 2],
               initializers={"roi": NO_ROI, "scales": np.array((2.0, 0.5), np.float32)}, rtol=1e-4, atol=1e-4)
    for policy in ["not_larger", "not_smaller"]:
        check_node("Resize", {"x": rand(2, 3, 5, 7)}, opset=19, mode="nearest", axes=[2, 3],
                   keep_aspect_ratio_policy=policy,
                   initializers={"roi": NO_ROI, "scales": NO_ROI, "sizes": np.array((8, 8), np.int64)})


def test_resize_dtypes_and_ranks() -> None:
    scales = np.array((1, 1, 1.5, 2), np.float32)
    check_node("Resize", {"x": RNG.integers(0, 255, (1, 3, 5, 7)).astype(np.uint8)}, opset=19, mode="linear",
               initializers={"roi": NO_ROI, "scales": scales}, atol=1)
    check_node("Resize", {"x": RNG.integers(-9, 9, (1, 3, 5, 7)).astype(np.int32)}, opset=19, mode="nearest",
               initializers={"roi": NO_ROI, "scales": scales})
    check_node("Resize", {"x": rand(1, 3, 5, 7, dtype=np.float16)}, opset=19, mode="linear",
               initializers={"roi": NO_ROI, "scales": scales}, rtol=1e-2, atol=1e-2)
    check_node("Resize", {"x": rand(1, 2, 3, 4, 5)}, opset=19, mode="linear",
               initializers={"roi": NO_ROI, "scales": np.array((1, 1, 2, 1.5, 0.5), np.float32)},
               rtol=1e-4, atol=1e-4)
    check_node("Resize", {"x": rand(4, 6)}, opset=13, mode="cubic",
               initializers={"roi": NO_ROI, "scales": np.array((2, 1.5), np.float32)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 3, 1)])
@pytest.mark.parametrize("coord, nearest_mode", [("asymmetric", "floor"), ("half_pixel", "round_prefer_floor")])
def test_resize_integer_nearest_upsample(scales: tuple[int, ...], coord: str, nearest_mode: str) -> None:
    """The repeat fast path (FPN / PP-OCR upsampling) gives exactly onnxruntime's pixels."""
    check_node("Resize", {"x": rand(2, 8, 6, 5)}, opset=19, mode="nearest", coordinate_transformation_mode=coord,
               nearest_mode=nearest_mode, initializers={"roi": NO_ROI, "scales": np.array(scales, np.float32)})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_legacy_resize_and_upsample(mode: str) -> None:
    x = rand(2, 3, 5, 7)
    for scales in [(1, 1, 2, 3), (1, 1, 1.5, 2.5)]:
        s = np.array(scales, np.float32)
        check_node("Resize", {"x": x}, opset=10, mode=mode, initializers={"scales": s}, rtol=1e-4, atol=1e-4)
        check_node("Upsample", {"x": x}, opset=9, mode=mode, initializers={"scales": s}, rtol=1e-4, atol=1e-4)
        check_node("Upsample", {"x": x}, opset=7, mode=mode, scales=[float(v) for v in scales], rtol=1e-4, atol=1e-4)


def test_resize_symbolic_shapes() -> None:
    x = rand(2, 3, 4, 5)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    model = make_model([node], {"x": x}, ["y"], 19, {"scales": np.array([1, 1, 2, 2], np.float32)})
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"]))
    sess = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))
    assert sess.get_outputs()[0].shape == ["N", 3, "H*2", "W*2"]
    assert sess.run(None, {"x": x})[0].shape == (2, 3, 8, 10)


@pytest.mark.parametrize("opset, modes", [(16, ["bilinear", "nearest", "bicubic"]),
                                          (20, ["linear", "nearest", "cubic"])])
def test_grid_sample_2d(opset: int, modes: list[str]) -> None:
    x = rand(2, 3, 5, 7)
    # grid points inside, near and far outside the image
    grid = (RNG.random((2, 4, 6, 2)) * 5 - 2.5).astype(np.float32)
    for mode, padding, align in itertools.product(modes, ["zeros", "border", "reflection"], [0, 1]):
        check_node("GridSample", {"x": x, "g": grid}, opset=opset, mode=mode, padding_mode=padding,
                   align_corners=align, rtol=1e-4, atol=1e-4)


def test_grid_sample_3d_and_dtypes() -> None:
    x = rand(1, 2, 3, 4, 5)
    grid = (RNG.random((1, 2, 3, 4, 3)) * 2.6 - 1.3).astype(np.float32)
    for mode, padding, align in itertools.product(["linear", "nearest"], ["zeros", "border", "reflection"], [0, 1]):
        check_node("GridSample", {"x": x, "g": grid}, opset=22, mode=mode, padding_mode=padding,
                   align_corners=align, rtol=1e-4, atol=1e-4)
    x2, g2 = rand(2, 3, 5, 7), (RNG.random((2, 4, 6, 2)) * 2.6 - 1.3)
    check_node("GridSample", {"x": x2.astype(np.float16), "g": g2.astype(np.float16)}, opset=20, rtol=1e-2, atol=1e-2)
    check_node("GridSample", {"x": x2.astype(np.float64), "g": g2.astype(np.float64)}, opset=20, mode="cubic")


@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid(align: int) -> None:
    check_node("AffineGrid", {"theta": rand(2, 2, 3)}, opset=20, align_corners=align,
               initializers={"size": np.array([2, 3, 5, 7], np.int64)}, rtol=1e-5, atol=1e-5)
    check_node("AffineGrid", {"theta": rand(2, 3, 4)}, opset=20, align_corners=align,
               initializers={"size": np.array([2, 3, 4, 5, 6], np.int64)}, rtol=1e-5, atol=1e-5)
    check_node("AffineGrid", {"theta": rand(2, 2, 3), "size": np.array([2, 3, 5, 7], np.int64)}, opset=20,
               align_corners=align, rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_the_node() -> None:
    x = rand(2, 3, 4, 5)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rz1", mode="bilinear")
    with pytest.raises(WebinferError, match=r"Resize node 'rz1'.*unsupported mode 'bilinear'"):
        load_node(node, {"x": x}, 19, {"scales": np.ones(4, np.float32)})
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rz2")
    with pytest.raises(WebinferError, match=r"Resize node 'rz2'.*scales has 3 entries, expected 4.*\[2,3,4,5\]"):
        load_node(node, {"x": x}, 19, {"scales": np.ones(3, np.float32)})
    node = helper.make_node("Resize", ["x"], ["y"], name="rz3")
    with pytest.raises(WebinferError, match=r"Resize node 'rz3'.*one of 'scales' and 'sizes'"):
        load_node(node, {"x": x}, 19)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="rz4", mode="linear")
    sess = load_node(node, {"x": x, "sizes": np.array([2, 3, 8, 10], np.int64)}, 19)
    with pytest.raises(WebinferError, match=r"Resize node 'rz4'.*sizes \[2, 3, -8, 10\] must be non-negative"):
        sess.run(None, {"x": x, "sizes": np.array([2, 3, -8, 10], np.int64)})
    node = helper.make_node("GridSample", ["x", "g"], ["y"], name="gs1")
    with pytest.raises(WebinferError, match=r"GridSample node 'gs1'.*\[2,4,4,3\].*\[2,3,4,5\]"):
        load_node(node, {"x": x, "g": np.zeros((2, 4, 4, 3), np.float32)}, 20)
    node = helper.make_node("AffineGrid", ["theta", "size"], ["y"], name="ag1")
    sess = load_node(node, {"theta": rand(2, 2, 3), "size": np.array([2, 3, 4, 5], np.int64)}, 20)
    with pytest.raises(WebinferError, match=r"AffineGrid node 'ag1'.*\[2, 2, 3\].*\[3, 3, 4, 5\]"):
        sess.run(None, {"theta": rand(2, 2, 3), "size": np.array([3, 3, 4, 5], np.int64)})
