"""Type conversion: Cast, CastLike, BitCast.

The three take bfloat16/float8/int4 storage as it is (`exotic=True`): the
numeric rules live in dtypes.py (`convert`, `reinterpret`).  This module
adds strings.  Numbers print as onnxruntime prints them (`%.8g`, and
"INF", "-INF", "NaN"), so string outputs match it; strings parse as ONNX's
Cast documents (plain or scientific notation, INF/NaN in any case, with an
optional sign).

Cast of a shape vector between int32 and int64 keeps its symbolic value, so
Reshape targets computed through a Cast still resolve at load.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import dtypes
from ..ir import Type
from ..shapes import InferContext, tensor
from .registry import OpContext, op

Converter = Callable[[np.ndarray], np.ndarray]

_BY_ONNX_NAME = {t.onnx_name: t.code for t in dtypes.ELEM_TYPES.values()}
_INT_RANGES = {dtypes.INT32: (-(1 << 31), (1 << 31) - 1), dtypes.INT64: (-(1 << 63), (1 << 63) - 1)}


def _elem_attr(ctx: Any, name: str) -> int:
    """An element-type attribute: an enum value, or (Cast-1) its name such as "FLOAT"."""
    value = ctx.attr(name)
    code = _BY_ONNX_NAME.get(value.upper()) if isinstance(value, str) else value
    if code not in dtypes.ELEM_TYPES or code == dtypes.UNDEFINED:
        raise ctx.error(f"attribute '{name}' = {value!r} is not an ONNX element type")
    return code


def _round_mode(ctx: Any) -> str:
    mode = ctx.attr("round_mode", "up")
    if mode not in dtypes.E8M0_ROUND_MODES:
        raise ctx.error(f"round_mode must be one of {', '.join(dtypes.E8M0_ROUND_MODES)}, got {mode!r}")
    return mode


# ------------------------------------------------------------------ strings

def format_numbers(x: np.ndarray, src: int) -> np.ndarray:
    """Numbers as strings (an object array), as onnxruntime's Cast writes them."""
    if src in dtypes.FLOAT_TYPES:
        v = dtypes.to_float32(x, src) if src in dtypes.SMALL_FLOATS else x
        text = np.char.mod("%.8g", np.asarray(v, dtype=np.float64))
        text = np.where(np.isnan(v), "NaN", np.where(np.isposinf(v), "INF", np.where(np.isneginf(v), "-INF", text)))
    else:
        text = np.asarray(x).astype(np.uint8 if src == dtypes.BOOL else x.dtype).astype(str)
    return np.asarray(text).astype(object)


def _parse_float(s: Any) -> float:
    text = s.decode() if isinstance(s, bytes) else str(s)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"cannot convert string {text!r} to a number") from None


def _parse_int(s: Any) -> int:
    """Integers parse exactly (beyond float precision); "2.7" truncates like a float cast."""
    text = s.decode() if isinstance(s, bytes) else str(s)
    try:
        return int(text)
    except ValueError:
        value = _parse_float(text)
    if not np.isfinite(value):
        raise ValueError(f"cannot convert string {text!r} to an integer")
    return int(value)


def parse_strings(x: np.ndarray, dst: int, saturate: bool, round_mode: str) -> np.ndarray:
    """Strings to element type `dst`; integers wrap to the destination width as casts do."""
    flat = np.asarray(x, dtype=object).reshape(-1)
    if dst in dtypes.FLOAT_TYPES:
        vals = np.array([_parse_float(s) for s in flat], dtype=np.float64).reshape(x.shape)
        return dtypes.convert(vals, dtypes.DOUBLE, dst, saturate, round_mode)
    if dst == dtypes.BOOL:
        return np.array([_parse_float(s) != 0 for s in flat], dtype=bool).reshape(x.shape)
    ints = [_parse_int(s) for s in flat]
    if dst == dtypes.UINT64:
        return np.array([v % (1 << 64) for v in ints], dtype=np.uint64).reshape(x.shape)
    wrapped = np.array([(v + (1 << 63)) % (1 << 64) - (1 << 63) for v in ints], dtype=np.int64).reshape(x.shape)
    return dtypes.convert(wrapped, dtypes.INT64, dst)


def converter(src: int | None, dst: int, saturate: bool = True, round_mode: str = "up") -> Converter:
    """The function casting storage of `src` (None: read it from the array) to `dst`."""

    def run(x: np.ndarray) -> np.ndarray:
        s = src if src is not None else (dtypes.STRING if x.dtype.kind in "OUS" else dtypes.from_numpy(x.dtype))
        if s == dtypes.STRING and dst == dtypes.STRING:
            return x.astype(object)
        if s == dtypes.STRING:
            return parse_strings(x, dst, saturate, round_mode)
        if dst == dtypes.STRING:
            return format_numbers(x, s)
        return np.asarray(dtypes.convert(x, s, dst, saturate, round_mode))

    return run


# ------------------------------------------------------------------ shape rules

def _keep_shape_value(ctx: InferContext, dst: int) -> None:
    """Shape vectors survive casts between int32 and int64 when every known value fits."""
    sym = ctx.sym(0)
    if sym is None or dst not in _INT_RANGES or ctx.elem(0) not in _INT_RANGES:
        return
    lo, hi = _INT_RANGES[dst]
    if all(not isinstance(d, int) or lo <= d <= hi for d in sym.dims):
        ctx.set_value(0, sym)


def _cast_rule(ctx: InferContext) -> list[Type | None]:
    dst = _elem_attr(ctx, "to")
    _keep_shape_value(ctx, dst)
    return [tensor(dst, ctx.shape(0))]


def _cast_like_rule(ctx: InferContext) -> list[Type | None]:
    dst = ctx.elem(1)
    if dst is not None:
        _keep_shape_value(ctx, dst)
    return [tensor(dst, ctx.shape(0))]


def _bitcast_rule(ctx: InferContext) -> list[Type | None]:
    dst = _elem_attr(ctx, "to")
    src = ctx.elem(0)
    if dtypes.STRING in (src, dst):
        raise ctx.error("BitCast does not apply to strings")
    if src is not None and dtypes.ELEM_TYPES[src].bits != dtypes.ELEM_TYPES[dst].bits:
        raise ctx.error(f"cannot reinterpret {dtypes.type_name(src)} ({dtypes.ELEM_TYPES[src].bits} bits) as "
                        f"{dtypes.type_name(dst)} ({dtypes.ELEM_TYPES[dst].bits} bits): widths must match")
    return [tensor(dst, ctx.shape(0))]


# ------------------------------------------------------------------ ops

@op("Cast", since=1, infer=_cast_rule, exotic=True)
def cast(ctx: OpContext) -> Any:
    """Cast to the `to` type; `saturate` (float8) and `round_mode` (float8e8m0) as ONNX defines."""
    dst = _elem_attr(ctx, "to")
    run = converter(ctx.in_elem(0), dst, bool(ctx.attr("saturate", 1)), _round_mode(ctx))
    return lambda x: (run(x),)


@op("CastLike", since=15, infer=_cast_like_rule, exotic=True)
def cast_like(ctx: OpContext) -> Any:
    """Cast input 0 to the element type of input 1 (whose values are not read)."""
    saturate, mode = bool(ctx.attr("saturate", 1)), _round_mode(ctx)
    dst = ctx.in_elem(1)
    if dst is not None:
        run = converter(ctx.in_elem(0), dst, saturate, mode)
        return lambda x, like: (run(x),)

    def run_untyped(x: np.ndarray, like: np.ndarray) -> tuple[np.ndarray]:
        return (converter(ctx.in_elem(0), dtypes.from_numpy(like.dtype), saturate, mode)(x),)

    return run_untyped


@op("BitCast", since=26, infer=_bitcast_rule, exotic=True)
def bitcast(ctx: OpContext) -> Any:
    """Reinterpret the bits of each element as type `to` (same width)."""
    dst = _elem_attr(ctx, "to")
    src = ctx.in_elem(0)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        s = src if src is not None else dtypes.from_numpy(x.dtype)
        if dtypes.ELEM_TYPES[s].bits != dtypes.ELEM_TYPES[dst].bits:
            raise ValueError(f"cannot reinterpret {dtypes.type_name(s)} as {dtypes.type_name(dst)}: widths differ")
        return (dtypes.reinterpret(x, s, dst),)

    return run
