"""blas.py: C += A @ B through numpy's own OpenBLAS, checked against numpy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from webinfer import blas, threads

OPENBLAS = [path for api, path in threads.blas_libraries() if api == "openblas"]


def test_found_where_numpy_runs_on_openblas() -> None:
    """Linux numpy wheels bundle OpenBLAS (CI runs on them): the binding must be found there."""
    if not OPENBLAS:
        pytest.fail("numpy's BLAS is not OpenBLAS here; these tests assume the PyPI wheels (threadpoolctl installed)")
    assert blas.available()


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_accumulate_adds_the_product(dtype: type, rtol: float) -> None:
    rng = np.random.default_rng(0)
    for m, k, n in [(7, 5, 3), (1, 9, 4), (6, 1, 1), (64, 65, 49)]:
        # rows a whole row apart but not adjacent: the leading dimensions must reach BLAS
        a = rng.standard_normal((m, k + 3)).astype(dtype)[:, :k]
        b = rng.standard_normal((k, n + 2)).astype(dtype)[:, 1:n + 1]
        c_full = rng.standard_normal((m, n + 5)).astype(dtype)
        c = c_full[:, 2:n + 2]
        want = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
        blas.accumulate(a, b, c)
        np.testing.assert_allclose(c, want, rtol=rtol, atol=rtol)
        untouched = c_full.copy()
        untouched[:, 2:n + 2] = c
        np.testing.assert_array_equal(c_full, untouched)


@pytest.mark.parametrize("orders", ["CCF", "FCC", "CFC", "FFF", "FFC"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_column_major_operands_go_through_the_transpose_flags(orders: str, dtype: type, rtol: float) -> None:
    """Column-major A, B or C (a transposed view, Fortran order, a slice of one) are read in place."""
    rng = np.random.default_rng(1)
    for m, k, n in [(7, 5, 3), (1, 9, 4), (6, 1, 1), (33, 40, 17)]:
        def operand(rows: int, cols: int, order: str) -> np.ndarray:
            full = rng.standard_normal((rows + 2, cols + 3)).astype(dtype)
            return (full if order == "C" else np.asfortranarray(full))[1:rows + 1, 2:cols + 2]
        a, b, c = operand(m, k, orders[0]), operand(k, n, orders[1]), operand(n, m, orders[2]).T
        assert blas.takes(a) and blas.takes(b) and blas.takes(c)
        want = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
        blas.accumulate(a, b, c)
        np.testing.assert_allclose(c, want, rtol=rtol, atol=rtol)


def test_nothing_to_add_leaves_c() -> None:
    c = np.ones((3, 4), np.float32)
    blas.accumulate(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), c)
    np.testing.assert_array_equal(c, 1)


def test_rejects_what_blas_would_misread() -> None:
    a, b, c = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32), np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="cannot add"):
        blas.accumulate(a, b[:3], c)
    with pytest.raises(ValueError, match="one float dtype"):
        blas.accumulate(a, b.astype(np.float64), c)
    with pytest.raises(ValueError, match="one float dtype"):
        blas.accumulate(a.astype(np.int32), b.astype(np.int32), c.astype(np.int32))
    for bad in (np.ones((3, 8), np.float32)[:, ::2], np.ones((6, 8), np.float32)[::2, ::2], a[::-1]):
        assert not blas.takes(bad)
        with pytest.raises(ValueError, match="neither row- nor column-major"):
            blas.accumulate(bad, b, c)
    square = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        blas.accumulate(square, square.copy(), square)
    c.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        blas.accumulate(a, b, c)


def test_never_loads_a_second_blas(tmp_path: Path) -> None:
    """A copy of the library is not loaded in this process, so it is not bound (it would have its own threads)."""
    if not OPENBLAS:
        pytest.fail("numpy's BLAS is not OpenBLAS here")
    copy = tmp_path / Path(OPENBLAS[0]).name
    shutil.copy(OPENBLAS[0], copy)
    assert blas._bind(str(copy)) is None
    assert blas._bind(OPENBLAS[0]) is not None
