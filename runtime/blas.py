"""The one product numpy cannot ask its BLAS for: C += A @ B (GEMM with beta = 1).

`numpy.matmul` always overwrites its output, and OpenBLAS zeroes that
output in a pass of its own before multiplying.  A conv whose bias or
residual is added afterwards then pays two more passes over the output,
which for a ResNet's wide 1x1 convs are out of cache.  Accumulating into an
output that already holds the bias or the residual does both in the
GEMM's own stores.

So this module calls `cblas_sgemm`/`cblas_dgemm` of the OpenBLAS numpy has
already loaded, through ctypes.  It never loads a second BLAS (the
library must already be in the process), so thread limits set on numpy's
BLAS (threads.py) hold here too.  Where no such library is found (Pyodide,
whose numpy has no BLAS; numpy built on MKL or Accelerate; Windows)
`available()` is False and callers keep their numpy path.  The integer
width (OpenBLAS's ILP64 builds, numpy's wheels among them, take 64-bit
sizes) is read from the library's own build configuration, and the
binding is checked on a small product before first use.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .threads import blas_libraries

#: CBLAS enum values (cblas.h): row-major storage, no transposition, transposition.
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
#: OpenBLAS symbol decorations, most specific first: numpy >= 2 wheels (scipy-openblas64),
#: numpy 1.x wheels (openblas64_), scipy-openblas32, then plain builds.
_DECORATIONS = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))


#: cblas_?gemm entry points of one loaded OpenBLAS, by numpy dtype.
_Gemm = dict[np.dtype, Any]


def _library_paths() -> list[str]:
    """OpenBLAS libraries numpy may have loaded: the ones threadpoolctl sees, then those its wheel bundles."""
    paths = [p for api, p in blas_libraries() if api == "openblas"]  # threadpoolctl's view, when installed
    root = Path(np.__file__).parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        if folder.is_dir():
            paths += sorted(str(p) for p in folder.iterdir() if "openblas" in p.name)
    return list(dict.fromkeys(paths))


def _bind(path: str) -> _Gemm | None:
    """The GEMMs of the OpenBLAS at `path` if the process has already loaded it, else None."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_NOLOAD)
    except OSError:
        return None
    for prefix, suffix in _DECORATIONS:
        try:
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
            sgemm = getattr(lib, f"{prefix}cblas_sgemm{suffix}")
            dgemm = getattr(lib, f"{prefix}cblas_dgemm{suffix}")
        except AttributeError:
            continue
        config.restype = ctypes.c_char_p
        size = ctypes.c_int64 if b"USE64BITINT" in (config() or b"") else ctypes.c_int32
        funcs: _Gemm = {}
        for dtype, func, real in ((np.dtype(np.float32), sgemm, ctypes.c_float),
                                  (np.dtype(np.float64), dgemm, ctypes.c_double)):
            func.restype = None
            func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, size, size, size, real,
                             ctypes.c_void_p, size, ctypes.c_void_p, size, real, ctypes.c_void_p, size]
            funcs[dtype] = func
        return funcs
    return None


def _works(gemm: _Gemm) -> bool:
    """Whether the binding computes a small product, in both dtypes and both storage orders, as numpy does."""
    rng = np.random.default_rng(0)
    orders: tuple[Literal["C", "F"], ...] = ("C", "F")
    for dtype in gemm:
        for order in orders:
            a = np.asarray(rng.standard_normal((3, 7)), dtype, order=order)
            b = np.asarray(rng.standard_normal((7, 5)), dtype, order=order)
            c = np.asarray(rng.standard_normal((3, 5)), dtype, order=order)
            want = c + a @ b
            _call(gemm, a, b, c)
            if not np.allclose(c, want, rtol=1e-5, atol=1e-5):
                return False
    return True


@functools.lru_cache(maxsize=1)
def _gemm() -> _Gemm | None:
    if sys.platform == "emscripten" or not hasattr(os, "RTLD_NOLOAD"):
        return None
    for path in _library_paths():
        gemm = _bind(path)
        if gemm is not None and _works(gemm):
            return gemm
    return None


def available() -> bool:
    """Whether `accumulate` can run (found and checked once per process)."""
    return _gemm() is not None


def _layout(x: np.ndarray) -> tuple[int, int] | None:
    """How BLAS reads the matrix `x` in place: (transpose flag, leading dimension), else None.

    Row-major storage (unit-stride rows, a whole row or more apart) goes as
    it is; column-major storage is the row-major transpose, which BLAS
    reads through its transpose flag at no cost.  Strides along an axis of
    length 1 never matter.  Anything else (steps, negative or zero strides)
    BLAS cannot express.
    """
    (rows, cols), (down, across), item = x.shape, x.strides, x.itemsize
    if cols <= 1 or across == item:
        if rows <= 1:
            return _NO_TRANS, max(cols, 1)
        if down % item == 0 and down >= item * max(cols, 1):
            return _NO_TRANS, down // item
    if rows <= 1 or down == item:
        if cols <= 1:
            return _TRANS, max(rows, 1)
        if across % item == 0 and across >= item * rows:
            return _TRANS, across // item
    return None


def takes(x: np.ndarray) -> bool:
    """Whether `accumulate` can read the 2-D matrix `x` as it lies (else give it a compact copy)."""
    return x.ndim == 2 and _layout(x) is not None


def _operand(x: np.ndarray, name: str) -> tuple[int, int]:
    layout = _layout(x)
    if layout is None:
        raise ValueError(f"{name} {list(x.shape)}: strides {x.strides} are neither row- nor column-major "
                         "(pass a compact copy)")
    return layout


def _call(gemm: _Gemm, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    trans_c, ldc = _operand(c, "C")
    if trans_c == _TRANS:
        a, b, c = b.T, a.T, c.T  # column-major C: accumulate into its row-major transpose, C^T += B^T A^T
    (m, k), n = a.shape, b.shape[1]
    (trans_a, lda), (trans_b, ldb) = _operand(a, "A"), _operand(b, "B")
    gemm[c.dtype](_ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, a.ctypes.data, lda,
                  b.ctypes.data, ldb, 1.0, c.ctypes.data, ldc)


def accumulate(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """c += a @ b in place, for 2-D float32 or float64 matrices, each row- or column-major (`takes`).

    Callers check `available()` first.  Shapes, dtypes and layouts are
    checked here, since a mistake would not raise but write out of bounds.
    """
    gemm = _gemm()
    if gemm is None:
        raise RuntimeError("no BLAS to accumulate with: check blas.available() first")
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2 or a.shape[1] != b.shape[0] or c.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f"cannot add A {list(a.shape)} @ B {list(b.shape)} to C {list(c.shape)}")
    if not (a.dtype == b.dtype == c.dtype) or c.dtype not in gemm:
        raise ValueError(f"accumulate takes one float dtype, got {a.dtype}, {b.dtype}, {c.dtype}")
    if not c.flags.writeable or np.may_share_memory(c, a) or np.may_share_memory(c, b):
        raise ValueError("C must be writeable and must not overlap A or B")
    if c.size and a.shape[1]:
        _call(gemm, a, b, c)
