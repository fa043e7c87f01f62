"""Elementwise kernels whose numpy formulation is our own approximation (GELU's Phi)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from onnx import helper

from webinfer import activations

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
