"""onnxruntime's QOperator ops (com.microsoft) against onnxruntime on random data.

The ops run at optimization level BASIC (`KERNELS`): at the default level quant_fusion.py expands
QOperator nodes into float ops between Q/DQ, which the model tests cover; here the kernels
themselves are compared.

Tolerance: quantized outputs agree exactly but for values whose float32 result sits on a
rounding boundary, where summation order or a fused multiply-add in MLAS tips the rounding:
at most one quantum, on at most 1% of the values (`assert_quantized_equal`).  Float outputs
(QGemm without y_scale, DynamicQuantizeMatMul) come from exact integer products scaled once:
rtol 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import WebinferError

from .contrib_util import MS, assert_quantized_equal, contrib_model, one_node

RNG = np.random.default_rng(12)
#: The optimization level that runs each op's own kernel (no QOperator expansion).
KERNELS = webinfer.GraphOptimizationLevel.ORT_ENABLE_BASIC
DTYPES = [np.uint8, np.int8]


@pytest.fixture(autouse=True)
def _same_data_in_any_order() -> None:
    """Each test draws the same data however the tests are ordered or split between workers."""
    global RNG
    RNG = np.random.default_rng(12)


def _q(dtype: type, *shape: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


def _scale(lo: float = 0.01, hi: float = 0.05) -> np.ndarray:
    return np.array(RNG.uniform(lo, hi), np.float32)


def _zp(dtype: type) -> np.ndarray:
    return np.array(RNG.integers(-20, 20) + (128 if dtype is np.uint8 else 0), dtype)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 7, 5), (3, 7, 5)), ((2, 1, 9), (4, 1)), ((5,), (3, 1, 5))],
                         ids=["same", "broadcast", "rank"])
def test_binary(op: str, dtype: type, shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    feed = {"A": _q(dtype, *shapes[0]), "B": _q(dtype, *shapes[1])}
    params = {"as": _scale(), "az": _zp(dtype), "bs": _scale(), "bz": _zp(dtype),
              "cs": _scale(0.02, 0.08 if op == "QLinearAdd" else 0.2), "cz": _zp(dtype)}
    ours, ref = one_node(op, feed, params, ["A", "as", "az", "B", "bs", "bz", "cs", "cz"], level=KERNELS)
    assert_quantized_equal(ours[0], ref[0])


@pytest.mark.parametrize("op,attrs", [("QLinearSigmoid", {}), ("QLinearLeakyRelu", {"alpha": 0.13})])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lookup_activations(op: str, attrs: dict, dtype: type) -> None:
    feed = {"X": _q(dtype, 2, 3, 11, 7)}
    params = {"xs": _scale(0.02, 0.06), "xz": _zp(dtype), "ys": _scale(0.003, 0.02), "yz": _zp(dtype)}
    ours, ref = one_node(op, feed, params, ["X", "xs", "xz", "ys", "yz"], level=KERNELS, **attrs)
    assert_quantized_equal(ours[0], ref[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 13)])
def test_global_average_pool(dtype: type, channels_last: int, shape: tuple[int, ...]) -> None:
    feed = {"X": _q(dtype, *shape)}
    params = {"xs": _scale(), "xz": _zp(dtype), "ys": _scale(0.005, 0.01), "yz": _zp(dtype)}
    ours, ref = one_node("QLinearGlobalAveragePool", feed, params, ["X", "xs", "xz", "ys", "yz"],
                         channels_last=channels_last, level=KERNELS)
    assert_quantized_equal(ours[0], ref[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[3, 3]),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=0),
    dict(kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 0, 1], count_include_pad=1, ceil_mode=1),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(kernel_shape=[2, 2], channels_last=1),
], ids=["plain", "pads", "ceil_include", "same", "nhwc"])
def test_average_pool(dtype: type, attrs: dict) -> None:
    feed = {"X": _q(dtype, 2, 3, 9, 8)}
    params = {"xs": _scale(), "xz": _zp(dtype), "ys": _scale(0.005, 0.01), "yz": _zp(dtype)}
    ours, ref = one_node("QLinearAveragePool", feed, params, ["X", "xs", "xz", "ys", "yz"], level=KERNELS, **attrs)
    assert_quantized_equal(ours[0], ref[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [1, -1])
def test_concat(dtype: type, axis: int) -> None:
    shapes = [(2, 3, 5), (2, 4, 5), (2, 1, 5)] if axis == 1 else [(2, 3, 5), (2, 3, 2), (2, 3, 7)]
    feed = {f"x{i}": _q(dtype, *s) for i, s in enumerate(shapes)}
    ys, yz = _scale(), _zp(dtype)
    params = {"ys": ys, "yz": yz, "s0": ys, "z0": yz,  # the first input already has Y's parameters
              "s1": _scale(), "z1": _zp(dtype), "s2": _scale(), "z2": _zp(dtype)}
    names = ["ys", "yz"] + [n for i in range(3) for n in (f"x{i}", f"s{i}", f"z{i}")]
    ours, ref = one_node("QLinearConcat", feed, params, names, axis=axis, level=KERNELS)
    assert_quantized_equal(ours[0], ref[0])


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)])
@pytest.mark.parametrize("trans", [(0, 0), (1, 1), (0, 1)])
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("quantized_out", [False, True])
def test_qgemm(a_dtype: type, b_dtype: type, trans: tuple[int, int], per_column: bool, quantized_out: bool) -> None:
    m, k, n = 5, 37, 11
    ta, tb = trans
    feed = {"A": _q(a_dtype, *((k, m) if ta else (m, k)))}
    cols = (n,) if per_column else ()
    params = {"as": _scale(), "az": _zp(a_dtype), "B": _q(b_dtype, *((n, k) if tb else (k, n))),
              "bs": RNG.uniform(0.01, 0.05, cols).astype(np.float32),
              # onnxruntime's per-column B takes one zero point for all columns of signed B
              "bz": (np.full(cols, _zp(b_dtype)) if b_dtype is np.int8 else
                     RNG.integers(100, 150, cols)).astype(b_dtype),
              "C": RNG.integers(-5000, 5000, (n,)).astype(np.int32)}
    names = ["A", "as", "az", "B", "bs", "bz", "C"]
    if quantized_out:
        params.update(ys=_scale(2.0, 4.0), yz=_zp(a_dtype))
        names += ["ys", "yz"]
    ours, ref = one_node("QGemm", feed, params, names, transA=ta, transB=tb, alpha=0.75, level=KERNELS)
    if quantized_out:
        assert_quantized_equal(ours[0], ref[0])
    else:
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6, atol=1e-6)
        assert ours[0].dtype == np.float32


@pytest.mark.parametrize("b_dtype", DTYPES)
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dynamic_quantize_matmul(b_dtype: type, per_column: bool, with_bias: bool) -> None:
    k, n = 600, 13  # K beyond float32's exact range for one block: the exact path must hold
    feed = {"A": RNG.normal(0, 1, (2, 7, k)).astype(np.float32)}
    cols = (n,) if per_column else ()
    params = {"B": _q(b_dtype, k, n), "bs": RNG.uniform(0.01, 0.05, cols).astype(np.float32),
              "bz": (np.zeros(cols) if b_dtype is np.int8 else RNG.integers(100, 150, cols)).astype(b_dtype)}
    names = ["A", "B", "bs", "bz"]
    if with_bias:
        params["bias"] = RNG.normal(0, 1, n).astype(np.float32)
        names.append("bias")
    ours, ref = one_node("DynamicQuantizeMatMul", feed, params, names, level=KERNELS)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6, atol=1e-4)


def _load(node_inputs: list[str], op: str, feed: dict, params: dict, **attrs: object) -> None:
    node = helper.make_node(op, node_inputs, ["y"], domain=MS, name="bad", **attrs)
    model = contrib_model([node], feed, ["y"], params)
    sess = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))
    sess.run(None, feed)


def test_errors_name_node_and_shapes() -> None:
    feed = {"A": _q(np.uint8, 3, 4), "B": _q(np.uint8, 3, 4)}
    params = {"as": np.array([0.1, 0.2], np.float32), "az": _zp(np.uint8), "bs": _scale(), "bz": _zp(np.uint8),
              "cs": _scale()}
    with pytest.raises(WebinferError, match=r"QLinearAdd node 'bad'.*A_scale must be a scalar.*\[2\]"):
        _load(["A", "as", "az", "B", "bs", "bz", "cs"], "QLinearAdd", feed, params)
    params["as"] = _scale()
    params["bz"] = np.array(3, np.int8)
    with pytest.raises(WebinferError, match=r"B_zero_point is int8 but A is uint8"):
        _load(["A", "as", "az", "B", "bs", "bz", "cs"], "QLinearAdd", feed, params)
    gemm = {"as": _scale(), "az": _zp(np.uint8), "B": _q(np.int8, 5, 6), "bs": _scale(), "bz": np.array(0, np.int8)}
    with pytest.raises(WebinferError, match=r"QGemm node 'bad'.*inner dimensions 4 and 5"):
        _load(["A", "as", "az", "B", "bs", "bz"], "QGemm", {"A": feed["A"]}, gemm)
    gemm["B"] = _q(np.int8, 4, 6)
    gemm["bs"] = np.ones(5, np.float32)
    with pytest.raises(WebinferError, match=r"b_scale has shape \[5\].*per column of B \(6\)"):
        _load(["A", "as", "az", "B", "bs", "bz"], "QGemm", {"A": feed["A"]}, gemm)
    with pytest.raises(WebinferError, match=r"QLinearConcat.*got 4 inputs"):
        _load(["as", "az", "A", "as"], "QLinearConcat", {"A": feed["A"]},
              {"as": _scale(), "az": _zp(np.uint8)}, axis=0)
