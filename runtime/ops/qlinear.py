"""onnxruntime's QOperator ops (com.microsoft): QLinearAdd, QLinearMul, QLinearSigmoid,
QLinearLeakyRelu, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat, QGemm, and
DynamicQuantizeMatMul.

`quantize_static(..., quant_format=QOperator)` and `quantize_dynamic` write these into
saved files.  Each follows onnxruntime's CPU kernel (its MLAS routines), not a float
reference: uint8/int8 values, per-tensor scales (QGemm's and DynamicQuantizeMatMul's B
also per column), requantization rounding half to even and saturating.  Integer
products are exact, through quant.py's `exact_matmul`, with constant weights prepared
once at load.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .. import dtypes
from ..ir import Dim, Type
from ..shapes import InferContext, broadcast_shapes, dim_add, dims_compatible, normalize_axis, shape_str, tensor
from .conv import read_window
from .pool import average_pool, window_divisors
from .quant import INT_RANGES, dynamic_quantize, dynamic_range, exact_matmul, matmul_shape
from .registry import Kernel, OpContext, op

MS = "com.microsoft"
#: The element types QOperator tensors may have.
_Q8 = (dtypes.UINT8, dtypes.INT8)


# ------------------------------------------------------------ shared checks and helpers

def _check_q8(ctx: InferContext | OpContext, elem: int | None, name: str) -> None:
    if elem is not None and elem not in _Q8:
        raise ctx.error(f"{name} must be uint8 or int8, got {dtypes.type_name(elem)}")


def _check_same(ctx: InferContext, pairs: Sequence[tuple[int, str]]) -> None:
    """Inputs that must share one element type (the data and its zero points)."""
    known = [(ctx.elem(i), n) for i, n in pairs if ctx.has(i) and ctx.elem(i) is not None]
    for elem, name in known[1:]:
        if elem != known[0][0]:
            raise ctx.error(f"{name} is {dtypes.type_name(elem)} but {known[0][1]} is "
                            f"{dtypes.type_name(known[0][0])}: they must agree")


def _check_scalars(ctx: InferContext, names: dict[int, str]) -> None:
    """Load-time check that the per-tensor parameters hold one value each."""
    for i, name in names.items():
        s = ctx.shape(i) if ctx.has(i) else None
        if s is not None and all(isinstance(d, int) for d in s) and math.prod(s) != 1:  # type: ignore[arg-type]
            raise ctx.error(f"{name} must be a scalar (per-tensor quantization), got shape {shape_str(s)}")


def _scalar(ctx: OpContext, p: np.ndarray | None, name: str, default: float = 0.0) -> float:
    """A per-tensor parameter's one value (`default` for a missing optional zero point)."""
    if p is None:
        return default
    if p.size != 1:
        raise ctx.error(f"{name} must be a scalar (per-tensor quantization), got shape {list(p.shape)}")
    return float(p.reshape(-1)[0])


def _requant(y: np.ndarray, code: int) -> np.ndarray:
    """Float32 values already on the output's scale (zero point added): round half to even, saturate."""
    lo, hi = INT_RANGES[code]
    np.rint(y, out=y)
    np.clip(y, lo, hi, out=y)
    return y.astype(dtypes.storage_dtype(code))


def _elem_or(ctx: OpContext, i: int, default: int = dtypes.UINT8) -> int:
    e = ctx.in_elem(i)
    return e if e is not None else default


# ------------------------------------------------------------ QLinearAdd, QLinearMul

def _binary_rule(ctx: InferContext) -> list[Type | None]:
    _check_q8(ctx, ctx.elem(0), "A")
    _check_same(ctx, [(0, "A"), (2, "A_zero_point"), (3, "B"), (5, "B_zero_point"), (7, "C_zero_point")])
    _check_scalars(ctx, {1: "A_scale", 2: "A_zero_point", 4: "B_scale", 5: "B_zero_point", 6: "C_scale",
                         7: "C_zero_point"})
    return [tensor(ctx.elem(0), broadcast_shapes([ctx.shape(0), ctx.shape(3)], ctx.node))]


def _binary_params(ctx: OpContext, a_scale: np.ndarray, azp: np.ndarray | None, b_scale: np.ndarray,
                   bzp: np.ndarray | None, c_scale: np.ndarray, czp: np.ndarray | None) -> tuple[float, ...]:
    return (_scalar(ctx, a_scale, "A_scale"), _scalar(ctx, azp, "A_zero_point"), _scalar(ctx, b_scale, "B_scale"),
            _scalar(ctx, bzp, "B_zero_point"), _scalar(ctx, c_scale, "C_scale"), _scalar(ctx, czp, "C_zero_point"))


@op("QLinearAdd", since=1, domain=MS, infer=_binary_rule)
def qlinear_add(ctx: OpContext) -> Kernel:
    """C = (A_scale (A - A_zp) + B_scale (B - B_zp)) / C_scale + C_zp, broadcasting.

    As onnxruntime's MLAS kernel: A * (A_scale/C_scale) + B * (B_scale/C_scale) plus one
    folded constant, in float32."""
    code = _elem_or(ctx, 0)

    def run(a: np.ndarray, a_scale: np.ndarray, azp: np.ndarray | None, b: np.ndarray, b_scale: np.ndarray,
            bzp: np.ndarray | None, c_scale: np.ndarray, czp: np.ndarray | None = None) -> tuple[np.ndarray]:
        sa, za, sb, zb, sc, zc = _binary_params(ctx, a_scale, azp, b_scale, bzp, c_scale, czp)
        ra, rb = np.float32(np.float32(sa) / np.float32(sc)), np.float32(np.float32(sb) / np.float32(sc))
        const = np.float32(zc) - ra * np.float32(za) - rb * np.float32(zb)
        y = a.astype(np.float32) * ra
        y = y + b.astype(np.float32) * rb  # broadcasts: a new array of the output's shape
        y += const
        return (_requant(y, code),)

    return run


@op("QLinearMul", since=1, domain=MS, infer=_binary_rule)
def qlinear_mul(ctx: OpContext) -> Kernel:
    """C = (A - A_zp)(B - B_zp) * (A_scale B_scale / C_scale) + C_zp, broadcasting (float32, as MLAS)."""
    code = _elem_or(ctx, 0)

    def run(a: np.ndarray, a_scale: np.ndarray, azp: np.ndarray | None, b: np.ndarray, b_scale: np.ndarray,
            bzp: np.ndarray | None, c_scale: np.ndarray, czp: np.ndarray | None = None) -> tuple[np.ndarray]:
        sa, za, sb, zb, sc, zc = _binary_params(ctx, a_scale, azp, b_scale, bzp, c_scale, czp)
        ratio = np.float32(np.float32(sa) * np.float32(sb) / np.float32(sc))
        y = (a.astype(np.float32) - np.float32(za)) * (b.astype(np.float32) - np.float32(zb))
        y *= ratio
        y += np.float32(zc)
        return (_requant(y, code),)

    return run


# ------------------------------------------------------------ lookup-table activations

def _unary_rule(ctx: InferContext) -> list[Type | None]:
    _check_q8(ctx, ctx.elem(0), "X")
    _check_same(ctx, [(0, "X"), (2, "X_zero_point"), (4, "Y_zero_point")])
    _check_scalars(ctx, {1: "X_scale", 2: "X_zero_point", 3: "Y_scale", 4: "Y_zero_point"})
    return [ctx.type(0)]


def _lookup_kernel(ctx: OpContext, fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    """A kernel mapping each 8-bit value through the table quantize(fn(dequantize(v))), as
    onnxruntime's QlinearBuildLookupTable does; the table is built once when the
    parameters are constants, else per call (256 values)."""
    code = _elem_or(ctx, 0)
    storage = dtypes.storage_dtype(code)
    codes = np.arange(256, dtype=np.uint8).view(storage).astype(np.float32)
    tables: dict[tuple[float, ...], np.ndarray] = {}

    def table(params: tuple[float, ...]) -> np.ndarray:
        t = tables.get(params)
        if t is None:
            sx, zx, sy, zy = (np.float32(v) for v in params)
            y = fn(sx * (codes - zx)) / sy
            y += zy
            t = _requant(y.astype(np.float32), code)
            if len(tables) < 16:
                tables[params] = t
        return t

    def run(x: np.ndarray, x_scale: np.ndarray, xzp: np.ndarray | None, y_scale: np.ndarray,
            yzp: np.ndarray | None = None) -> tuple[np.ndarray]:
        params = (_scalar(ctx, x_scale, "X_scale"), _scalar(ctx, xzp, "X_zero_point"),
                  _scalar(ctx, y_scale, "Y_scale"), _scalar(ctx, yzp, "Y_zero_point"))
        return (table(params)[x.view(np.uint8)],)

    return run


@op("QLinearSigmoid", since=1, domain=MS, infer=_unary_rule)
def qlinear_sigmoid(ctx: OpContext) -> Kernel:
    """Y = quantize(sigmoid(dequantize(X))) through a 256-entry table."""
    return _lookup_kernel(ctx, lambda v: (1.0 / (1.0 + np.exp(-v.astype(np.float64)))).astype(np.float32))


@op("QLinearLeakyRelu", since=1, domain=MS, infer=_unary_rule)
def qlinear_leaky_relu(ctx: OpContext) -> Kernel:
    """Y = quantize(leaky_relu(dequantize(X), alpha)) through a 256-entry table."""
    alpha = np.float32(ctx.attr("alpha", 0.01))
    return _lookup_kernel(ctx, lambda v: np.where(v >= 0, v, v * alpha))


# ------------------------------------------------------------ pooling

def _channels_last(ctx: InferContext | OpContext) -> bool:
    flag = int(ctx.attr("channels_last", 0))
    if flag not in (0, 1):
        raise ctx.error(f"channels_last must be 0 or 1, got {flag}")
    return bool(flag)


def _pool_params_rule(ctx: InferContext) -> None:
    _check_q8(ctx, ctx.elem(0), "X")
    _check_same(ctx, [(0, "X"), (2, "x_zero_point"), (4, "y_zero_point")])
    _check_scalars(ctx, {1: "x_scale", 2: "x_zero_point", 3: "y_scale", 4: "y_zero_point"})


def _global_rule(ctx: InferContext) -> list[Type | None]:
    _pool_params_rule(ctx)
    x = ctx.shape(0)
    if x is None:
        return [tensor(ctx.elem(0))]
    if len(x) < 3:
        raise ctx.error(f"X {shape_str(x)} must have rank >= 3 (batch, channels, spatial...)")
    ones = (1,) * (len(x) - 2)
    shape = (x[0],) + ones + (x[-1],) if _channels_last(ctx) else (x[0], x[1]) + ones
    return [tensor(ctx.elem(0), shape)]


@op("QLinearGlobalAveragePool", since=1, domain=MS, infer=_global_rule)
def qlinear_global_average_pool(ctx: OpContext) -> Kernel:
    """Mean over the spatial axes: the exact integer sum, minus x_zp per cell, scaled by
    x_scale / (y_scale * cells) in float32 and requantized (MLAS's order)."""
    last = _channels_last(ctx)
    code = _elem_or(ctx, 0)

    def run(x: np.ndarray, x_scale: np.ndarray, xzp: np.ndarray, y_scale: np.ndarray,
            yzp: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim < 3:
            raise ctx.error(f"X {list(x.shape)} must have rank >= 3 (batch, channels, spatial...)")
        axes = tuple(range(1, x.ndim - 1)) if last else tuple(range(2, x.ndim))
        cells = math.prod(x.shape[a] for a in axes)
        sums = x.sum(axis=axes, keepdims=True, dtype=np.int64) - int(_scalar(ctx, xzp, "x_zero_point")) * cells
        scale = np.float32(_scalar(ctx, x_scale, "x_scale")) / (np.float32(_scalar(ctx, y_scale, "y_scale"))
                                                                * np.float32(cells))
        y = sums.astype(np.float32) * np.float32(scale)
        np.rint(y, out=y)
        y += np.float32(_scalar(ctx, yzp, "y_zero_point"))
        return (_requant(y, code),)

    return run


def _avg_pool_rule(ctx: InferContext) -> list[Type | None]:
    _pool_params_rule(ctx)
    x = ctx.shape(0)
    win = read_window(ctx, pool=True)
    if win.kernel is None:
        raise ctx.error("required attribute 'kernel_shape' is missing")
    if x is None:
        return [tensor(ctx.elem(0))]
    if len(x) != len(win.kernel) + 2:
        raise ctx.error(f"X {shape_str(x)} must have rank {len(win.kernel) + 2} for kernel_shape {list(win.kernel)}")
    last = _channels_last(ctx)
    spatial = x[1:-1] if last else x[2:]
    out: tuple[Dim, ...] = tuple(win.out_dims(ctx, spatial, win.kernel))
    return [tensor(ctx.elem(0), (x[0],) + out + (x[-1],) if last else (x[0], x[1]) + out)]


@op("QLinearAveragePool", since=1, domain=MS, infer=_avg_pool_rule)
def qlinear_average_pool(ctx: OpContext) -> Kernel:
    """Dequantize, AveragePool (pool.py's kernel, same attributes) in float32, quantize.

    With count_include_pad, onnxruntime divides every window by the whole kernel size, also
    the ceil-mode windows that reach past the end pads (its float AveragePool does not)."""
    last = _channels_last(ctx)
    pool = average_pool(ctx)
    win = read_window(ctx, pool=True)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    kernel_size = math.prod(win.kernel or ())
    code = _elem_or(ctx, 0)

    def run(x: np.ndarray, x_scale: np.ndarray, xzp: np.ndarray | None, y_scale: np.ndarray,
            yzp: np.ndarray | None = None) -> tuple[np.ndarray]:
        xf = (x.astype(np.float32) - np.float32(_scalar(ctx, xzp, "x_zero_point"))) \
            * np.float32(_scalar(ctx, x_scale, "x_scale"))
        if last:
            xf = np.moveaxis(xf, -1, 1)
        y = pool(xf)[0]
        if include_pad:
            y *= window_divisors(ctx, win, xf, True).astype(np.float32) / np.float32(kernel_size)
        if last:
            y = np.moveaxis(y, 1, -1)
        y = y / np.float32(_scalar(ctx, y_scale, "y_scale"))
        y += np.float32(_scalar(ctx, yzp, "y_zero_point"))
        return (_requant(y, code),)

    return run


# ------------------------------------------------------------ QLinearConcat

def _concat_rule(ctx: InferContext) -> list[Type | None]:
    n = len(ctx.node.inputs)
    if n < 5 or (n - 2) % 3:
        raise ctx.error(f"QLinearConcat takes Y_scale, Y_zero_point and then (X, X_scale, X_zero_point) per input; "
                        f"got {n} inputs")
    _check_q8(ctx, ctx.elem(1), "Y_zero_point")
    _check_same(ctx, [(1, "Y_zero_point")] + [(i, f"input {i}") for i in range(2, n, 3)]
                + [(i, f"input {i} (a zero point)") for i in range(4, n, 3)])
    _check_scalars(ctx, {i: f"input {i} (a scale or zero point)" for i in [0, 1] + [j for j in range(3, n)
                                                                              if (j - 2) % 3]})
    shapes = [ctx.shape(i) for i in range(2, n, 3)]
    axis = int(ctx.attr("axis"))
    known = [s for s in shapes if s is not None]
    if not known or len(known) < len(shapes):
        rank = len(known[0]) if known else None
        return [tensor(ctx.elem(1), None if rank is None else (None,) * rank)]
    rank = len(known[0])
    ax = normalize_axis(axis, rank, ctx.node)
    total: Dim = 0
    for s in known:
        if len(s) != rank or not all(dims_compatible(a, b) for j, (a, b) in enumerate(zip(s, known[0])) if j != ax):
            raise ctx.error(f"inputs {[shape_str(t) for t in known]} differ outside axis {axis}")
        total = dim_add(total, s[ax])
    return [tensor(ctx.elem(1), tuple(total if j == ax else d for j, d in enumerate(known[0])))]


@op("QLinearConcat", since=1, domain=MS, infer=_concat_rule)
def qlinear_concat(ctx: OpContext) -> Kernel:
    """Concatenate along `axis`, requantizing each input whose scale or zero point differs from
    Y's through a 256-entry table (dequantize, then quantize dividing by Y_scale), as onnxruntime."""
    axis = int(ctx.attr("axis"))
    code = _elem_or(ctx, 1)
    codes = np.arange(256, dtype=np.uint8).view(dtypes.storage_dtype(code)).astype(np.float32)

    def run(y_scale: np.ndarray, yzp: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray]:
        sy, zy = _scalar(ctx, y_scale, "Y_scale"), _scalar(ctx, yzp, "Y_zero_point")
        parts = []
        for j in range(0, len(rest), 3):
            x, sx, zx = rest[j], _scalar(ctx, rest[j + 1], f"input {j + 3}"), _scalar(ctx, rest[j + 2], f"input {j + 4}")
            if (np.float32(sx), zx) == (np.float32(sy), zy):
                parts.append(x)
                continue
            t = (np.float32(sx) * (codes - np.float32(zx))) / np.float32(sy)
            t += np.float32(zy)
            parts.append(_requant(t, code)[x.view(np.uint8)])
        if len({p.ndim for p in parts}) != 1 or not -parts[0].ndim <= axis < parts[0].ndim:
            raise ctx.error(f"cannot concatenate shapes {[list(p.shape) for p in parts]} along axis {axis}")
        try:
            return (np.concatenate(parts, axis=axis),)
        except ValueError:
            raise ctx.error(f"inputs {[list(p.shape) for p in parts]} differ outside axis {axis}") from None

    return run


# ------------------------------------------------------------ QGemm

def _gemm_dims(a: Sequence[Dim] | None, b: Sequence[Dim] | None, ta: bool, tb: bool,
               ctx: InferContext | OpContext) -> tuple[Dim, Dim] | None:
    for name, s in (("A", a), ("B", b)):
        if s is not None and len(s) != 2:
            raise ctx.error(f"{name} must be 2-D, got {shape_str(tuple(s))}")
    if a is None or b is None:
        return None
    m, k = (a[1], a[0]) if ta else (a[0], a[1])
    k2, n = (b[1], b[0]) if tb else (b[0], b[1])
    if not dims_compatible(k, k2):
        raise ctx.error(f"cannot multiply A {shape_str(tuple(a))} (transA={int(ta)}) by B {shape_str(tuple(b))} "
                        f"(transB={int(tb)}): inner dimensions {k} and {k2} differ")
    return m, n


def _column_param_ok(shape: Sequence[Dim] | None, n: Dim) -> bool:
    if shape is None:
        return True
    size = math.prod(shape) if all(isinstance(d, int) for d in shape) else None  # type: ignore[arg-type]
    return size == 1 or (len(shape) == 1 and dims_compatible(shape[0], n))


def _qgemm_rule(ctx: InferContext) -> list[Type | None]:
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    _check_q8(ctx, ctx.elem(0), "A")
    _check_q8(ctx, ctx.elem(3), "B")
    _check_same(ctx, [(0, "A"), (2, "a_zero_point")])
    _check_same(ctx, [(3, "B"), (5, "b_zero_point")])
    _check_scalars(ctx, {1: "a_scale", 2: "a_zero_point", 7: "y_scale", 8: "y_zero_point"})
    if ctx.has(6) and ctx.elem(6) not in (None, dtypes.INT32):
        raise ctx.error(f"C must be int32, got {dtypes.type_name(ctx.elem(6))}")
    if ctx.has(7) != ctx.has(8):
        raise ctx.error("y_scale and y_zero_point come together (quantized output) or not at all (float output)")
    dims = _gemm_dims(ctx.shape(0), ctx.shape(3), ta, tb, ctx)
    if dims is not None:
        for i, name in ((4, "b_scale"), (5, "b_zero_point")):
            if ctx.has(i) and not _column_param_ok(ctx.shape(i), dims[1]):
                raise ctx.error(f"{name} has shape {shape_str(ctx.shape(i))}: it must be a scalar or hold one value "
                                f"per column of B ({dims[1]})")
    return [tensor(ctx.elem(8) if ctx.has(8) else dtypes.FLOAT, dims)]


def _bound(a_code: int | None, b_code: int | None) -> int:
    """The largest |(a - a_zp)(b - b_zp)| of 8-bit operands."""
    span = {code: hi - lo for code, (lo, hi) in INT_RANGES.items()}
    return (255 if a_code is None else span.get(a_code, 255)) * (255 if b_code is None else span.get(b_code, 255))


class _ConstWeights:
    """B minus its zero point as an integer-valued float matrix [K, N], kept when B and its zero
    point are constants so that a call does no conversion of the weights."""

    def __init__(self, const: bool):
        self.const = const
        self.kept: np.ndarray | None = None

    def __call__(self, b: np.ndarray, bzp: np.ndarray | None, trans: bool) -> np.ndarray:
        if self.kept is not None:
            return self.kept
        bk = b.T if trans else b
        w = bk.astype(np.float32)
        if bzp is not None:
            w -= bzp.astype(np.float32).reshape(-1) if bzp.size > 1 else np.float32(bzp.reshape(-1)[0])
        if self.const:
            self.kept = w
        return w


def _column_param(ctx: OpContext, p: np.ndarray, n: int, name: str) -> np.ndarray:
    if p.size != 1 and (p.ndim != 1 or p.shape[0] != n):
        raise ctx.error(f"{name} has shape {list(p.shape)}: it must be a scalar or hold one value per column ({n})")
    return p.reshape(-1).astype(np.float32) if p.size > 1 else p.reshape(()).astype(np.float32)


@op("QGemm", since=1, domain=MS, infer=_qgemm_rule)
def qgemm(ctx: OpContext) -> Kernel:
    """Y = alpha a_scale b_scale ((A - a_zp)(B - b_zp) + C), C the int32 bias; requantized with
    y_scale and y_zero_point when given, else float32.  b_scale/b_zero_point per tensor or per column."""
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    alpha = np.float32(ctx.attr("alpha", 1.0))
    bound = _bound(ctx.in_elem(0), ctx.in_elem(3))
    weights = _ConstWeights(ctx.const(3) is not None and (len(ctx.node.inputs) < 6 or ctx.const(5) is not None))
    y_code = ctx.in_elem(8)

    def run(a: np.ndarray, a_scale: np.ndarray, azp: np.ndarray, b: np.ndarray, b_scale: np.ndarray,
            bzp: np.ndarray | None, c: np.ndarray | None = None, y_scale: np.ndarray | None = None,
            yzp: np.ndarray | None = None) -> tuple[np.ndarray]:
        _gemm_dims(a.shape, b.shape, ta, tb, ctx)
        n = b.shape[0] if tb else b.shape[1]
        ak = (a.T if ta else a).astype(np.float32) - np.float32(_scalar(ctx, azp, "a_zero_point"))
        acc = exact_matmul(ak, weights(b, bzp, tb), bound)
        if c is not None:
            try:
                acc = acc + c.astype(np.int64)
            except ValueError:
                raise ctx.error(f"C {list(c.shape)} does not broadcast to Y {list(acc.shape)}") from None
        scale = alpha * np.float32(_scalar(ctx, a_scale, "a_scale")) * _column_param(ctx, b_scale, n, "b_scale")
        if y_scale is None:
            return (acc.astype(np.float32) * scale,)
        y = acc.astype(np.float32) * (scale / np.float32(_scalar(ctx, y_scale, "y_scale")))
        y += np.float32(_scalar(ctx, yzp, "y_zero_point"))
        return (_requant(y, y_code if y_code is not None else dtypes.UINT8),)

    return run


# ------------------------------------------------------------ DynamicQuantizeMatMul

def _dq_matmul_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.elem(0) not in (None, dtypes.FLOAT):
        raise ctx.error(f"A must be float, got {dtypes.type_name(ctx.elem(0))}")
    _check_q8(ctx, ctx.elem(1), "B")
    _check_same(ctx, [(1, "B"), (3, "b_zero_point")])
    shape = matmul_shape(ctx.shape(0), ctx.shape(1), ctx.node)
    b = ctx.shape(1)
    if b is not None and len(b) >= 2:
        for i, name in ((2, "b_scale"), (3, "b_zero_point"), (4, "bias")):
            s = ctx.shape(i) if ctx.has(i) else None
            if s is not None and not (_column_param_ok(s, b[-1]) if i < 4 else len(s) == 1
                                      and dims_compatible(s[0], b[-1])):
                raise ctx.error(f"{name} has shape {shape_str(s)}: it must be "
                                f"{'a scalar or ' if i < 4 else ''}one value per column of B ({b[-1]})")
    return [tensor(dtypes.FLOAT, shape)]


@op("DynamicQuantizeMatMul", since=1, domain=MS, infer=_dq_matmul_rule)
def dynamic_quantize_matmul(ctx: OpContext) -> Kernel:
    """Y = (quantize_uint8(A) - a_zp)(B - b_zp) * a_scale * b_scale + bias: A quantized per tensor
    from its range (as DynamicQuantizeLinear), the product exact; B 2-D with per-tensor or
    per-column scale and zero point."""
    bound = _bound(dtypes.UINT8, ctx.in_elem(1))
    weights = _ConstWeights(ctx.const(1) is not None and (len(ctx.node.inputs) < 4 or not ctx.node.inputs[3]
                                                          or ctx.const(3) is not None))

    def run(a: np.ndarray, b: np.ndarray, b_scale: np.ndarray, bzp: np.ndarray | None = None,
            bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        if b.ndim != 2:
            raise ctx.error(f"B must be 2-D [K, N], got shape {list(b.shape)}")
        if a.ndim < 1 or a.shape[-1] != b.shape[0]:
            raise ctx.error(f"cannot multiply A {list(a.shape)} by B {list(b.shape)}")
        n = b.shape[1]
        a_scale, azp = dynamic_range(a)
        aq = dynamic_quantize(a, a_scale, azp).astype(np.float32)
        aq -= azp
        acc = exact_matmul(aq, weights(b, bzp, False), bound)
        y = acc.astype(np.float32) * (a_scale * _column_param(ctx, b_scale, n, "b_scale"))
        if bias is not None:
            if bias.shape != (n,):
                raise ctx.error(f"bias has shape {list(bias.shape)}, expected [{n}]")
            y += bias
        return (y.astype(np.float32, copy=False),)

    return run
