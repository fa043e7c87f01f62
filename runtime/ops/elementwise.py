"""Elementwise ops, generated from tables.

Each row gives the numpy kernel and the WGSL expression of one op (the GPU
backend compiles the same table into shaders), so an elementwise op is
added by adding a row.  Attributes are read once when the node is built.
Transcendental functions on float16 compute in float32 and round back, as
onnxruntime does, so half-precision models keep their accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import dtypes, wasm_ops
from ..activations import ACTIVATIONS, ActivationDef
from ..ir import Dim, Type
from ..special import erf, gelu, sigmoid, softplus
from ..shapes import (InferContext, SymInts, broadcast_rule, broadcast_shapes, dim_add, dim_div, dim_mul, dim_sub,
                      same_as_input, tensor)
from .registry import OpContext, register

Fn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------ unary table

@dataclass(frozen=True)
class Unary:
    """One unary op: `make(ctx)` returns the numpy function for a node.

    `wgsl` is the shader expression over `x` (attributes as `{name}`), None
    when the op has no GPU kernel. `upcast16` computes float16 in float32.
    `params` are the attributes the numpy function and the expression read,
    with their defaults (written here only).
    """

    make: Callable[[OpContext], Fn]
    wgsl: str | None
    since: int = 1
    upcast16: bool = False
    out_elem: int | None = None
    params: tuple[tuple[str, float | None], ...] = ()


def _plain(fn: Fn) -> Callable[[OpContext], Fn]:
    return lambda ctx: fn


def _with(build: Callable[[Any], Fn], wgsl: str | None, since: int = 1, upcast16: bool = False,
          **defaults: float) -> Unary:
    """A row whose function of x has parameters read from attributes with these defaults."""

    def make(ctx: OpContext) -> Fn:
        params = {k: ctx.attr(k, v) for k, v in defaults.items()}
        return build(type("P", (), params))

    return Unary(make, wgsl, since, upcast16, params=tuple(defaults.items()))


def _activation(spec: ActivationDef, since: int) -> Unary:
    """The standalone op of an activation of the one table (activations.py): its numpy into a new array."""

    def make(ctx: OpContext) -> Fn:
        params = [ctx.attr(k, v) for k, v in spec.params]

        def run(x: np.ndarray) -> np.ndarray:
            out = np.empty(x.shape, x.dtype)
            spec.apply(x, out, *params)
            return out

        return run

    return Unary(make, spec.wgsl, since, spec.upcast16, params=spec.params)


def _isinf(ctx: OpContext) -> Fn:
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    return lambda x: np.isinf(x) & ((x > 0) if pos else False) | np.isinf(x) & ((x < 0) if neg else False)


def _gelu(ctx: OpContext) -> Fn:
    approx = ctx.attr("approximate", "none")
    return lambda x: gelu(x, approx)


def _shrink(p: Any) -> Fn:
    return lambda x: np.where(x < -p.lambd, x + p.bias, np.where(x > p.lambd, x - p.bias, 0)).astype(x.dtype)


UNARY: dict[str, Unary] = {
    "Abs": Unary(_plain(np.abs), "abs(x)"),
    "Neg": Unary(_plain(np.negative), "-x"),
    "Exp": Unary(_plain(np.exp), "exp(x)", upcast16=True),
    "Log": Unary(_plain(np.log), "wi_log(x)", upcast16=True),
    "Sqrt": Unary(_plain(np.sqrt), "sqrt(x)"),
    "Reciprocal": Unary(_plain(np.reciprocal), "1.0 / x"),
    "Floor": Unary(_plain(np.floor), "floor(x)"),
    "Ceil": Unary(_plain(np.ceil), "ceil(x)"),
    "Round": Unary(_plain(np.round), "round(x)", since=11),
    "Sign": Unary(_plain(np.sign), "sign(x)", since=9),
    "Sin": Unary(_plain(np.sin), "sin(x)", since=7, upcast16=True),
    "Cos": Unary(_plain(np.cos), "cos(x)", since=7, upcast16=True),
    "Tan": Unary(_plain(np.tan), "tan(x)", since=7, upcast16=True),
    "Asin": Unary(_plain(np.arcsin), "asin(x)", since=7, upcast16=True),
    "Acos": Unary(_plain(np.arccos), "acos(x)", since=7, upcast16=True),
    "Atan": Unary(_plain(np.arctan), "atan(x)", since=7, upcast16=True),
    "Sinh": Unary(_plain(np.sinh), "sinh(x)", since=9, upcast16=True),
    "Cosh": Unary(_plain(np.cosh), "cosh(x)", since=9, upcast16=True),
    "Asinh": Unary(_plain(np.arcsinh), "asinh(x)", since=9, upcast16=True),
    "Acosh": Unary(_plain(np.arccosh), "acosh(x)", since=9, upcast16=True),
    "Atanh": Unary(_plain(np.arctanh), "atanh(x)", since=9, upcast16=True),
    "Erf": Unary(_plain(erf), "erf(x)", since=9, upcast16=True),
    "Softplus": Unary(_plain(softplus), "select(log(1.0 + exp(x)), x, x > 20.0)", upcast16=True),
    "Softsign": Unary(_plain(lambda x: x / (1 + np.abs(x))), "x / (1.0 + abs(x))"),
    "Mish": Unary(_plain(lambda x: x * np.tanh(softplus(x))), "x * tanh(log(1.0 + exp(x)))", since=18,
                  upcast16=True),
    # the erf form is the table's (activations.py); this row adds approximate="tanh" on the CPU
    "Gelu": Unary(_gelu, ACTIVATIONS["Gelu"].wgsl, since=20, upcast16=True),
    "Swish": _with(lambda p: lambda x: x * sigmoid(x * x.dtype.type(p.alpha)), "x / (1.0 + exp(-{alpha} * x))",
                   since=24, upcast16=True, alpha=1.0),
    "Elu": _with(lambda p: lambda x: np.where(x > 0, x, p.alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype),
                 "select({alpha} * (exp(x) - 1.0), x, x > 0.0)", upcast16=True, alpha=1.0),
    "Selu": _with(lambda p: lambda x: (p.gamma * np.where(x > 0, x, p.alpha * np.expm1(np.minimum(x, 0))))
                  .astype(x.dtype), "{gamma} * select({alpha} * (exp(x) - 1.0), x, x > 0.0)", upcast16=True,
                  alpha=1.67326319217681884765625, gamma=1.05070102214813232421875),
    "Celu": _with(lambda p: lambda x: (np.maximum(x, 0) + np.minimum(0, p.alpha * np.expm1(x / p.alpha)))
                  .astype(x.dtype), "max(x, 0.0) + min(0.0, {alpha} * (exp(x / {alpha}) - 1.0))",
                  since=12, upcast16=True, alpha=1.0),
    "ThresholdedRelu": _with(lambda p: lambda x: np.where(x > p.alpha, x, 0).astype(x.dtype),
                             "select(0.0, x, x > {alpha})", since=10, alpha=1.0),
    "Shrink": _with(_shrink, None, since=9, bias=0.0, lambd=0.5),
    "Not": Unary(_plain(np.logical_not), None),
    "BitwiseNot": Unary(_plain(np.invert), None, since=18),
    "IsNaN": Unary(_plain(np.isnan), None, since=9, out_elem=dtypes.BOOL),
    "IsInf": Unary(_isinf, None, since=10, out_elem=dtypes.BOOL),
}


def _unary_kernel(spec: Unary) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        fn = spec.make(ctx)
        if spec.upcast16:
            def run16(x: np.ndarray) -> tuple[np.ndarray]:
                if x.dtype == np.float16:
                    return (np.asarray(fn(x.astype(np.float32))).astype(np.float16),)
                return (np.asarray(fn(x)),)
            return run16
        # numpy ufuncs turn 0-d inputs into scalars: outputs must stay arrays
        return lambda x: (np.asarray(fn(x)),)

    return build


def _unary_rule(out_elem: int | None) -> Callable[[InferContext], list[Type | None]]:
    if out_elem is None:
        return same_as_input

    def rule(ctx: InferContext) -> list[Type | None]:
        return [tensor(out_elem, ctx.shape(0))]

    return rule


#: The standalone ops of the activation table (activations.py), by (domain, op_type), with the opset each
#: appeared in: Gelu's row above also serves approximate="tanh"; Clip, whose min and max arrive as inputs
#: in later opsets, has its own kernel below.  The fusion pass rewrites exporters' decomposed GELU and
#: hard-swish into the webinfer ones, whatever the model's opset.
ACTIVATION_OPS: dict[tuple[str, str], tuple[Unary, int]] = {
    (domain, name): (UNARY.get(name) or _activation(spec, since), since)
    for spec in ACTIVATIONS.values() if not spec.input_params for domain, name, since in spec.sources}

for _name, _spec in UNARY.items():
    if ("", _name) not in ACTIVATION_OPS:
        register(_name, _unary_kernel(_spec), since=_spec.since, infer=_unary_rule(_spec.out_elem))
for (_domain, _name), (_spec, _since) in ACTIVATION_OPS.items():
    register(_name, _unary_kernel(_spec), since=_since, domain=_domain, infer=same_as_input)


# ----------------------------------------------------------------- binary table

def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncates toward zero (C semantics, as onnxruntime)."""
    if a.dtype.kind in "iu":
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.floor_divide(a, b)
            if a.dtype.kind == "i":
                q = np.where((q < 0) & (q * b != a), q + 1, q)
        return q.astype(a.dtype, copy=False)
    return np.divide(a, b)


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pow keeps the base's dtype whatever the exponent's."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a, b.astype(a.dtype)).astype(a.dtype, copy=False)
    if a.dtype.kind in "iu":
        return np.power(a.astype(np.float64), b).astype(a.dtype)
    if a.dtype == np.float16:
        return np.power(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    return np.power(a, b.astype(a.dtype, copy=False))


def _mod(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if ctx.attr("fmod", 0):
        return np.fmod
    return np.mod


def _bitshift(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    direction = ctx.attr("direction")
    if direction == "LEFT":
        return lambda a, b: np.left_shift(a, b.astype(a.dtype))
    if direction == "RIGHT":
        return lambda a, b: np.right_shift(a, b.astype(a.dtype))
    raise ctx.error(f"direction must be LEFT or RIGHT, got {direction!r}")


def _prelu(a: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """With finite slopes, arithmetic instead of np.where's mask and select, which is 3-25x slower on a
    per-channel slope (MediaPipe's models have a PRelu after most convs): max(x, slope * x) when every
    slope is at most 1 (it picks x for x >= 0 and slope * x below), else min(x, 0) * slope + max(x, 0)."""
    if slope.size and np.isfinite(slope).all():
        if slope.max() <= 1:
            y = np.multiply(a, slope, dtype=a.dtype)
            return np.maximum(y, a, out=y)
        y = np.minimum(a, 0)
        np.multiply(y, slope, out=y, casting="same_kind")
        y += np.maximum(a, 0)
        return y
    return np.where(a >= 0, a, a * slope).astype(a.dtype, copy=False)


def _prelu_build(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Before opset 7 a 1-D slope of C values applies per channel (axis 1), not numpy-style."""
    if ctx.opset >= 7:
        return _prelu

    def legacy(a: np.ndarray, slope: np.ndarray) -> np.ndarray:
        if slope.ndim == 1 and slope.size > 1 and a.ndim > 2:
            slope = slope.reshape((-1,) + (1,) * (a.ndim - 2))
        return _prelu(a, slope)

    return legacy


@dataclass(frozen=True)
class Binary:
    make: Callable[[OpContext], Callable[[np.ndarray, np.ndarray], np.ndarray]]
    wgsl: str | None
    since: int = 1
    out_elem: int | None = None


def _bin(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[OpContext], Any]:
    return lambda ctx: fn


BINARY: dict[str, Binary] = {
    "Add": Binary(_bin(np.add), "a + b"),
    "Sub": Binary(_bin(np.subtract), "a - b"),
    "Mul": Binary(_bin(np.multiply), "a * b"),
    "Div": Binary(_bin(_div), "a / b"),
    "Pow": Binary(_bin(_pow), "pow(a, b)"),
    "Mod": Binary(_mod, None, since=10),
    "PRelu": Binary(_prelu_build, "select(a * b, a, a >= 0.0)"),
    "And": Binary(_bin(np.logical_and), None, out_elem=dtypes.BOOL),
    "Or": Binary(_bin(np.logical_or), None, out_elem=dtypes.BOOL),
    "Xor": Binary(_bin(np.logical_xor), None, out_elem=dtypes.BOOL),
    "Equal": Binary(_bin(np.equal), None, out_elem=dtypes.BOOL),
    "Less": Binary(_bin(np.less), None, out_elem=dtypes.BOOL),
    "Greater": Binary(_bin(np.greater), None, out_elem=dtypes.BOOL),
    "LessOrEqual": Binary(_bin(np.less_equal), None, since=12, out_elem=dtypes.BOOL),
    "GreaterOrEqual": Binary(_bin(np.greater_equal), None, since=12, out_elem=dtypes.BOOL),
    "BitShift": Binary(_bitshift, None, since=11),
    "BitwiseAnd": Binary(_bin(np.bitwise_and), None, since=18),
    "BitwiseOr": Binary(_bin(np.bitwise_or), None, since=18),
    "BitwiseXor": Binary(_bin(np.bitwise_xor), None, since=18),
}


def _binary_kernel(ctx: OpContext, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], legacy: bool) -> Any:
    if legacy and ctx.attr("broadcast", 0):
        # opset < 7: B broadcasts onto A from `axis`
        axis = ctx.attr("axis", None)

        def run_legacy(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
            if axis is not None and b.ndim:
                ax = axis % a.ndim
                b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
            return (np.asarray(fn(a, b)),)

        return run_legacy
    name = _WASM_BINARY.get(fn)
    if name is not None:
        def run_wasm(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
            """Pyodide: float32 Add/Sub/Mul in one SIMD pass (numpy there runs scalar loops)."""
            y = wasm_ops.binary(name, a, b)
            return (np.asarray(fn(a, b)) if y is None else y,)

        return run_wasm
    return lambda a, b: (np.asarray(fn(a, b)),)


#: The binary ops the wasm `binary` kernel runs, by numpy function.
_WASM_BINARY: dict[Any, str] = {np.add: "Add", np.subtract: "Sub", np.multiply: "Mul"}


def _binary_build(spec: Binary) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        return _binary_kernel(ctx, spec.make(ctx), ctx.opset < 7)

    return build


# ------------------------------------------- shape arithmetic at load (SymInts)
#
# Exporters compute Reshape/Expand targets with Add/Sub/Mul/Div/Equal/Where on
# int64 shape vectors; doing that arithmetic on SymInts lets such targets
# resolve at load (exactly, or symbolically as 'seq+1', 'batch*12', ...).

_INT_SHAPE_TYPES = (dtypes.INT64, dtypes.INT32)


def _sym_div(a: Dim, b: Dim) -> Dim:
    """Div on ints truncates toward zero like the kernel; symbolic dims are non-negative, so floor is right."""
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            return None
        q = abs(a) // abs(b)
        return -q if (a < 0) != (b < 0) else q
    return dim_div(a, b)


def _sym_equal(a: Dim, b: Dim) -> Dim:
    """1/0 when decidable: equal ints or symbols; a symbolic size never equals a negative int."""
    if a is None or b is None:
        return None
    if a == b:
        return 1
    if isinstance(a, int) and isinstance(b, int):
        return 0
    other = a if isinstance(a, int) else b
    return 0 if isinstance(other, int) and other < 0 else None


_SYM_BINARY: dict[str, Callable[[Dim, Dim], Dim]] = {
    "Add": dim_add, "Sub": dim_sub, "Mul": dim_mul, "Div": _sym_div, "Equal": _sym_equal}


def _set_sym(ctx: InferContext, dims: tuple[Dim, ...], scalar: bool, elem: int | None) -> None:
    """Record the result unless an int element overflows the tensor's type (the kernel would wrap)."""
    bits = 64 if elem == dtypes.INT64 else 32
    if all(not isinstance(d, int) or -(1 << (bits - 1)) <= d < 1 << (bits - 1) for d in dims):
        ctx.set_value(0, SymInts(dims, scalar))


def _sym_broadcast(values: list[SymInts]) -> tuple[list[tuple[Dim, ...]], bool] | None:
    """Element lists of rank <= 1 SymInts broadcast to one length, and whether the result is a scalar."""
    n = max(len(v.dims) for v in values)
    if any(len(v.dims) not in (1, n) for v in values):
        return None
    return [v.dims if len(v.dims) == n else v.dims * n for v in values], all(v.scalar for v in values)


def _sym_binary_rule(name: str, out_elem: int | None) -> Callable[[InferContext], list[Type | None]]:
    base, fn = broadcast_rule(out_elem), _SYM_BINARY[name]

    def rule(ctx: InferContext) -> list:
        out = base(ctx)
        a, b = ctx.sym(0), ctx.sym(1)
        if a is not None and b is not None and ctx.elem(0) in _INT_SHAPE_TYPES:
            spread = _sym_broadcast([a, b])
            if spread is not None:
                (xs, ys), scalar = spread
                _set_sym(ctx, tuple(fn(x, y) for x, y in zip(xs, ys)), scalar, ctx.elem(0))
        return out

    return rule


for _name, _bspec in BINARY.items():
    _rule: Callable[[InferContext], list[Type | None]]
    if _name == "PRelu":  # the slope broadcasts onto X (unidirectionally): Y has X's shape
        _rule = same_as_input
    elif _name in _SYM_BINARY:
        _rule = _sym_binary_rule(_name, _bspec.out_elem)
    else:
        _rule = broadcast_rule(_bspec.out_elem)
    register(_name, _binary_build(_bspec), since=_bspec.since, infer=_rule)


# --------------------------------------------------------------- variadic ops

def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], mean: bool = False) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        def run(*xs: np.ndarray) -> tuple[np.ndarray]:
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            if mean:
                out = out / len(xs)
                out = out.astype(xs[0].dtype, copy=False)
            return (np.asarray(out),)

        return run

    return build


register("Max", _variadic(np.maximum), infer=broadcast_rule())
register("Min", _variadic(np.minimum), infer=broadcast_rule())
register("Sum", _variadic(np.add), infer=broadcast_rule())
register("Mean", _variadic(np.add, mean=True), infer=broadcast_rule())


# ------------------------------------------------------------------ ternary

def _where(ctx: OpContext) -> Any:
    return lambda c, a, b: (np.where(c, a, b),)


def _where_cond(ctx: InferContext) -> SymInts | None:
    """The condition as 0/1 SymInts: from Equal on shapes, or a constant bool vector."""
    sym = ctx.sym(0)
    if sym is not None:
        return sym
    value = ctx.value(0)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim <= 1 and value.size <= 64:
        return SymInts(tuple(int(v) for v in value.reshape(-1)), value.ndim == 0)
    return None


def _where_rule(ctx: InferContext) -> list:
    out = [tensor(ctx.elem(1), broadcast_shapes([ctx.shape(0), ctx.shape(1), ctx.shape(2)], ctx.node))]
    cond, a, b = _where_cond(ctx), ctx.sym(1), ctx.sym(2)
    if cond is not None and a is not None and b is not None and ctx.elem(1) in _INT_SHAPE_TYPES:
        spread = _sym_broadcast([cond, a, b])
        if spread is not None:
            (cs, xs, ys), scalar = spread
            picked = tuple(x if c == 1 else y if c == 0 else None for c, x, y in zip(cs, xs, ys))
            _set_sym(ctx, picked, scalar, ctx.elem(1))
    return out


register("Where", _where, since=9, infer=_where_rule)


def _clip(ctx: OpContext) -> Any:
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -3.4028234663852886e38), ctx.attr("max", 3.4028234663852886e38)

        def run_attr(x: np.ndarray) -> tuple[np.ndarray]:
            return (np.asarray(np.clip(x, x.dtype.type(lo), x.dtype.type(hi))),)

        return run_attr

    def run(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> tuple[np.ndarray]:
        out = x
        if lo is not None:
            out = np.maximum(out, lo.astype(x.dtype, copy=False))
        if hi is not None:
            out = np.minimum(out, hi.astype(x.dtype, copy=False))
        return (np.asarray(out),)

    return run


register("Clip", _clip, infer=same_as_input)
