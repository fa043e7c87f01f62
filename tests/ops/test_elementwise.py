"""Elementwise kernels whose numpy formulation is our own approximation (GELU's Phi)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from onnx import helper

from webinfer import activations
from webinfer import special as special_functions

from .util import LAYOUTS, check_node, load_node, strided


def _exact_gelu(x: np.ndarray) -> np.ndarray:
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64).ravel()]).reshape(x.shape)


def test_gelu_float32_matches_exact_erf_gelu() -> None:
    """Gelu (erf) on float32, over the range where Phi varies and far beyond it: within 1e-6 of the
    float64 formula (the tanh-form evaluation of special.py), exact 0 and +-huge values."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-12, 12, 40001), rng.standard_normal(5000) * 3,
                        [0.0, 1e-30, -1e-30, 1e20, -1e20, 3e38, -3e38]]).astype(np.float32)
    (got,) = check_node("Gelu", {"x": x}, opset=20, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(got, _exact_gelu(x), rtol=0, atol=1e-6)
    assert got[-4] == np.float32(1e20) and got[-3] == 0 and got[-2] == np.float32(3e38) and got[-1] == 0


def test_gelu_float16_and_float64() -> None:
    """float16 against onnxruntime; float64 (which onnxruntime lacks) against the formula, to 1e-12."""
    x = np.random.default_rng(4).standard_normal((4, 33)) * 4
    check_node("Gelu", {"x": x.astype(np.float16)}, opset=20, rtol=2e-3, atol=2e-3)
    sess = load_node(helper.make_node("Gelu", ["x"], ["y"]), {"x": x}, opset=20)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], _exact_gelu(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [1, 128, (1 << 14) + 1])  # clamped below exp's overflow, then not
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sigmoid_tails_and_specials(size: int, layout: str) -> None:
    """Sigmoid over its whole range, infinities and NaN, on small (clamped) and large arrays, any layout:
    within 1e-7 of the float64 logistic (onnxruntime's approximation: 5e-7), no overflow warning."""
    ends = [-1e4, -100.0, -89.0, -88.0, -20.0, 0.0, 20.0, 100.0, np.inf, -np.inf, np.nan]
    x = np.resize(np.concatenate([ends, np.linspace(-30, 30, 997)]), (2, size)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (got,) = check_node("Sigmoid", {"x": strided(x, layout)}, rtol=1e-5, atol=5e-7)
    with np.errstate(over="ignore"):
        want = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("value", [-1e4, -710.0, -100.0, -20.0, -1.5, 0.0, 3.0, 800.0, np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("shape", [(1, 1), ()])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_sigmoid_of_one_value(value: float, shape: tuple, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """A single value (a classifier's score) is computed in Python's float64 and rounded once."""
    monkeypatch.setattr(activations, "logistic_of_negated_", lambda y: pytest.fail("took the array path"))
    x = np.full(shape, value, dtype)
    sess = load_node(helper.make_node("Sigmoid", ["x"], ["y"]), {"x": x}, opset=13)
    (got,) = sess.run(None, {"x": x})
    with np.errstate(over="ignore"):
        want = (1 / (1 + np.exp(-np.float64(value)))).astype(dtype)
    assert got.shape == shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype != np.float16 else 1e-3, atol=0)


@pytest.mark.parametrize("low,high", [(0.0, 1.0), (-0.5, 2.5)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_prelu_per_channel_slope_both_arithmetic_forms(low: float, high: float, layout: str) -> None:
    """PRelu's max(x, slope*x) (all slopes <= 1) and min(x, 0)*slope + max(x, 0) (some above 1) forms
    give onnxruntime's result exactly, on strided inputs too."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    slope = rng.uniform(low, high, (6, 1, 1)).astype(np.float32)
    check_node("PRelu", {"x": strided(x, layout)}, initializers={"slope": slope}, rtol=0, atol=0)
    check_node("PRelu", {"x": strided(x, layout), "slope": slope}, rtol=0, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu_and_hardswish_in_place_match_onnxruntime(layout: str, dtype: type) -> None:
    """The in-place Relu (a clip on big arrays, as here) and HardSwish (block by block through a work
    buffer: several blocks here) that Conv and MatMul epilogues apply give onnxruntime's Relu and
    HardSwish on any layout (rtol 1e-6: one float32 rounding of x / 6), and keep NaN and the infinities
    (also on a small array, where Relu is numpy's maximum)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 5, 2 * special_functions.BLOCK // 15 + 7)) * 5).astype(np.float32)
    for op in ("Relu", "HardSwish"):
        fn = activations.Activation(activations.ACTIVATIONS[op], ())
        (want,) = check_node(op, {"x": x}, opset=14)
        y = strided(x.astype(dtype), layout)
        if layout == "contiguous":
            y = y.copy()
        fn(y)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
        special = strided(np.array([[np.nan, np.inf, -np.inf, -2.0, 2.0]], dtype), layout).copy()
        with np.errstate(invalid="ignore"):
            fn(special)  # HardSwish(-inf) is -inf * 0: NaN, as in onnxruntime
        want = [[np.nan, np.inf, 0.0, 0.0, 2.0]] if op == "Relu" else [[np.nan, np.inf, np.nan, -2.0 / 6, 2.0 * (2.0 / 6 + 0.5)]]
        np.testing.assert_allclose(special, want, rtol=1e-6)
