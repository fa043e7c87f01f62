"""gemm.gemm_int8, the int8 product interface, natively (numpy in float64) against an int64 reference
reduced modulo 2^32; tests/browser/wasm_checks.py runs the same comparison on wasm/qgemm.c in Pyodide."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer import gemm


def _reference(a: np.ndarray, b: np.ndarray, za: int, zb: np.ndarray | int) -> np.ndarray:
    """Exact int64 sums, wrapped to int32 as int32 arithmetic wraps them."""
    return ((a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))).astype(np.int32)


def _operand(rng: np.random.Generator, dtype: type, shape: tuple[int, int], layout: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if layout == "transposed":
        return np.ascontiguousarray(rng.integers(info.min, info.max + 1, shape[::-1]).astype(dtype)).T
    if layout == "strided":
        big = rng.integers(info.min, info.max + 1, (2 * shape[0] + 1, 3 * shape[1] + 1)).astype(dtype)
        return big[1::2, ::3][: shape[0], : shape[1]]
    if layout == "reversed":
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)[::-1]
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 5, 7), (17, 33, 65), (2, 300, 17), (0, 4, 5), (4, 0, 3)])
@pytest.mark.parametrize("a_dtype, b_dtype", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "reversed"])
def test_matches_int64_reference(m: int, k: int, n: int, a_dtype: type, b_dtype: type, layout: str) -> None:
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = _operand(rng, a_dtype, (m, k), layout), _operand(rng, b_dtype, (k, n), layout)
    za = int(rng.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1))
    for zb in (0, rng.integers(np.iinfo(b_dtype).min, np.iinfo(b_dtype).max + 1, n).astype(b_dtype)):
        got = gemm.gemm_int8(a, b, za, zb)
        assert got.dtype == np.int32 and got.shape == (m, n)
        np.testing.assert_array_equal(got, _reference(a, b, za, zb))


def test_sums_past_int32_wrap_as_int32_does() -> None:
    """255 * 255 * 40000 > 2^31: the sums wrap modulo 2^32, the same natively and in the wasm kernel."""
    a = np.full((2, 40000), 255, np.uint8)
    b = np.full((40000, 3), 255, np.uint8)
    got = gemm.gemm_int8(a, b, 0, 0)
    assert int(got[0, 0]) == (255 * 255 * 40000 + 2**31) % 2**32 - 2**31
    np.testing.assert_array_equal(got, _reference(a, b, 0, 0))


@pytest.mark.parametrize("a, b, a_zero, b_zero, message", [
    (np.zeros((2, 3), np.float32), np.zeros((3, 4), np.int8), 0, 0, "int8/uint8"),
    (np.zeros((2, 3), np.int8), np.zeros((4, 4), np.int8), 0, 0, "A \\[M, K\\] of int8/uint8 with K"),
    (np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.int8), 300, 0, "outside uint8's range"),
    (np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.int8), 0, np.zeros(3, np.int8), "4 values"),
    (np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.int8), 0.5, 0, "integer"),
])
def test_bad_operands_raise(a: np.ndarray, b: np.ndarray, a_zero: object, b_zero: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gemm.gemm_int8(a, b, a_zero, b_zero)


def test_packed_b_serves_many_products() -> None:
    """A constant B packed once (pack_int8, with per-column zero points) gives what unpacked calls give."""
    rng = np.random.default_rng(3)
    b = rng.integers(-128, 128, (37, 19)).astype(np.int8)
    zb = rng.integers(-128, 128, 19).astype(np.int8)
    packed = gemm.pack_int8(b, zb)
    for m in (1, 6, 33):
        a = rng.integers(0, 256, (m, 37)).astype(np.uint8)
        np.testing.assert_array_equal(gemm.gemm_int8(a, packed, 7), _reference(a, b, 7, zb))
