"""Pooling ops against onnxruntime on random data: windowed and global pools, Indices, MaxUnpool, RoiAlign,
MaxRoiPool."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.ops import pool as pool_ops
from tests.ops.util import LAYOUTS, assert_close, check_node, make_model, run_both, strided

rng = np.random.default_rng(11)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


WINDOWS = [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[2, 3], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 0, 0, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], dilations=[2, 1], strides=[1, 2], pads=[2, 1, 1, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 4], strides=[3, 1], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[2, 2], auto_pad="VALID", strides=[2, 2]),
]


@pytest.mark.parametrize("attrs", WINDOWS)
def test_max_pool_matches_onnxruntime(attrs: dict) -> None:
    check_node("MaxPool", {"x": rand(2, 3, 11, 10)}, **attrs)
    check_node("MaxPool", {"x": rand(2, 3, 11, 10)}, n_outputs=2, **attrs)
    check_node("MaxPool", {"x": rand(1, 2, 9, 8)}, n_outputs=2, storage_order=1, **attrs)


@pytest.mark.parametrize("attrs", WINDOWS)
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_matches_onnxruntime(attrs: dict, include_pad: int) -> None:
    check_node("AveragePool", {"x": rand(2, 3, 11, 10)}, count_include_pad=include_pad, rtol=1e-5, atol=1e-6,
               **attrs)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_max_pool_small_ints(dtype: type) -> None:
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (1, 3, 9, 9)).astype(dtype)
    check_node("MaxPool", {"x": x}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])


def test_pools_1d_3d_and_float16() -> None:
    check_node("MaxPool", {"x": rand(2, 3, 15)}, kernel_shape=[3], strides=[2], pads=[1, 1], n_outputs=2)
    check_node("AveragePool", {"x": rand(1, 2, 7, 6, 5)}, kernel_shape=[2, 3, 2], strides=[2, 1, 2],
               pads=[1, 1, 0, 0, 1, 1], count_include_pad=1)
    check_node("AveragePool", {"x": rand(1, 3, 8, 8).astype(np.float16)}, kernel_shape=[3, 3], rtol=1e-3,
               atol=1e-3)
    check_node("MaxPool", {"x": rand(1, 3, 8, 8).astype(np.float16)}, kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool_matches_onnxruntime(p: int) -> None:
    check_node("LpPool", {"x": rand(1, 3, 9, 8)}, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], p=p,
               rtol=1e-5, atol=1e-5)
    check_node("LpPool", {"x": rand(1, 2, 10, 9)}, kernel_shape=[2, 3], strides=[3, 2], dilations=[2, 1],
               ceil_mode=1, p=p, rtol=1e-5, atol=1e-5)
    check_node("GlobalLpPool", {"x": rand(2, 3, 5, 4)}, p=p, rtol=1e-5, atol=1e-5)


def test_global_pools_match_onnxruntime() -> None:
    x = rand(2, 5, 7, 6)
    check_node("GlobalAveragePool", {"x": x})
    check_node("GlobalMaxPool", {"x": x})
    check_node("GlobalAveragePool", {"x": rand(2, 3, 4, 5, 6)})


@pytest.mark.parametrize("x_shape", [(1, 576, 7, 7), (2, 5, 7, 6), (1, 3, 1, 1), (2, 3, 4, 5, 6), (3, 4, 9)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_global_average_pool_as_a_product(x_shape: tuple, layout: str, dtype: type,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The spatial mean is one matrix-vector product with 1/cells, on any layout and float type."""
    calls = []
    averager = pool_ops._averager
    monkeypatch.setattr(pool_ops, "_averager", lambda *a: calls.append(1) or averager(*a))
    x = rand(*x_shape, dtype=dtype)
    if dtype == np.float64:  # onnxruntime has no double GlobalAveragePool
        model = make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {"x": x}, ["y"])
        sess = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))
        (y,) = sess.run(None, {"x": strided(x, layout)})
        np.testing.assert_allclose(y, x.mean(axis=tuple(range(2, x.ndim)), keepdims=True), rtol=1e-10, atol=1e-14)
    else:
        tol = 1e-2 if dtype == np.float16 else 1e-5
        check_node("GlobalAveragePool", {"x": strided(x, layout)}, rtol=tol, atol=tol)
    assert calls


@pytest.mark.parametrize("x_shape, with_shape", [((1, 2, 7, 6), True), ((2, 2, 6, 8), False)])
def test_max_unpool_inverts_max_pool(x_shape: tuple, with_shape: bool) -> None:
    x = rand(*x_shape)
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2])
    shape = helper.make_node("Shape", ["x"], ["s"])
    unpool = helper.make_node("MaxUnpool", ["p", "i", "s"] if with_shape else ["p", "i"], ["y"], kernel_shape=[2, 2],
                              strides=[2, 2])
    model = make_model([pool, shape, unpool], {"x": x}, ["y"], opset=11)
    ours, ref = run_both(model, {"x": x})
    assert_close(ours, ref)
    assert ours[0].shape == x.shape


def test_roi_align_matches_onnxruntime() -> None:
    x = rand(2, 3, 12, 10)
    rois = np.array([[1.5, 2.0, 8.3, 9.1], [0.0, 0.0, 9.0, 11.0], [3.2, 4.4, 4.0, 5.0], [-2.0, -1.0, 3.0, 14.0]],
                    np.float32)
    idx = np.array([0, 1, 1, 0], np.int64)
    for ctm in ("half_pixel", "output_half_pixel"):
        check_node("RoiAlign", {"x": x, "rois": rois, "idx": idx}, output_height=3, output_width=4,
                   coordinate_transformation_mode=ctm, spatial_scale=0.9, rtol=1e-5, atol=1e-5, opset=16)
        check_node("RoiAlign", {"x": x, "rois": rois, "idx": idx}, output_height=2, output_width=2,
                   sampling_ratio=2, coordinate_transformation_mode=ctm, rtol=1e-5, atol=1e-5, opset=16)
    check_node("RoiAlign", {"x": x, "rois": rois, "idx": idx}, output_height=3, output_width=2, mode="max",
               sampling_ratio=1, rtol=1e-5, atol=1e-5, opset=16)


def test_max_roi_pool_matches_onnxruntime() -> None:
    x = rand(2, 3, 12, 10)
    rois = np.array([[0, 1.2, 2.0, 8.6, 9.5], [1, 0, 0, 9, 11], [1, 4.4, 3.6, 4.4, 3.6], [0, 6, 7, 30, 40]],
                    np.float32)
    check_node("MaxRoiPool", {"x": x, "rois": rois}, pooled_shape=[3, 4], spatial_scale=0.8)
    check_node("MaxRoiPool", {"x": x, "rois": rois}, pooled_shape=[2, 2])


def test_bad_pool_attributes_name_the_node() -> None:
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="pool_bad", kernel_shape=[3, 3],
                                         storage_order=2)], {"x": rand(1, 2, 5, 5)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="MaxPool node 'pool_bad'.*storage_order"):
        webinfer.InferenceSession(model.SerializeToString())
    model = make_model([helper.make_node("AveragePool", ["x"], ["y"], name="pool_rank", kernel_shape=[3, 3])],
                       {"x": rand(1, 2, 5)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="AveragePool node 'pool_rank'.*\\[1,2,5\\]"):
        webinfer.InferenceSession(model.SerializeToString())
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], name="pool_nok")], {"x": rand(1, 2, 5, 5)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="MaxPool node 'pool_nok'.*kernel_shape"):
        webinfer.InferenceSession(model.SerializeToString())
