"""Gather/Scatter family, selection ops, TopK and cumulative ops against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import WebinferError

from .util import check_node, make_model, run_both

RNG = np.random.default_rng(3)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(values: object) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_gather_variants() -> None:
    x = rand(4, 5, 3)
    check_node("Gather", {"x": x, "i": i64([[0, -1], [2, 3]])}, axis=1)
    check_node("Gather", {"x": x}, initializers={"i": i64(-2)})
    check_node("GatherElements", {"x": x, "i": RNG.integers(-5, 5, size=(4, 2, 3))}, axis=1)
    check_node("GatherElements", {"x": rand(3, 3), "i": i64([[2, -1], [0, 1]])}, axis=0)
    check_node("GatherND", {"x": x, "i": i64([[[1, -2], [3, 0]]])})
    check_node("GatherND", {"x": x, "i": i64([[1], [4], [0], [2]])}, batch_dims=1)
    check_node("GatherND", {"x": x, "i": i64([[[1, 2], [0, 0]], [[3, 1], [4, 2]], [[0, 0], [1, 1]],
                                              [[2, 2], [4, 0]]])}, batch_dims=1)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_and_nd(reduction: str) -> None:
    data = rand(4, 5)
    idx = i64([[1, 0, 3, 3, -1], [1, 2, 0, 3, 0]])
    check_node("ScatterElements", {"d": data, "i": idx, "u": rand(2, 5)}, opset=18, axis=0,
               reduction=reduction)
    nd_idx = i64([[1], [3], [1]]) if reduction != "none" else i64([[1], [-1], [0]])
    check_node("ScatterND", {"d": data, "i": nd_idx, "u": rand(3, 5)}, opset=18, reduction=reduction)
    check_node("ScatterND", {"d": data, "i": i64([[0, 1], [3, -2]]), "u": rand(2)}, opset=18,
               reduction=reduction)


def test_scatter_deprecated_and_tensor_scatter() -> None:
    check_node("Scatter", {"d": rand(3, 4), "i": i64([[2, 0, 1, 1]]), "u": rand(1, 4)}, opset=10, axis=0)
    cache, update = rand(2, 3, 6, 4), rand(2, 3, 2, 4)
    write = i64([1, 5])
    node = helper.make_node("TensorScatter", ["c", "u", "w"], ["y"], mode="circular")
    model = make_model([node], {"c": cache, "u": update, "w": write}, ["y"], opset=24)
    ours = webinfer.InferenceSession(model.SerializeToString(),
                                     webinfer.SessionOptions(strict_shape_checks=True)).run(
        None, {"c": cache, "u": update, "w": write})[0]
    expected = cache.copy()
    for b, start in enumerate(write):
        for s in range(2):
            expected[b, :, (start + s) % 6] = update[b, :, s]
    np.testing.assert_array_equal(ours, expected)


def test_nonzero_compress_unique() -> None:
    x = np.where(RNG.random((3, 4)) > 0.5, rand(3, 4), 0).astype(np.float32)
    check_node("NonZero", {"x": x})
    check_node("Compress", {"x": rand(4, 3), "c": np.array([True, False, True])}, axis=1)
    check_node("Compress", {"x": rand(4, 3), "c": np.array([False, True, True, False, True])})
    v = RNG.integers(0, 5, size=(9,)).astype(np.float32)
    for sort in (0, 1):
        ours, ref = run_both(make_model([helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=sort)],
                                        {"x": v}, ["y", "i", "inv", "c"], opset=11), {"x": v})
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)
    m = RNG.integers(0, 2, size=(3, 4)).astype(np.int64)
    ours, ref = run_both(make_model([helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], axis=1)],
                                    {"x": m}, ["y", "i", "inv", "c"], opset=11), {"x": m})
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_ties_keep_lower_index_first(largest: int) -> None:
    x = RNG.integers(0, 4, size=(3, 10)).astype(np.float32)
    check_node("TopK", {"x": x, "k": i64([4])}, n_outputs=2, axis=1, largest=largest)
    many = RNG.integers(0, 4, size=(2, 50, 3)).astype(np.float32)  # small k: the partition path
    check_node("TopK", {"x": many, "k": i64([5])}, n_outputs=2, axis=1, largest=largest)
    check_node("TopK", {"x": rand(6, 2), "k": i64([6])}, n_outputs=2, axis=0, largest=largest)
    check_node("TopK", {"x": RNG.integers(0, 3, size=(5,)).astype(np.int64), "k": i64([3])}, n_outputs=2,
               largest=largest)


def test_reverse_sequence_and_cumulative() -> None:
    x = rand(4, 3, 2)
    check_node("ReverseSequence", {"x": x, "l": i64([4, 1, 3])}, batch_axis=1, time_axis=0)
    check_node("ReverseSequence", {"x": x.transpose(1, 0, 2).copy(), "l": i64([2, 0, 4])}, batch_axis=0,
               time_axis=1)
    for exclusive in (0, 1):
        for reverse in (0, 1):
            check_node("CumSum", {"x": x, "a": i64(1)}, exclusive=exclusive, reverse=reverse)
            check_node("CumSum", {"x": RNG.integers(-5, 5, size=(3, 4)).astype(np.int32), "a": i64(-1)},
                       exclusive=exclusive, reverse=reverse)


def test_cumprod_against_definition() -> None:
    """onnxruntime 1.32 has no CumProd (opset 26): compare with numpy."""
    x = rand(3, 4)
    node = helper.make_node("CumProd", ["x", "a"], ["y"], exclusive=1, reverse=1)
    model = make_model([node], {"x": x}, ["y"], opset=26, initializers={"a": i64(1)})
    y = webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    rev = np.cumprod(x[:, ::-1], axis=1)[:, ::-1]
    expected = np.concatenate([rev[:, 1:], np.ones((3, 1), np.float32)], axis=1)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_bad_indices_and_attributes_name_the_node() -> None:
    x = rand(3, 4)
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="lookup")
    model = make_model([node], {"x": x, "i": i64([0, 7])}, ["y"])
    sess = webinfer.InferenceSession(model.SerializeToString())
    with pytest.raises(WebinferError, match=r"Gather node 'lookup'.*7.*out of bounds"):
        sess.run(None, {"x": x, "i": i64([0, 7])})
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="scat", reduction="max")
    model = make_model([node], {"x": x, "i": i64([[0]]), "u": rand(1, 1)}, ["y"], opset=16)
    with pytest.raises(WebinferError, match=r"ScatterElements node 'scat'.*reduction 'max'"):
        webinfer.InferenceSession(model.SerializeToString())
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top")
    model = make_model([node], {"x": x}, ["v", "i"], initializers={"k": i64([9])})
    with pytest.raises(WebinferError, match=r"TopK node 'top'.*k = 9.*\[3,4\]"):
        webinfer.InferenceSession(model.SerializeToString())
