"""One GEMM interface for the CPU kernels: OpenBLAS natively, WebAssembly SIMD in Pyodide, numpy last.

Natively numpy's matmul already runs on OpenBLAS (and blas.py reaches its
beta = 1 accumulate).  Pyodide's numpy has no BLAS: a 512^3 float32 product
runs at about 1 GFLOP/s there, which makes matrix products most of a
transformer's or a CNN's time in the browser.  So inside Pyodide (page, Web
Worker or Node.js) float32 products run on the kernels of `wasm/gemm.c`
(loaded by wasm_kernels.py): 40-50 GFLOP/s on one thread, in place on the
numpy buffers.  B is packed into 16-column panels before a product; constant
weights are packed once when the plan is built (`pack`, held by
ops/matmul.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import blas, wasm_kernels

#: Columns per packed panel of B (NR in wasm/gemm.c).
PANEL = 16
#: Multiply-adds below which a product stays with numpy: a kernel call from Python (pack, address
#: lookups, the JS boundary) costs some 10-20 us, about what numpy takes for 32K multiply-adds.
_MIN_WORK = 1 << 15
_F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Packed:
    """B [K, N] in the kernels' panel layout: ceil(N/16) panels of K rows of 16 floats, zero-padded."""

    panels: np.ndarray
    k: int
    n: int


def packed_size(k: int, n: int) -> int:
    """Floats a packed B [K, N] takes."""
    return -(-n // PANEL) * PANEL * k


def _address(x: np.ndarray) -> int:
    """The array's first element: an offset into Pyodide's memory, which the kernels share."""
    return x.__array_interface__["data"][0]


def _elem_strides(x: np.ndarray) -> tuple[int, int] | None:
    """The 2-D float32 array's (row, column) strides in elements, when the kernels can read it in place."""
    rs, cs = x.strides
    if rs < 0 or cs < 0 or rs % 4 or cs % 4:
        return None
    return rs // 4, cs // 4


def _readable(x: np.ndarray) -> np.ndarray:
    """x itself when its strides suit the kernels, else a contiguous copy (negative or odd strides)."""
    return x if _elem_strides(x) is not None else np.ascontiguousarray(x)


class WasmKernels:
    """The exports of one instantiated `gemm-{variant}.wasm`, called with numpy arrays in place."""

    def __init__(self, exports: Any, variant: str) -> None:
        self.variant = variant
        self._pack_b = exports.pack_b
        self._gemm = exports.gemm_packed

    def pack(self, b: np.ndarray, out: np.ndarray | None = None) -> Packed:
        """B [K, N] (float32, any non-negative strides) into panels; `out` reuses a buffer of packed_size."""
        b = _readable(b)
        k, n = b.shape
        size = packed_size(k, n)
        panels = np.empty(size, _F32) if out is None else out[:size]
        rs, cs = _elem_strides(b)  # type: ignore[misc]
        if size:
            self._pack_b(k, n, _address(b), rs, cs, _address(panels))
        return Packed(panels, k, n)

    def gemm(self, a: np.ndarray, b: np.ndarray | Packed, c: np.ndarray, alpha: float = 1.0,
             beta: float = 0.0) -> None:
        """c = alpha * a @ b + beta * c in place, float32; beta 0 never reads c (NaNs in it do not leak).

        a [M, K] may be any strided view (a transpose included); c [M, N]
        needs unit-stride rows.  Shapes and layouts are checked here, since a
        mistake would not raise but write out of bounds.
        """
        packed = b if isinstance(b, Packed) else self.pack(b)
        if a.dtype != _F32 or c.dtype != _F32 or a.ndim != 2 or c.ndim != 2 or packed.k != a.shape[1] \
                or c.shape != (a.shape[0], packed.n):
            raise ValueError(f"cannot compute C {list(c.shape)} {c.dtype} from A {list(a.shape)} {a.dtype} "
                             f"@ B [{packed.k}, {packed.n}] (float32 only)")
        (m, k), n = a.shape, packed.n
        if m == 0 or n == 0:
            return
        if not c.flags.writeable or (n > 1 and c.strides[1] != 4) or np.may_share_memory(c, a) or \
                (m > 1 and (c.strides[0] % 4 or c.strides[0] < 4 * n)):
            raise ValueError(f"C must be writeable with unit-stride rows and must not overlap A, strides {c.strides}")
        a = _readable(a)
        rsa, csa = _elem_strides(a)  # type: ignore[misc]
        self._gemm(m, n, k, alpha, _address(a), rsa, csa, _address(packed.panels), beta, _address(c),
                   c.strides[0] // 4 if m > 1 else n)

    def takes(self, a: np.ndarray, b: np.ndarray | Packed, out: np.ndarray | None = None) -> bool:
        """Whether `matmul` runs a @ b here: float32 operands of rank >= 2, products worth a call
        (_MIN_WORK), and an `out` of the result's shape with unit-stride rows that overlaps neither."""
        if a.dtype != _F32 or a.ndim < 2 or not (isinstance(b, Packed) or (b.dtype == _F32 and b.ndim >= 2)):
            return False
        k, n = (b.k, b.n) if isinstance(b, Packed) else b.shape[-2:]
        if a.shape[-2] * k * n < _MIN_WORK:
            return False
        if out is None:
            return True
        return (out.dtype == _F32 and out.flags.writeable and (n <= 1 or out.strides[-1] == 4)
                and not np.may_share_memory(out, a)
                and (isinstance(b, Packed) or not np.may_share_memory(out, b)))

    def matmul(self, a: np.ndarray, b: np.ndarray | Packed, out: np.ndarray | None = None) -> np.ndarray:
        """np.matmul(a, b, out=out) for float32 operands of rank >= 2 (`takes`), batch dims broadcast.

        A 2-D B is packed once for every batch entry (a batched A without
        `out` runs as one product over all its rows); a batched B is packed
        per batch entry into one reused buffer.
        """
        k = a.shape[-1]
        if isinstance(b, Packed) or b.ndim == 2:
            packed = b if isinstance(b, Packed) else self.pack(b)
            if out is None:
                rows = a if a.ndim == 2 else a.reshape(-1, k)
                res = np.empty((rows.shape[0], packed.n), _F32)
                self.gemm(rows, packed, res)
                return res.reshape(a.shape[:-1] + (packed.n,))
            batch, n = a.shape[:-2], packed.n
        else:
            batch, n = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), b.shape[-1]
            if b.shape[-2] != k:
                raise ValueError(f"matmul: A {list(a.shape)} and B {list(b.shape)} differ in the inner dimension")
        m = a.shape[-2]
        if out is None:
            out = np.empty(batch + (m, n), _F32)
        elif out.shape != batch + (m, n):
            raise ValueError(f"matmul: out {list(out.shape)} is not the result's shape {list(batch + (m, n))}")
        av = np.broadcast_to(a, batch + (m, k))
        if isinstance(b, Packed) or b.ndim == 2:
            for idx in np.ndindex(*batch):
                self.gemm(av[idx], packed, out[idx])
            return out
        bv = np.broadcast_to(b, batch + (k, n))
        scratch = np.empty(packed_size(k, n), _F32)
        for idx in np.ndindex(*batch):
            self.gemm(av[idx], self.pack(bv[idx], scratch), out[idx])
        return out


#: The wrapper around the loaded gemm exports, and the wasm_kernels generation it was made for.
_KERNELS: dict[int, WasmKernels] = {}


async def init_wasm(variants: tuple[str, ...] = wasm_kernels.VARIANTS) -> str:
    """Load the WebAssembly kernels (`wasm_kernels.init`: async compile, warm-up) and return `backend()`;
    natively a no-op.  `variants=()` switches them off (numpy), e.g. to compare."""
    await wasm_kernels.init(tuple(variants))
    return backend()


def wasm() -> WasmKernels | None:
    """The WebAssembly GEMM when it runs here (Pyodide, loaded), else None."""
    exports = wasm_kernels.exports("gemm")
    if exports is None:
        return None
    generation = wasm_kernels.generation()
    if generation not in _KERNELS:
        _KERNELS.clear()
        _KERNELS[generation] = WasmKernels(exports, wasm_kernels.variant() or "")
    return _KERNELS[generation]


def backend() -> str:
    """What runs float32 matrix products: 'wasm-relaxed-simd', 'wasm-simd128', 'openblas' or 'numpy'."""
    kernels = wasm()
    if kernels is not None:
        return "wasm-relaxed-simd" if kernels.variant == "relaxed" else "wasm-simd128"
    return "openblas" if blas.available() else "numpy"


def describe() -> str:
    """`backend()` with the reason when Pyodide runs on numpy instead of the kernels."""
    name = backend()
    return f"{name} ({wasm_kernels.reason()})" if name == "numpy" and wasm_kernels.reason() else name


def pack(b: np.ndarray) -> Packed | None:
    """A constant B [K, N] packed for the kernels once (at plan build), when they run here and take it."""
    kernels = wasm()
    if kernels is None or b.dtype != _F32 or b.ndim != 2:
        return None
    return kernels.pack(b)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """np.matmul(a, b, out=out), on the wasm kernels where they run and take the operands (`takes`)."""
    kernels = wasm()
    if kernels is not None and kernels.takes(a, b, out):
        return kernels.matmul(a, b, out)
    return np.matmul(a, b, out=out)


_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))


def _zero_points(zero: Any, dtype: np.dtype, count: int, what: str) -> np.ndarray:
    """A zero point (scalar, or one per column of B) as int32, checked against the operand's type's range."""
    z = np.asarray(zero)
    if z.dtype.kind not in "iu" or z.ndim > 1 or (z.ndim == 1 and z.size not in (1, count)):
        raise ValueError(f"gemm_int8: {what} zero point must be an integer scalar or {count} values, "
                         f"got {z.dtype}{list(z.shape)}")
    info = np.iinfo(dtype)
    if z.size and (z.min() < info.min or z.max() > info.max):
        raise ValueError(f"gemm_int8: {what} zero point outside {dtype}'s range [{info.min}, {info.max}]")
    return z.astype(np.int32).reshape(-1)


@dataclass(frozen=True)
class PackedInt8:
    """A constant int8/uint8 B [K, N] made ready once (`pack_int8`) for many `gemm_int8` calls: in Pyodide
    its columns as int16 rows minus their zero points (wasm/qgemm.c's layout), elsewhere B itself."""

    b: np.ndarray
    zero: np.ndarray
    columns: np.ndarray | None
    kp: int


def pack_int8(b: np.ndarray, b_zero: Any = 0) -> PackedInt8:
    """B [K, N] int8/uint8 (any strides) and its zero point (a scalar or one per column), packed once."""
    if b.dtype not in _INT8 or b.ndim != 2:
        raise ValueError(f"gemm_int8: needs B [K, N] of int8/uint8, got {b.dtype}{list(b.shape)}")
    k, n = b.shape
    zero = _zero_points(b_zero, b.dtype, n, "B's")
    exports = wasm_kernels.exports("qgemm")
    if exports is None or k * n == 0:
        return PackedInt8(b, zero, None, k)
    b = b if min(b.strides) >= 0 else np.ascontiguousarray(b)  # the kernel's strides are u32
    kp = -(-k // 8) * 8
    columns = np.empty((n, kp), np.int16)
    exports.pack_i8(n, k, _address(b), b.strides[1], b.strides[0], int(b.dtype == np.uint8), _address(zero),
                    int(zero.size > 1), _address(columns), kp)
    return PackedInt8(b, zero, columns, kp)


def gemm_int8(a: np.ndarray, b: np.ndarray | PackedInt8, a_zero: Any = 0, b_zero: Any = 0) -> np.ndarray:
    """(A - a_zero) @ (B - b_zero) as int32: A [M, K] and B [K, N] int8 or uint8 (any strides), a_zero a
    scalar, b_zero a scalar or one per column of B (per-channel weights); a `PackedInt8` B carries its
    own zero point (b_zero is then ignored).

    The product the quantised ops (MatMulInteger, QLinearMatMul, ConvInteger) are made of.  In Pyodide it
    runs on wasm/qgemm.c (int16 dot products, exact int32 sums); elsewhere numpy computes it in float64,
    exact for any K a model has (|terms| <= 255^2, sums below 2^53).  Both wrap sums past int32's range
    the same way (modulo 2^32), so they give identical results.
    """
    packed = b if isinstance(b, PackedInt8) else pack_int8(b, b_zero)
    if a.dtype not in _INT8 or a.ndim != 2 or a.shape[1] != packed.b.shape[0]:
        raise ValueError(f"gemm_int8: needs A [M, K] of int8/uint8 with K = {packed.b.shape[0]} (B's rows), "
                         f"got A {a.dtype}{list(a.shape)}")
    (m, k), n = a.shape, packed.b.shape[1]
    za = _zero_points(a_zero, a.dtype, 1, "A's")
    if za.size != 1:
        raise ValueError("gemm_int8: A's zero point must be one value")
    exports = wasm_kernels.exports("qgemm")
    if exports is None or packed.columns is None or m == 0:
        prod = (a.astype(np.float64) - za[0]) @ (packed.b.astype(np.float64) - packed.zero)
        return prod.astype(np.int64).astype(np.int32)
    a = a if min(a.strides) >= 0 else np.ascontiguousarray(a)
    rows = np.empty((m, packed.kp), np.int16)
    out = np.empty((m, n), np.int32)
    exports.pack_i8(m, k, _address(a), a.strides[0], a.strides[1], int(a.dtype == np.uint8), _address(za), 0,
                    _address(rows), packed.kp)
    exports.qgemm(m, n, packed.kp, _address(rows), _address(packed.columns), _address(out), n)
    return out
