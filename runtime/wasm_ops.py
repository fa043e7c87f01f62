"""numpy-facing wrappers of the non-GEMM WebAssembly kernels: depthwise conv, bias + activation epilogue,
softmax and LayerNorm (wasm/conv.c, wasm/elementwise.c, wasm/rows.c).

Each wrapper runs its kernel in place on numpy buffers where the kernels are
loaded (Pyodide, wasm_kernels.py) and the operands suit them (float32, the
layouts the kernel reads), and otherwise returns None or False so that the
caller's numpy path runs: natively that is always the case, and there numpy
(with OpenBLAS behind it) is the faster path anyway.  The shapes and layouts
are checked here, since a kernel given a wrong size would not raise but
write out of bounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import wasm_kernels

_F32 = np.dtype(np.float32)
#: Elements below which numpy keeps a pass: a kernel call from Python costs some 10-20 us.
_MIN_SIZE = 2048


def _address(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


def activation_code(act: Any) -> tuple[int, float, float] | None:
    """(code, p0, p1) of a fused activation (activations.Activation) the kernels apply, (0, 0, 0)
    for None, None for one they do not (GELU, Tanh: the caller runs it)."""
    if act is None:
        return 0, 0.0, 0.0
    return act.wasm_args()


def _as_rows(y: np.ndarray, split: int) -> np.ndarray | None:
    """y as a 2-D view [prod(shape[:split]), prod(shape[split:])] with unit-stride rows a constant stride
    apart, when its layout allows (any split of a contiguous array does); else None."""
    if not y.flags.writeable:
        return None
    rows, cols = math.prod(y.shape[:split]), math.prod(y.shape[split:])
    expect = 4
    for d in range(y.ndim - 1, split - 1, -1):
        if y.shape[d] != 1 and y.strides[d] != expect:
            return None
        expect *= y.shape[d]
    rs = 4 * cols
    for d in range(split - 1, -1, -1):
        if y.shape[d] != 1:
            rs = y.strides[d]
            break
    if rs < 4 * cols or rs % 4:
        return None
    expect = rs
    for d in range(split - 1, -1, -1):
        if y.shape[d] != 1 and y.strides[d] != expect:
            return None
        expect *= y.shape[d]
    return as_strided(y, (rows, cols), (rs, 4))


def bias_act(y: np.ndarray, bias: np.ndarray | None, axis: int, act: Any) -> bool:
    """y = act(y + bias) in place, bias [y.shape[axis]] broadcast along `axis` (a conv's channels; the
    last axis: a product's columns), in one pass (an activation the kernel lacks, e.g. GELU, runs after
    it); False where the kernel does not run (not loaded, not float32, a layout it cannot read), y
    untouched, for numpy to do it."""
    kernels = wasm_kernels.exports("elementwise")
    if kernels is None or y.dtype != _F32 or y.size < _MIN_SIZE or (bias is None and act is None):
        return False
    axis %= y.ndim
    rows = _as_rows(y, axis + 1 if bias is not None and axis < y.ndim - 1 else y.ndim - 1)
    if rows is None or (bias is not None and bias.size != y.shape[axis]):
        return False
    code = activation_code(act)
    mode, nb, addr = 0, 1, 0
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=_F32)
        mode, nb, addr = (2, bias.size, _address(bias)) if axis == y.ndim - 1 else (1, bias.size, _address(bias))
    if bias is not None or code is not None:
        kernels.bias_act(_address(rows), rows.shape[0], rows.shape[1], rows.strides[0] // 4, addr, mode, nb,
                         *(code or (0, 0.0, 0.0)))
    if code is None:
        act(y)
    return True


def depthwise2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, kernel: tuple[int, ...],
                strides: tuple[int, ...], begin: tuple[int, ...], out: tuple[int, ...],
                act: Any) -> np.ndarray | None:
    """The 2-D depthwise conv of x [N, C, H, W] with w [C, kh * kw] (dilation 1), plus bias [C], then
    `act` when the kernel has it (else the caller applies it: see `activation_code`); None where the
    kernel does not run (not loaded, not float32, a column stride other than 1 or 2)."""
    kernels = wasm_kernels.exports("conv")
    if kernels is None or x.dtype != _F32 or w.dtype != _F32 or x.ndim != 4 or strides[1] not in (1, 2):
        return None
    code = activation_code(act) or (0, 0.0, 0.0)
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (pt, pl), (oh, ow) = kernel, strides, begin, out
    if w.shape != (c, kh * kw) or (bias is not None and bias.shape != (c,)) or oh <= 0 or ow <= 0:
        return None
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=_F32)
    hp = max(pt + h, (oh - 1) * sh + kh)
    wp = max(pl + wd, -(-ow // 4) * 4 * sw + kw - 1)
    scratch = np.empty(hp * wp, _F32)
    y = np.empty((n, c, oh, ow), _F32)
    kernels.depthwise2d(_address(x), _address(y), _address(w), 0 if b is None else _address(b), n * c, c, h, wd,
                        oh, ow, kh, kw, sh, sw, pt, pl, _address(scratch), hp, wp, *code)
    return y


def softmax(x: np.ndarray, out: np.ndarray | None = None, masked_zero: bool = False) -> np.ndarray | None:
    """Softmax over the last axis of a float32 array into `out` (a new array when None; x itself allowed);
    `masked_zero`: a row of -inf gives zeros (attention), else NaN (the Softmax op).  None where the
    kernel does not run it."""
    kernels = wasm_kernels.exports("rows")
    if kernels is None or x.dtype != _F32 or x.ndim == 0 or x.size < _MIN_SIZE or not x.flags.c_contiguous:
        return None
    if out is None:
        out = np.empty_like(x)
    elif out.shape != x.shape or out.dtype != _F32 or not out.flags.c_contiguous or not out.flags.writeable:
        return None
    n = x.shape[-1]
    kernels.softmax(_address(x), _address(out), x.size // n, n, int(masked_zero))
    return out


def layernorm(x: np.ndarray, n: int, scale: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray | None:
    """LayerNormalization of float32 x over its last `n` elements per row (a new array), scale and bias
    spanning those n; None where the kernel does not run it."""
    kernels = wasm_kernels.exports("rows")
    if kernels is None or x.dtype != _F32 or x.size < _MIN_SIZE or n == 0 or x.size % n \
            or scale.size != n or scale.dtype != _F32 or (bias is not None and (bias.size != n or bias.dtype != _F32)):
        return None
    x = np.ascontiguousarray(x)
    scale = np.ascontiguousarray(scale)
    bias = None if bias is None else np.ascontiguousarray(bias)
    y = np.empty_like(x)
    kernels.layernorm(_address(x), _address(y), x.size // n, n, _address(scale),
                      0 if bias is None else _address(bias), eps)
    return y


def im2col_panels(x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], begin: tuple[int, ...],
                  out_w: int, r0: int, nr: int, ones: bool, dst: np.ndarray) -> bool:
    """The im2col columns of output rows [r0, r0 + nr) of one image x [C, H, W] (float32, contiguous,
    dilation 1, column stride 1 or 2) into `dst` in the GEMM's panel layout (gemm.Packed's), K = C*kh*kw
    taps plus a row of ones with `ones`; False where the kernel does not run."""
    kernels = wasm_kernels.exports("conv")
    if kernels is None or x.dtype != _F32 or x.ndim != 3 or not x.flags.c_contiguous or strides[1] not in (1, 2):
        return False
    c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl) = kernel, strides, begin
    size = -(-(nr * out_w) // 16) * 16 * (c * kh * kw + int(ones))
    if dst.dtype != _F32 or not dst.flags.c_contiguous or dst.size < size or not dst.flags.writeable:
        raise ValueError(f"im2col_panels: dst of {dst.size} floats for {size}")
    kernels.im2col_panels(_address(x), c, h, w, kh, kw, sh, sw, pt, pl, r0, nr, out_w, int(ones), _address(dst))
    return True


#: The `binary` kernel's operators.
BINARY_OPS = {"Add": 0, "Sub": 1, "Mul": 2}


def _broadcast_mode(shape: tuple[int, ...], other: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """How an operand of shape `other` broadcasts onto `shape` as the `binary` kernel reads it:
    (b_mode, nb, rows, cols), or None for a pattern it lacks."""
    if other == shape:
        return 0, 1, 1, math.prod(shape)
    if len(other) > len(shape):
        return None
    o = (1,) * (len(shape) - len(other)) + tuple(other)
    k = len(o)
    while k and o[k - 1] == 1:
        k -= 1  # o[k:] are ones: broadcast across the trailing dims
    j = 0
    while j < k and o[j] == 1:
        j += 1  # o[:j] are ones: repeated across the leading dims
    if o[j:k] != shape[j:k]:
        return None
    if k == len(o):  # a trailing row vector
        return 2, 1, math.prod(shape[:j]), math.prod(shape[j:])
    return 1, math.prod(shape[j:k]), math.prod(shape[:k]), math.prod(shape[k:])


def binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """a op b (Add, Sub, Mul) for float32 operands where one has the result's shape and the other that
    shape, a scalar, a per-channel [C, 1, 1] or a trailing row vector (a commutative op may have them
    swapped); a new array, or None where the kernel does not run it (numpy then does)."""
    kernels = wasm_kernels.exports("elementwise")
    if kernels is None or a.dtype != _F32 or b.dtype != _F32 or max(a.size, b.size) < _MIN_SIZE \
            or not a.flags.c_contiguous or not b.flags.c_contiguous:
        return None
    if a.shape != b.shape and b.size > a.size and op != "Sub":
        a, b = b, a
    mode = _broadcast_mode(a.shape, b.shape)
    if mode is None:
        return None
    b_mode, nb, rows, cols = mode
    y = np.empty(a.shape, _F32)
    kernels.binary(_address(a), _address(b), _address(y), rows, cols, b_mode, nb, BINARY_OPS[op])
    return y


def pointwise_panels(x: np.ndarray, q0: int, q1: int, ones: bool, dst: np.ndarray) -> bool:
    """Columns q0 .. q1 of x [C, P] (float32, contiguous: a 1x1 conv's input, which already is its
    column matrix) into `dst` in the GEMM's panel layout, plus a row of ones with `ones`: the im2col
    kernel on x as one row of P cells, started q0 cells in; False where the kernel does not run."""
    kernels = wasm_kernels.exports("conv")
    if kernels is None or x.dtype != _F32 or x.ndim != 2 or not x.flags.c_contiguous or not 0 <= q0 < q1 <= x.shape[1]:
        return False
    c, p = x.shape
    size = -(-(q1 - q0) // 16) * 16 * (c + int(ones))
    if dst.dtype != _F32 or not dst.flags.c_contiguous or dst.size < size or not dst.flags.writeable:
        raise ValueError(f"pointwise_panels: dst of {dst.size} floats for {size}")
    kernels.im2col_panels(_address(x) + 4 * q0, c, 1, p, 1, 1, 1, 1, 0, 0, 0, 1, q1 - q0, int(ones), _address(dst))
    return True
