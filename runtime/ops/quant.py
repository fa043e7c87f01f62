"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul,
QLinearConv, MatMulInteger, ConvInteger, and the fused webinfer.MatMulIntegerScaled.

Quantized tensors of every width (int16 down to int2, float8, float4) are
taken as storage (`exotic=True`): sub-byte ints are held as their values,
small floats as bit patterns decoded with dtypes.py.

Integer products are exact and run through the float32 GEMM (gemm.py):
operands less their zero points are integers held exactly in float32, and
K is split into blocks short enough that every partial sum of a block stays
within 2**24 (`k_block`, from the zero-point-shifted ranges), so each block's
float32 product is exact; blocks are summed in float64 (exact below 2**53).
Constant weights are shifted, converted and laid out once when the kernel is
built.  Wider types (int16, int32) whose single products pass 2**24 go
through float64 or int64 products instead.  Requantization rounds half to
even, as ONNX specifies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .. import dtypes, gemm as cpu_gemm
from ..activations import fused_activation
from ..errors import ShapeInferenceError
from ..ir import Dim, Node, Shape, Type
from ..shapes import InferContext, broadcast_shapes, dims_compatible, normalize_axis, shape_str, tensor
from .conv import (ConvWeights, check_channels, conv_compute, conv_geometry, conv_shape, kernel_of, pack_weights,
                   read_window)
from .registry import OpContext, op

#: Saturation range of each integer quantized type.
INT_RANGES: dict[int, tuple[int, int]] = {
    dtypes.UINT8: (0, 255), dtypes.INT8: (-128, 127), dtypes.UINT16: (0, 65535), dtypes.INT16: (-32768, 32767),
    dtypes.UINT4: (0, 15), dtypes.INT4: (-8, 7), dtypes.UINT2: (0, 3), dtypes.INT2: (-2, 1),
    dtypes.INT32: (-(1 << 31), (1 << 31) - 1),
}
FLOAT_QUANT_TYPES = {dtypes.FLOAT8E4M3FN, dtypes.FLOAT8E4M3FNUZ, dtypes.FLOAT8E5M2, dtypes.FLOAT8E5M2FNUZ,
                     dtypes.FLOAT4E2M1, dtypes.FLOAT6E2M3, dtypes.FLOAT6E3M2}
QUANT_TYPES = (set(INT_RANGES) - {dtypes.INT32}) | FLOAT_QUANT_TYPES
#: Element types a dequantized tensor may have.
REAL_TYPES = {dtypes.FLOAT, dtypes.FLOAT16, dtypes.BFLOAT16}


def values(x: np.ndarray, code: int | None) -> np.ndarray:
    """Storage as numbers numpy computes on: small floats decoded to float32."""
    return dtypes.small_float_to_float32(x, code) if code in dtypes.SMALL_FLOATS else x


def _compute_dtype(code: int | None) -> np.dtype:
    """The numpy dtype arithmetic "in precision `code`" runs in (bfloat16 is rounded after)."""
    return np.dtype({dtypes.FLOAT16: np.float16, dtypes.DOUBLE: np.float64}.get(code, np.float32))  # type: ignore[arg-type]


def _round_bf16(x: np.ndarray) -> np.ndarray:
    return dtypes.small_float_to_float32(dtypes.float32_to_bfloat16(x), dtypes.BFLOAT16)


def _is_per_tensor(shape: Sequence[Dim]) -> bool:
    return len(shape) == 0 or (len(shape) == 1 and shape[0] == 1)


# ------------------------------------------------------------ granularity

def param_shape_error(name: str, p_shape: Sequence[Dim], x_shape: Sequence[Dim], axis: int, block: int) -> str:
    how = f"blocked quantization (axis {axis}, block_size {block})" if block else f"per-axis quantization (axis {axis})"
    return (f"{name} has shape {shape_str(tuple(p_shape))}, which fits neither per-tensor nor {how} "
            f"of an input of shape {shape_str(tuple(x_shape))}")


def check_param_shape(ctx: InferContext, i: int, name: str, axis: int, block: int) -> None:
    """Load-time check that scale/zero point input i matches the data's shape (when both are known)."""
    x_shape, p_shape = ctx.shape(0), ctx.shape(i)
    if block < 0:
        raise ctx.error(f"block_size must be positive, got {block}")
    if x_shape is None or p_shape is None or _is_per_tensor(p_shape):
        return
    ax = normalize_axis(axis, len(x_shape), ctx.node)
    if block == 0:
        ok = len(p_shape) == 1 and dims_compatible(p_shape[0], x_shape[ax])
    else:
        blocks = [-(-d // block) if j == ax and isinstance(d, int) else None if j == ax else d
                  for j, d in enumerate(x_shape)]
        ok = len(p_shape) == len(x_shape) and all(dims_compatible(p, b) for p, b in zip(p_shape, blocks))
    if not ok:
        raise ctx.error(param_shape_error(name, p_shape, x_shape, axis, block))


def _check_scale_and_zero_point(ctx: InferContext, prefix: str) -> None:
    """Load-time shape checks of input 1 (`{prefix}_scale`) and the optional input 2 (`{prefix}_zero_point`)
    against the data, at the node's granularity (axis, block_size)."""
    axis, block = ctx.attr("axis", 1), ctx.attr("block_size", 0)
    check_param_shape(ctx, 1, f"{prefix}_scale", axis, block)
    if ctx.has(2):
        check_param_shape(ctx, 2, f"{prefix}_zero_point", axis, block)


def broadcast_param(p: np.ndarray, x_shape: tuple[int, ...], axis: int, block: int, name: str) -> np.ndarray:
    """A scale or zero point shaped to broadcast against data of `x_shape`."""
    if _is_per_tensor(p.shape):
        return p.reshape(())
    rank = len(x_shape)
    if not -rank <= axis < rank:
        raise ValueError(param_shape_error(name, p.shape, x_shape, axis, block))
    ax = axis % rank
    if block == 0:
        if p.ndim != 1 or p.shape[0] != x_shape[ax]:
            raise ValueError(param_shape_error(name, p.shape, x_shape, axis, block))
        return p.reshape([-1 if j == ax else 1 for j in range(rank)])
    expected = tuple(-(-d // block) if j == ax else d for j, d in enumerate(x_shape))
    if p.shape != expected:
        raise ValueError(param_shape_error(name, p.shape, x_shape, axis, block))
    return np.repeat(p, block, axis=ax)[tuple(slice(0, d) if j == ax else slice(None) for j, d in enumerate(x_shape))]


# ------------------------------------------------------------ QuantizeLinear

def _quant_out_elem(ctx: Any, output_dtype: int, zp_elem: int | None) -> int:
    if output_dtype and zp_elem is not None and output_dtype != zp_elem:
        raise ctx.error(f"output_dtype is {dtypes.type_name(output_dtype)} but y_zero_point is "
                        f"{dtypes.type_name(zp_elem)}: they must agree")
    code = output_dtype or zp_elem or dtypes.UINT8
    if code not in QUANT_TYPES:
        raise ctx.error(f"cannot quantize to {dtypes.type_name(code)}")
    return code


def quantize(q: np.ndarray, zp: np.ndarray | None, dst: int, saturate: bool = True) -> np.ndarray:
    """Storage of type `dst` for `q` = x / scale (already divided; a fresh array, which this
    overwrites): round half to even, add the zero point, saturate.  Small floats round
    with Cast's rules instead."""
    if dst in FLOAT_QUANT_TYPES:
        q = q.astype(np.float32, copy=False)
        if zp is not None:
            q += zp
        return dtypes.float_to_small_float(q, dst, saturate)
    np.rint(q, out=q)
    q = q.astype(np.float64 if dst == dtypes.INT32 else np.float32, copy=False)
    lo, hi = INT_RANGES[dst]
    if zp is None or not np.any(zp):
        np.clip(q, lo, hi, out=q)
        return q.astype(dtypes.storage_dtype(dst))
    # saturating before adding the zero point gives the same integers (the sum is exact in range, and
    # saturates either way outside it), and lets the add write the storage type in the same pass
    z = np.asarray(zp, dtype=q.dtype)
    np.clip(q, lo - z, hi - z, out=q)
    out = np.empty(q.shape, dtypes.storage_dtype(dst))
    np.add(q, z, out=out, casting="unsafe")
    return out


def _quantize_rule(ctx: InferContext) -> list[Type | None]:
    dst = _quant_out_elem(ctx, ctx.attr("output_dtype", 0), ctx.elem(2) if ctx.has(2) else None)
    _check_scale_and_zero_point(ctx, "y")
    return [tensor(dst, ctx.shape(0))]


@op("QuantizeLinear", since=10, infer=_quantize_rule, exotic=True)
def quantize_linear(ctx: OpContext) -> Any:
    """y = saturate(round(x / y_scale) + y_zero_point), per tensor, per axis or per block.

    The division runs in the `precision` attribute's type, else y_scale's.
    """
    axis, block, saturate = ctx.attr("axis", 1), ctx.attr("block_size", 0), bool(ctx.attr("saturate", 1))
    x_elem, s_elem, zp_elem = ctx.in_elem(0), ctx.in_elem(1), ctx.in_elem(2)
    dst = _quant_out_elem(ctx, ctx.attr("output_dtype", 0), zp_elem)
    precision = ctx.attr("precision", 0) or s_elem
    cdt = _compute_dtype(precision)

    def run(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        s = broadcast_param(values(scale, s_elem), x.shape, axis, block, "y_scale")
        q = values(x, x_elem).astype(cdt, copy=False) / s.astype(cdt, copy=False)
        if precision == dtypes.BFLOAT16:
            q = _round_bf16(q)
        z = None if zp is None else broadcast_param(values(zp, dst), x.shape, axis, block, "y_zero_point")
        return (quantize(q, z, dst, saturate),)

    return run


def _quantize_to_grid_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.elem(2) not in (dtypes.UINT8, dtypes.INT8):
        raise ctx.error(f"zero point must be uint8 or int8, got {dtypes.type_name(ctx.elem(2))}")
    return [tensor(dtypes.FLOAT, ctx.shape(0))]


@op("QuantizeToGrid", domain="webinfer", infer=_quantize_to_grid_rule)
def quantize_to_grid(ctx: OpContext) -> Any:
    """clip(round(x / scale), lo - zero_point, hi - zero_point) as float32 (per-tensor scale and zero
    point, lo..hi the zero point's type range): QuantizeLinear followed by DequantizeLinear(., 1,
    zero_point), which passes/quant_fusion.py fuses; the same integers without the storage between
    (saturating before or after the zero point's add gives the same, see `quantize`)."""
    lo, hi = INT_RANGES[ctx.in_elem(2) or dtypes.UINT8]

    def run(x: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> tuple[np.ndarray]:
        q = np.divide(x, scale.reshape(()), dtype=np.float32)
        np.rint(q, out=q)
        z = np.float32(zp.reshape(-1)[0])
        np.clip(q, np.float32(lo) - z, np.float32(hi) - z, out=q)
        return (q,)

    return run


# ------------------------------------------------------------ DequantizeLinear

def _dequant_out_elem(ctx: Any, output_dtype: int, scale_elem: int | None) -> int | None:
    code = output_dtype or scale_elem
    if code is not None and code not in REAL_TYPES:
        raise ctx.error(f"cannot dequantize to {dtypes.type_name(code)}"
                        + ("" if output_dtype else ": set output_dtype to float, float16 or bfloat16"))
    return code


def _dequantize_rule(ctx: InferContext) -> list[Type | None]:
    out = _dequant_out_elem(ctx, ctx.attr("output_dtype", 0), ctx.elem(1))
    if ctx.has(2) and None not in (ctx.elem(0), ctx.elem(2)) and ctx.elem(0) != ctx.elem(2):
        raise ctx.error(f"x is {dtypes.type_name(ctx.elem(0))} but x_zero_point is {dtypes.type_name(ctx.elem(2))}: "
                        "they must agree")
    _check_scale_and_zero_point(ctx, "x")
    return [tensor(out, ctx.shape(0))]


@op("DequantizeLinear", since=10, infer=_dequantize_rule, exotic=True)
def dequantize_linear(ctx: OpContext) -> Any:
    """y = (x - x_zero_point) * x_scale; the difference is exact (integers in float32, or
    float64 for int32), the product in float32 rounded once to the output type
    (`output_dtype`, else x_scale's)."""
    axis, block = ctx.attr("axis", 1), ctx.attr("block_size", 0)
    x_elem, s_elem = ctx.in_elem(0), ctx.in_elem(1)
    out = _dequant_out_elem(ctx, ctx.attr("output_dtype", 0), s_elem) or dtypes.FLOAT
    wide = np.float64 if x_elem == dtypes.INT32 else np.float32
    #: A constant scale of exactly 1 (the QDQ fusion's integer-grid inputs) multiplies by nothing.
    const_scale = ctx.const(1)
    unit = None if const_scale is None else bool(np.all(values(np.asarray(const_scale), s_elem) == 1))

    def run(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        s = broadcast_param(values(scale, s_elem), x.shape, axis, block, "x_scale").astype(np.float32, copy=False)
        if zp is None:
            y = np.array(values(x, x_elem), dtype=wide)
        else:  # one pass: the difference of integers (or small floats' values) is exact in `wide`
            y = np.subtract(values(x, x_elem), broadcast_param(values(zp, x_elem), x.shape, axis, block,
                                                               "x_zero_point"), dtype=wide)
        if unit is None or not unit:
            y *= s
        return (dtypes.convert(y.astype(np.float32, copy=False), dtypes.FLOAT, out),)

    return run


# ------------------------------------------------------------ DynamicQuantizeLinear

def _dynamic_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.UINT8, ctx.shape(0)), tensor(dtypes.FLOAT, ()), tensor(dtypes.UINT8, ())]


def dynamic_range(x: np.ndarray) -> tuple[np.float32, np.float32]:
    """uint8 scale and zero point (as float32) covering x's range widened to include 0.

    ONNX's DynamicQuantizeLinear and onnxruntime's dynamic quantization of
    activations (GetQuantizationParameter, used by its quantized GEMMs) agree on
    this rule, so the kernels built on either share it.
    """
    hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255))
    zp = np.float32(np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)))
    return scale, zp


def dynamic_quantize(x: np.ndarray, scale: np.float32, zp: np.float32) -> np.ndarray:
    """round(x / scale) + zp saturated to 0..255, as float32 integer values (exact)."""
    q = np.divide(x, scale, dtype=np.float32)
    np.rint(q, out=q)
    q += zp
    return np.clip(q, 0, 255, out=q)


def dynamic_quantize_uint8(x: np.ndarray, scale: np.float32, zp: np.float32) -> np.ndarray:
    """`dynamic_quantize` as uint8 storage, saturating before the zero point is added so the add
    writes the storage in the same pass (the same integers: see `quantize`)."""
    q = np.divide(x, scale, dtype=np.float32)
    np.rint(q, out=q)
    np.clip(q, -zp, 255 - zp, out=q)
    out = np.empty(q.shape, np.uint8)
    np.add(q, zp, out=out, casting="unsafe")
    return out


@op("DynamicQuantizeLinear", since=11, infer=_dynamic_rule)
def dynamic_quantize_linear(ctx: OpContext) -> Any:
    """uint8 quantization with scale and zero point from the data's range (widened to include 0)."""

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale, zp = dynamic_range(x)
        y = dynamic_quantize_uint8(x, scale, zp)
        return y, np.asarray(scale, dtype=np.float32), np.asarray(zp, dtype=np.uint8)

    return run


def _dynamic_grid_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.FLOAT, ctx.shape(0)), tensor(dtypes.FLOAT, ()), tensor(dtypes.UINT8, ())]


@op("DynamicQuantizeToGrid", domain="webinfer", infer=_dynamic_grid_rule)
def dynamic_quantize_to_grid(ctx: OpContext) -> Any:
    """DynamicQuantizeLinear whose quantised output is given less its zero point, as float32 integers
    (|value| <= 255), for webinfer.MatMulIntegerScaled (`a_grid`) to multiply as it is: the same
    integers (saturating before or after the zero point's add gives the same, see `quantize`)
    without the uint8 storage and the subtraction each product would do.  Scale and zero point as
    DynamicQuantizeLinear gives them."""

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale, zp = dynamic_range(x)
        q = np.divide(x, scale, dtype=np.float32)
        np.rint(q, out=q)
        np.clip(q, -zp, 255 - zp, out=q)
        return q, np.asarray(scale, dtype=np.float32), np.asarray(zp, dtype=np.uint8)

    return run


# ------------------------------------------------------------ integer products

def exact_dtype(bound: int, k: int) -> np.dtype | None:
    """The float type in which a product of k terms, each at most `bound` in magnitude, sums
    exactly through BLAS (every partial sum below 2**24 for float32, 2**53 for float64);
    None when neither is exact."""
    total = bound * max(k, 1)
    if total < (1 << 24):
        return np.dtype(np.float32)
    if total < (1 << 53):
        return np.dtype(np.float64)
    return None


def exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """a @ b for integer-valued arrays, exact, where `bound` caps |a_ik * b_kj|.

    BLAS in float32 while every partial sum is below 2**24, float64 below
    2**53, numpy's int64 matmul beyond; the result is int64.  Operands already
    in the chosen float type are used as they are (no copy).  The wide-type
    fallback of `IntegerOperand.matmul`.
    """
    dt = exact_dtype(bound, a.shape[-1])
    if dt is None:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    return np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False)).astype(np.int64)


#: float32 holds every integer of magnitude up to 2**24 exactly.
F32_EXACT = 1 << 24
#: float64 holds every integer of magnitude up to 2**53 exactly.
F64_EXACT = 1 << 53


def shifted_max(code: int | None, zp: np.ndarray | None) -> int | None:
    """The largest |q - zp| over every q of the integer type `code` and every zero point in `zp`
    (None: no zero point); None for types without an integer range."""
    if code not in INT_RANGES:
        return None
    lo, hi = INT_RANGES[code]
    zmin, zmax = (0, 0) if zp is None or zp.size == 0 else (int(zp.min()), int(zp.max()))
    return max(hi - zmin, zmax - lo, 0)


def k_block(bound: int) -> int:
    """Terms per block such that a sum of that many products, each at most `bound` in magnitude,
    never leaves float32's exact integers (0 when a single product may already)."""
    return F32_EXACT // bound if bound else F32_EXACT


def blocked_matmul(a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    """a @ b for integer-valued float32 operands, exactly, with K split into equal blocks of at most
    `block` terms (`k_block`): each block's float32 product is exact, and blocks add in float64.

    Returns float32 when K fits one block, else float64.  Strided
    operands are sliced in place (the GEMM reads them through their strides).
    """
    k = a.shape[-1]
    if k <= block:
        return cpu_gemm.matmul(a, b)
    parts = -(-k // block)
    step = -(-k // parts)
    return _sum_float64(cpu_gemm.matmul(a[..., k0:k0 + step], b[k0:k0 + step] if b.ndim == 1 else b[..., k0:k0 + step, :])
                        for k0 in range(0, k, step))


def _sum_float64(parts: Iterable[np.ndarray]) -> np.ndarray:
    """The sum of exact float32 partial products in float64 (where their total may pass 2^24)."""
    it = iter(parts)
    acc = next(it).astype(np.float64)
    for part in it:
        acc += part
    return acc


@dataclass(frozen=True)
class IntegerOperand:
    """An integer operand less its zero point, held as float32 (exact), with a bound on its magnitude.

    Made once at build time for constant weights (the conversion and the
    zero-point subtraction then cost nothing per call), per call for data.
    `values` is None when the type is too wide for float32 (`int_values`).
    """

    values: np.ndarray | None
    int_values: np.ndarray | None
    max_abs: int

    @staticmethod
    def of(x: np.ndarray, zp: np.ndarray | None, code: int | None, exact_max: bool = False) -> IntegerOperand:
        """x - zp; `exact_max`: measure the magnitude bound on the data (constants), else take it from
        the type's range and the zero points (no pass over the data)."""
        bound = shifted_max(code, zp)
        if bound is None or bound > F32_EXACT:
            wide = x.astype(np.int64) if zp is None else x.astype(np.int64) - zp.astype(np.int64)
            return IntegerOperand(None, wide, 1 << 32 if bound is None else bound)
        v = x.astype(np.float32) if zp is None else np.subtract(x, zp, dtype=np.float32)
        if exact_max:
            bound = int(np.abs(v).max()) if v.size else 0
        return IntegerOperand(v, None, bound)

    def matmul(self, other: IntegerOperand) -> np.ndarray:
        """self @ other, exact, as float32 or float64 integer values (`blocked_matmul`) when that is
        exact, else as int64."""
        bound = self.max_abs * other.max_abs
        k = self.values.shape[-1] if self.values is not None else self.int_values.shape[-1]  # type: ignore[union-attr]
        if self.values is None or other.values is None or bound > F32_EXACT or bound * k >= F64_EXACT:
            a = self.int_values if self.values is None else self.values
            b = other.int_values if other.values is None else other.values
            return exact_matmul(a, b, bound)  # type: ignore[arg-type]
        return blocked_matmul(self.values, other.values, k_block(bound))


def to_int32(acc: np.ndarray) -> np.ndarray:
    """An exact integer product as int32, wrapping as 32-bit accumulation does."""
    if acc.dtype.kind == "f" and acc.size and float(np.abs(acc).max()) >= (1 << 31):
        acc = acc.astype(np.int64)
    return acc.astype(np.int32)


def matmul_shape(a: Shape | None, b: Shape | None, node: Node) -> Shape | None:
    """numpy.matmul's output shape (1-D operands promoted and dropped), symbolic dims allowed."""
    if a is None or b is None:
        return None
    if not a or not b:
        raise ShapeInferenceError(f"{node.label()}: matmul operands must have rank >= 1, got "
                                  f"{shape_str(a)} and {shape_str(b)}")
    a2 = a if len(a) > 1 else (1,) + a
    b2 = b if len(b) > 1 else b + (1,)
    if not dims_compatible(a2[-1], b2[-2]):
        raise ShapeInferenceError(f"{node.label()}: cannot multiply {shape_str(a)} by {shape_str(b)}: "
                                  f"inner dimensions {a2[-1]} and {b2[-2]} differ")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], node)
    assert batch is not None
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return tuple(out)


def _row_param(p: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A per-row (left operand) zero point or scale: an M-vector becomes a column."""
    if p.ndim == 1 and p.size > 1 and a.ndim >= 2:
        return p.reshape(-1, 1)
    return p


def _matmul_integer_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.INT32, matmul_shape(ctx.shape(0), ctx.shape(1), ctx.node))]


@op("MatMulInteger", since=10, infer=_matmul_integer_rule)
def matmul_integer(ctx: OpContext) -> Any:
    """(A - a_zero_point) @ (B - b_zero_point) in int32; zero points per tensor, per row of A
    or per column of B.  A constant B (and its zero point) is shifted and converted once."""
    a_elem, b_elem = ctx.in_elem(0), ctx.in_elem(1)
    weights = constant_operand(ctx, 1, 3, b_elem)

    def run(a: np.ndarray, b: np.ndarray, azp: np.ndarray | None = None,
            bzp: np.ndarray | None = None) -> tuple[np.ndarray]:
        lhs = IntegerOperand.of(a, None if azp is None else _row_param(azp, a), a_elem)
        rhs = weights if weights is not None else IntegerOperand.of(b, bzp, b_elem)
        return (to_int32(lhs.matmul(rhs)),)

    return run


def constant_operand(ctx: OpContext, data: int, zero_point: int, code: int | None) -> IntegerOperand | None:
    """Input `data` less input `zero_point`, prepared once, when both are constants (or the zero
    point is absent); None otherwise."""
    w = ctx.const(data)
    has_zp = len(ctx.node.inputs) > zero_point and bool(ctx.node.inputs[zero_point])
    zp = ctx.const(zero_point) if has_zp else None
    if w is None or (has_zp and zp is None):
        return None
    return IntegerOperand.of(np.asarray(w), None if zp is None else np.asarray(zp), code, exact_max=True)


def _matmul_integer_scaled_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.FLOAT, matmul_shape(ctx.shape(0), ctx.shape(1), ctx.node))]


@op("MatMulIntegerScaled", domain="webinfer", infer=_matmul_integer_scaled_rule)
def matmul_integer_scaled(ctx: OpContext) -> Any:
    """float(MatMulInteger(A, B, a_zero_point, b_zero_point)) * scale [+ bias], as fused from
    onnxruntime's dynamic quantisation chain (passes/quant_fusion.py), bit for bit what the chain
    gives: the exact product rounded once to float32, as the int32 -> float Cast rounds it, then one
    float32 multiply and add, then the fused `activation` (GELU) in place.  B is constant and
    prepared once; `scale` has rank <= 1.  With `a_grid`, A is DynamicQuantizeToGrid's output (uint8
    values less their zero point, as float32) and a_zero_point is absent."""
    a_elem = ctx.in_elem(0)
    weights = constant_operand(ctx, 1, 3, ctx.in_elem(1))
    act = fused_activation(ctx)
    #: A holds uint8 values less their zero point already, as float32 (webinfer.DynamicQuantizeToGrid).
    a_grid = bool(ctx.attr("a_grid", 0))
    if weights is None:
        raise ctx.error("B and b_zero_point must be constants (the fusion only makes this op for them)")

    def run(a: np.ndarray, b: np.ndarray, azp: np.ndarray | None, bzp: np.ndarray | None, scale: np.ndarray,
            bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        lhs = IntegerOperand(a, None, 255) if a_grid else \
            IntegerOperand.of(a, None if azp is None else _row_param(azp, a), a_elem)
        acc = lhs.matmul(weights)
        y = acc if acc.dtype == np.float32 else to_int32(acc).astype(np.float32) if acc.dtype.kind == "i" \
            else acc.astype(np.float32)
        np.multiply(y, scale, out=y)
        if bias is not None:
            y += bias
        if act is not None:
            act(y)
        return (y,)

    return run


def _qlinear_matmul_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(ctx.elem(7), matmul_shape(ctx.shape(0), ctx.shape(3), ctx.node))]


def _requantize_scale(a_scale: np.ndarray, b_scale: np.ndarray, y_scale: np.ndarray, s_elem: int | None) -> np.ndarray:
    """a_scale * b_scale / y_scale in the scales' own precision (as ONNX's reference does)."""
    cdt = _compute_dtype(s_elem)
    m = a_scale.astype(cdt) * b_scale.astype(cdt)
    m = _round_bf16(m) if s_elem == dtypes.BFLOAT16 else m
    m = m / y_scale.astype(cdt)
    return _round_bf16(m) if s_elem == dtypes.BFLOAT16 else m


@op("QLinearMatMul", since=10, infer=_qlinear_matmul_rule, exotic=True)
def qlinear_matmul(ctx: OpContext) -> Any:
    """Quantized matmul: dequantize-free integer product, then requantize to y's type.

    Float8 operands (opset 21) decode to float and multiply in float32.
    """
    a_elem, b_elem, s_elem, y_elem = ctx.in_elem(0), ctx.in_elem(3), ctx.in_elem(1), ctx.in_elem(7)
    y_code = y_elem if y_elem is not None else dtypes.UINT8
    integer = a_elem in INT_RANGES and b_elem in INT_RANGES
    weights = constant_operand(ctx, 3, 5, b_elem) if integer else None

    def run(a: np.ndarray, a_scale: np.ndarray, azp: np.ndarray, b: np.ndarray, b_scale: np.ndarray,
            bzp: np.ndarray, y_scale: np.ndarray, yzp: np.ndarray) -> tuple[np.ndarray]:
        av = values(a, a_elem)
        bv = values(b, b_elem)
        if integer:
            lhs = IntegerOperand.of(av, _row_param(azp, a), a_elem)
            rhs = weights if weights is not None else IntegerOperand.of(bv, bzp, b_elem)
            acc = lhs.matmul(rhs).astype(np.float64)
        else:
            a_d = av - _row_param(values(azp, a_elem), a)
            b_d = bv - values(bzp, b_elem)
            acc = np.matmul(a_d.astype(np.float32), b_d.astype(np.float32)).astype(np.float64)
        scale = _requantize_scale(_row_param(values(a_scale, s_elem), a), values(b_scale, s_elem),
                                  values(y_scale, s_elem), s_elem)
        q = acc * scale.astype(np.float64)
        return (quantize(q, values(yzp, y_code).astype(np.float64), y_code),)

    return run


# ------------------------------------------------------------ QLinearConv

def _group(ctx: Any) -> int:
    group = int(ctx.attr("group", 1))
    if group < 1:
        raise ctx.error(f"group must be >= 1, got {group}")
    return group


def _qlinear_conv_rule(ctx: InferContext) -> list[Type | None]:
    x, w = ctx.shape(0), ctx.shape(3)
    check_channels(ctx, x, w, _group(ctx))
    if x is not None and len(x) < 3:
        raise ctx.error(f"x {shape_str(x)} must have rank >= 3 (batch, channels, spatial...)")
    win = read_window(ctx, pool=False)
    kernel = kernel_of(ctx, win, w)
    m = w[0] if w is not None else None
    if x is None:
        shape = None if w is None else (None, m) + (None,) * (len(w) - 2)
    elif kernel is None:
        shape = (x[0], m) + (None,) * (len(x) - 2)
    else:
        shape = (x[0], m, *win.out_dims(ctx, x[2:], kernel))
    return [tensor(ctx.elem(7), shape)]


def conv_blocks(wd: np.ndarray, group: int, x_max: int) -> list[tuple[slice, ConvWeights]]:
    """W less its zero point (float32 integers), packed in blocks of input channels whose products
    with inputs of magnitude <= `x_max` sum exactly in float32 (`k_block`); summed in float64 by the
    caller.  One block when all channels fit; [] when even one channel's window does not fit, or a
    grouped conv would need splitting (the caller then computes in float64)."""
    w_max = int(np.abs(wd).max()) if wd.size else 0
    taps = math.prod(wd.shape[2:])
    block, cg = k_block(x_max * w_max), wd.shape[1]
    if cg * taps <= block:
        return [(slice(None), pack_weights(wd, group, np.dtype(np.float32)))]
    if group != 1 or taps > block:
        return []
    parts = -(-cg // (block // taps))
    step = -(-cg // parts)
    return [(slice(c0, c0 + step), pack_weights(wd[:, c0:c0 + step], 1, np.dtype(np.float32)))
            for c0 in range(0, cg, step)]


def exact_conv(xs: np.ndarray, blocks: list[tuple[slice, ConvWeights]], g: Any) -> np.ndarray:
    """The conv of `xs` (x less its zero point, float32 integers) with W given as `conv_blocks`:
    float32 when one block, else the blocks' exact products summed in float64."""
    if len(blocks) == 1:
        return conv_compute(xs, blocks[0][1], g)
    return _sum_float64(conv_compute(xs[:, channels], pw, g) for channels, pw in blocks)


class IntegerConv:
    """(x - x_zero_point) convolved with (w - w_zero_point), exactly: ConvInteger's and QLinearConv's
    accumulator, as float32 (one exact block) or float64 integer values.

    Runs on conv.py's engine with integer-valued float32 in exact blocks of
    input channels (`conv_blocks`), float64 where blocks cannot be exact;
    constant weights are zero-point-adjusted and packed once per bound of
    the input's magnitude (which the input's zero point sets).
    """

    def __init__(self, ctx: OpContext, group: int, x_elem: int | None, w_elem: int | None, const_w: bool) -> None:
        self.ctx, self.group, self.x_elem, self.w_elem, self.const_w = ctx, group, x_elem, w_elem, const_w
        self.packed: dict[int, list[tuple[slice, ConvWeights]]] = {}

    def _shifted(self, w: np.ndarray, wzp: np.ndarray | None, dtype: Any) -> np.ndarray:
        if wzp is None:
            return w.astype(dtype)
        if wzp.size not in (1, w.shape[0]):
            raise self.ctx.error(f"w_zero_point {list(wzp.shape)} must be a scalar or have one value per output "
                                 f"channel ({w.shape[0]})")
        return w.astype(dtype) - wzp.astype(dtype).reshape((-1,) + (1,) * (w.ndim - 1) if wzp.size > 1 else ())

    def __call__(self, x: np.ndarray, xzp: np.ndarray | None, w: np.ndarray, wzp: np.ndarray | None,
                 g: Any) -> np.ndarray:
        if xzp is not None and xzp.size != 1:
            raise self.ctx.error(f"x_zero_point {list(xzp.shape)} must be a scalar")
        x_max = shifted_max(self.x_elem, xzp)
        blocks = self.packed.get(x_max) if x_max is not None else None
        if blocks is None:
            blocks = [] if x_max is None or shifted_max(self.w_elem, wzp) is None else \
                conv_blocks(self._shifted(w, wzp, np.float32), self.group, x_max)
            if self.const_w and x_max is not None:
                self.packed[x_max] = blocks
        if blocks:
            xs = x.astype(np.float32) if xzp is None else np.subtract(x, xzp.reshape(()), dtype=np.float32)
            return exact_conv(xs, blocks, g)
        f64 = np.dtype(np.float64)
        xs = x.astype(f64) if xzp is None else x.astype(f64) - float(xzp.reshape(-1)[0])
        return conv_compute(xs, pack_weights(self._shifted(w, wzp, f64), self.group, f64), g)


def _conv_integer_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.INT32, conv_shape(ctx, ctx.shape(0), ctx.shape(1), _group(ctx)))]


@op("ConvInteger", since=10, infer=_conv_integer_rule)
def conv_integer(ctx: OpContext) -> Any:
    """Integer conv: (x - x_zero_point) * (w - w_zero_point) summed exactly into int32 (`IntegerConv`)."""
    win, group = read_window(ctx, pool=False), _group(ctx)
    has_wzp = len(ctx.node.inputs) > 3 and bool(ctx.node.inputs[3])
    engine = IntegerConv(ctx, group, ctx.in_elem(0), ctx.in_elem(1),
                         ctx.const(1) is not None and (not has_wzp or ctx.const(3) is not None))

    def run(x: np.ndarray, w: np.ndarray, x_zp: np.ndarray | None = None,
            w_zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        g = conv_geometry(ctx, win, x, w.shape, group)
        return (to_int32(engine(x, x_zp, w, w_zp, g)),)

    return run


@op("QLinearConv", since=10, infer=_qlinear_conv_rule)
def qlinear_conv(ctx: OpContext) -> Any:
    """Quantized convolution: exact accumulation of (x - x_zp) * (w - w_zp) plus the int32
    bias (`IntegerConv`), requantized to y's type; w's scale and zero point may be per output
    channel."""
    win, group = read_window(ctx, pool=False), _group(ctx)
    y_code = ctx.in_elem(7) if ctx.in_elem(7) is not None else dtypes.UINT8
    engine = IntegerConv(ctx, group, ctx.in_elem(0), ctx.in_elem(3), ctx.const(3) is not None and
                         ctx.const(5) is not None)

    def run(x: np.ndarray, x_scale: np.ndarray, xzp: np.ndarray, w: np.ndarray, w_scale: np.ndarray,
            wzp: np.ndarray, y_scale: np.ndarray, yzp: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        if x.ndim != w.ndim or x.ndim < 3 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
            raise ctx.error(f"x {list(x.shape)} and w {list(w.shape)} with group={group} do not fit: w must be "
                            f"[M, C/group, kernel...] with M divisible by group")
        kernel = kernel_of(ctx, win, w.shape)
        assert kernel is not None
        acc = engine(x, xzp, w, wzp, win.geometry(ctx, x.shape[2:], kernel)).astype(np.float64, copy=False)
        channel = (1, -1) + (1,) * (x.ndim - 2)
        if bias is not None:
            acc += bias.astype(np.float64).reshape(channel)
        scale = _requantize_scale(x_scale, w_scale.reshape(channel) if w_scale.size > 1 else w_scale, y_scale,
                                  ctx.in_elem(1))
        return (quantize(acc * scale.astype(np.float64), yzp.astype(np.float64), y_code),)

    return run
