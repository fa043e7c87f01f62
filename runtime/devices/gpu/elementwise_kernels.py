"""Elementwise ops on the GPU, generated from the tables in ops/elementwise.py.

Every unary and binary op whose table row has a `wgsl` expression (the
activations' rows come from activations.py) gets a kernel from the one
template in wgsl/elementwise.wgsl: the expression is
substituted, attributes become literals, and the loads implement numpy
broadcasting.  The ops the tables give no expression for (comparisons,
logic, Where, Clip, Cast, the variadic ones, Gelu...) are listed here in
the same form.  Functions WGSL lacks or leaves undefined where ONNX defines
them (erf, tanh at large |x|, pow of negative bases) are rewritten to the
helpers in common.wgsl.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...ops.elementwise import ACTIVATION_OPS, BINARY, UNARY
from ...ops.registry import Kernel, OpContext
from .common import (WG, ShapeMemo, bcast_strides, ceil_div, collapse, has_input, in_dtype, out_dtype, params_into,
                     wgsl_float, wgsl_type)
from .device import GpuDevice, GpuTensor, Site, Unsupported
from .uniforms import Uniforms, Value

_SAFE = re.compile(r"\b(erf|tanh|pow)\(")


def rewrite(expr: str) -> str:
    """Route erf/tanh/pow to the common.wgsl helpers (defined where WGSL's are not)."""
    return _SAFE.sub(lambda m: f"wi_{m.group(1)}(", expr)


@dataclass(frozen=True)
class MapOp:
    """An elementwise op: its expression over named inputs and the kinds it accepts."""

    names: tuple[str, ...]
    expr: str
    #: numpy kinds accepted for the inputs: "f" float, "i" int, "b" bool.
    kinds: str = "f"
    #: "same" (as input 0), "bool", or computed by the builder (Cast).
    out: str = "same"
    #: The attributes the expression names, with their defaults (the op table's; a standalone op's are
    #: never None, activations.ActivationDef.__post_init__).
    params: tuple[tuple[str, float | None], ...] = ()


def _table_ops() -> dict[str, MapOp]:
    ops: dict[str, MapOp] = {}
    for name, u in [*UNARY.items(), *((name, u) for (_, name), (u, _) in ACTIVATION_OPS.items())]:
        if u.wgsl:
            ops[name] = MapOp(("x",), rewrite(u.wgsl), "fi" if name in ("Abs", "Neg", "Sign") else "f",
                              params=u.params)
    for name, b in BINARY.items():
        if b.wgsl:
            ops[name] = MapOp(("a", "b"), rewrite(b.wgsl), "fi" if name in ("Add", "Sub", "Mul", "Div") else "f")
    return ops


#: Ops whose table rows carry no WGSL expression, in the same form.
EXTRA: dict[str, MapOp] = {
    "Equal": MapOp(("a", "b"), "a == b", "fib", "bool"),
    "Less": MapOp(("a", "b"), "a < b", "fi", "bool"),
    "Greater": MapOp(("a", "b"), "a > b", "fi", "bool"),
    "LessOrEqual": MapOp(("a", "b"), "a <= b", "fi", "bool"),
    "GreaterOrEqual": MapOp(("a", "b"), "a >= b", "fi", "bool"),
    "And": MapOp(("a", "b"), "a && b", "b", "bool"),
    "Or": MapOp(("a", "b"), "a || b", "b", "bool"),
    "Xor": MapOp(("a", "b"), "a != b", "b", "bool"),
    "Not": MapOp(("x",), "!x", "b", "bool"),
    "IsNaN": MapOp(("x",), "wi_isnan(x)", "f", "bool"),
    "Shrink": MapOp(("x",), "select(select(0.0, x - {bias}, x > {lambd}), x + {bias}, x < -{lambd})",
                    params=UNARY["Shrink"].params),
    "Where": MapOp(("c", "a", "b"), "select(b, a, c)", "fib"),
}

MAP_OPS: dict[str, MapOp] = {**_table_ops(), **EXTRA}


# ------------------------------------------------------------------ the generic map kernel

def _kind(dt: np.dtype | None) -> str:
    if dt is None:
        return "?"
    return "b" if dt == np.bool_ else ("f" if dt.kind == "f" else "i")


def map_kernel(ctx: OpContext, dev: GpuDevice, names: list[str | None], expr: str, out_dt: np.dtype) -> Kernel:
    """A kernel computing `expr` over the node's inputs named by `names` (None: input not read).

    bool inputs load as WGSL bools (stored as u32); a bool result stores as 0/1; float16
    inputs load as f32 and a float16 result is rounded once when stored.
    """
    present = [i for i, n in enumerate(names) if n is not None]
    if len(present) + 1 > dev.limits.max_storage_buffers:
        raise Unsupported(f"{len(present)} inputs exceed the adapter's {dev.limits.max_storage_buffers} "
                          "storage buffers per kernel")
    in_types = [wgsl_type(dev, in_dtype(ctx, i)) for i in present]  # type: ignore[arg-type]
    in_bool = [in_dtype(ctx, i) == np.bool_ for i in present]
    out_t = wgsl_type(dev, out_dt)
    if out_dt == np.bool_:
        store = f"select(0u, 1u, {expr})"
    else:
        store = wrap_store(out_dt, f"{out_t}({expr})")
    site = Site(ctx.node.label())
    inputs_decl = "\n".join(f"@group(0) @binding({k + 1}) var<storage, read> in{k}: array<{t}>;"
                            for k, t in enumerate(in_types))

    def plan(shapes: tuple[tuple[int, ...], ...]) -> tuple[Any, list[Value], int, tuple[int, ...]]:
        try:
            out_shape = tuple(np.broadcast_shapes(*shapes)) if shapes else ()
        except ValueError:
            raise ValueError(f"input shapes {[list(s) for s in shapes]} do not broadcast") from None
        shape, strides = collapse(out_shape, [bcast_strides(s, out_shape) for s in shapes])
        rank = len(shape)
        own = [1] * rank
        acc = 1
        for d in range(rank - 1, -1, -1):
            own[d] = acc
            acc *= shape[d]
        n = int(np.prod(out_shape)) if out_shape else 1
        bcast: list[int] = []
        loads = []
        for k, (s, name) in enumerate(zip(strides, [names[i] for i in present])):
            if s == own:
                at = "i"
            elif not any(s):
                at = "0u"
            else:
                at = f"bcast_offset(i, ew_strides + {len(bcast)}u)"
                bcast.extend(s)
            value = f"in{k}[{at}]"
            if in_bool[k]:
                value = f"{value} != 0u"
            elif in_types[k] == "f16":
                value = f"f32({value})"  # float16 computes in float32
            loads.append(f"    let {name} = {value};")
        words = uniforms_of(rank, len(bcast))
        prog = dev.program("elementwise.wgsl", "main", WG, uniforms=(words,),
                           by_shape=dict(RANK=rank, LOADS="\n".join(loads)), INPUTS=inputs_decl, STORE=store,
                           OUT=len(present) + 1, OUT_T=out_t)
        params = words.pack(n=n, shape=shape, **({"strides": bcast} if bcast else {}))
        return prog, params, ceil_div(n, WG), out_shape

    memo = ShapeMemo(plan)

    def run(*args: Any) -> tuple[GpuTensor]:
        xs = [args[i] for i in present]
        shapes = tuple(x.shape for x in xs)
        prog, params, groups, out_shape = memo.get(shapes, shapes)
        out = dev.empty(out_shape, out_dt)
        if out.size:
            dev.dispatch(site, prog, [*xs, out], params, groups)
        return (out,)

    return run


def uniforms_of(rank: int, strides: int) -> Uniforms:
    """The words of wgsl/elementwise.wgsl for an output of collapsed `rank` and `strides` words of
    broadcast strides (`rank` per input read through `bcast_offset`)."""
    return Uniforms("ew", ("n", ("shape", max(rank, 1))) + ((("strides", strides),) if strides else ()))


def wrap_store(dtype: np.dtype, expr: str) -> str:
    """An 8- or 16-bit integer result wrapped to its width (held in 32 bits, as numpy would wrap it)."""
    bits = dtype.itemsize * 8
    if dtype.kind == "i" and bits < 32:
        return f"(({expr}) << {32 - bits}u) >> {32 - bits}u"
    if dtype.kind == "u" and bits < 32:
        return f"(({expr}) & {(1 << bits) - 1}u)"
    return expr


def _check_kinds(ctx: OpContext, inputs: list[int], kinds: str) -> None:
    for i in inputs:
        k = _kind(in_dtype(ctx, i))
        if k not in kinds:
            dt = in_dtype(ctx, i)
            raise Unsupported(f"input {i} is {dt.name if dt is not None else 'untyped'}; the kernel takes "
                              + "/".join({"f": "float", "i": "int", "b": "bool"}[c] for c in kinds))


def _legacy_broadcast(ctx: OpContext) -> None:
    if ctx.opset < 7 and ctx.attr("broadcast", 0):
        raise Unsupported("legacy (opset < 7) broadcast attribute")


def build_map(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Unary/binary/ternary ops of MAP_OPS."""
    op = MAP_OPS[ctx.node.op_type]
    n = len(op.names)
    if len(ctx.node.inputs) != n:
        raise Unsupported(f"{len(ctx.node.inputs)} inputs, the kernel takes {n}")
    _legacy_broadcast(ctx)
    expr = params_into(op.expr, {name: ctx.attr(name, default) for name, default in op.params})
    data = list(range(n))
    if ctx.node.op_type == "Where":
        _check_kinds(ctx, [0], "b")
        data = [1, 2]
    elif ctx.node.op_type == "Pow" and _kind(in_dtype(ctx, 0)) == "i":
        # numpy: integer ** integer by repeated multiplication; integer ** float through float, truncated
        base_t = wgsl_type(dev, in_dtype(ctx, 0))  # type: ignore[arg-type]
        expr = ("wi_ipow(i32(a), i32(b))" if _kind(in_dtype(ctx, 1)) == "i" else "i32(wi_pow(f32(a), b))")
        expr = f"{base_t}({expr})"
        data = [1]
        op = MapOp(op.names, expr, "fi")
    elif ctx.node.op_type == "Pow" and _kind(in_dtype(ctx, 1)) == "i":
        expr = "wi_pow(a, f32(b))"  # Pow's exponent may be an integer tensor
        data = [0]
    _check_kinds(ctx, data, op.kinds)
    out_dt = np.dtype(np.bool_) if op.out == "bool" else out_dtype(ctx)
    return map_kernel(ctx, dev, list(op.names), expr, out_dt)


def build_gelu(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """ONNX Gelu (opset 20) and webinfer.Gelu: exact (erf) or tanh approximation."""
    _check_kinds(ctx, [0], "f")
    approx = ctx.attr("approximate", "none")
    if approx == "tanh":
        expr = "0.5 * x * (1.0 + wi_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))"
    elif approx == "none":
        expr = MAP_OPS["Gelu"].expr
    else:
        raise Unsupported(f"approximate={approx!r}")
    return map_kernel(ctx, dev, ["x"], expr, out_dtype(ctx))


def build_isinf(ctx: OpContext, dev: GpuDevice) -> Kernel:
    _check_kinds(ctx, [0], "f")
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    expr = f"wi_isinf(x) && ((x > 0.0 && {str(bool(pos)).lower()}) || (x < 0.0 && {str(bool(neg)).lower()}))"
    return map_kernel(ctx, dev, ["x"], expr, np.dtype(np.bool_))


def build_mod(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """fmod=1: C fmod (the dividend's sign); fmod=0: the result takes the divisor's sign (numpy.mod)."""
    fmod = bool(ctx.attr("fmod", 0))
    kinds = {_kind(in_dtype(ctx, 0)), _kind(in_dtype(ctx, 1))}
    if kinds == {"f"}:
        expr = "wi_fmod(a, b)" if fmod else "wi_mod(a, b)"
    elif kinds == {"i"}:
        expr = "a % b" if fmod else "select(a % b, a % b + b, a % b != 0 && ((a % b < 0) != (b < 0)))"
    else:
        raise Unsupported("Mod on mixed or bool inputs")
    return map_kernel(ctx, dev, ["a", "b"], expr, out_dtype(ctx))


def build_clip(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """min(max(x, lo), hi): attributes before opset 11, optional scalar inputs after."""
    _check_kinds(ctx, [0], "fi")
    if ctx.opset < 11:
        lo = wgsl_float(ctx.attr("min", -np.inf))
        hi = wgsl_float(ctx.attr("max", np.inf))
        if in_dtype(ctx, 0) != np.float32:
            raise Unsupported("attribute Clip on integers")
        return map_kernel(ctx, dev, ["x"], f"min(max(x, {lo}), {hi})", out_dtype(ctx))
    names: list[str | None] = ["x", "lo" if has_input(ctx, 1) else None, "hi" if has_input(ctx, 2) else None]
    names += [None] * (len(ctx.node.inputs) - len(names))
    expr = "x"
    if names[1]:
        expr = f"max({expr}, lo)"
    if names[2]:
        expr = f"min({expr}, hi)"
    return map_kernel(ctx, dev, names, expr, out_dtype(ctx))


def build_variadic(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Max, Min, Sum, Mean over any number of broadcast inputs."""
    op = ctx.node.op_type
    n = len(ctx.node.inputs)
    if any(not name for name in ctx.node.inputs):
        raise Unsupported("an empty input name")
    _check_kinds(ctx, list(range(n)), "f" if op == "Mean" else "fi")
    names = [f"a{i}" for i in range(n)]
    if op in ("Max", "Min"):
        fn = op.lower()
        expr = names[0]
        for nm in names[1:]:
            expr = f"{fn}({expr}, {nm})"
    else:
        expr = "(" + " + ".join(names) + ")"
        if op == "Mean":
            expr = f"{expr} / {wgsl_float(n)}"
    return map_kernel(ctx, dev, list(names), expr, out_dtype(ctx))


def _cast_expr(src: np.dtype, dst: np.dtype, dst_t: str) -> str:
    """The WGSL value of `x` (loaded as src's storage type; f16 as f32) converted to dst's storage type."""
    ks, kd = _kind(src), _kind(dst)
    if kd == "b":
        return "x != 0.0" if ks == "f" else ("x != 0u" if src.kind == "u" else "x != 0")
    if ks == "b":
        one = {"f32": "1.0", "f16": "1.0", "i32": "1", "u32": "1u"}[dst_t]
        return f"select({dst_t}(0), {one}, x)"
    if ks == "f" and dst_t == "u32":
        return "u32(i32(x))"  # numpy's float -> unsigned goes through a signed conversion
    return "x"


def build_cast(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Conversions among float32 (float16 with shader-f16), the integer types and bool; a change of
    type with the same storage and no loss of range is a view."""
    src, dst = in_dtype(ctx, 0), out_dtype(ctx)
    if src is None:
        raise Unsupported("input type unknown")
    st_src, st_dst = wgsl_type(dev, src), wgsl_type(dev, dst)
    ints = src.kind in "iu" and dst.kind in "iu"
    # int64 values on the GPU are int32 already (range-checked), so int64 -> int32 loses nothing either
    lossless = src == dst or ints and (np.can_cast(src, dst) or (src == np.int64 and dst == np.int32))
    if st_src == st_dst and lossless:
        def view(x: GpuTensor, *_: Any) -> tuple[GpuTensor]:
            return (GpuTensor(x.storage, x.shape, dst, x.offset),)
        return view
    names: list[str | None] = ["x"] + [None] * (len(ctx.node.inputs) - 1)
    return map_kernel(ctx, dev, names, _cast_expr(src, dst, st_dst), dst)


_BUILDERS: dict[str, Callable[[OpContext, GpuDevice], Kernel]] = {
    **{name: build_map for name in MAP_OPS},
    "Gelu": build_gelu, "IsInf": build_isinf, "Mod": build_mod, "Clip": build_clip,
    "Max": build_variadic, "Min": build_variadic, "Sum": build_variadic, "Mean": build_variadic,
    "Cast": build_cast, "CastLike": build_cast,
}

#: (domain, op) -> (WGSL file, entry points, builder); the fused webinfer ops with an elementwise form too.
SPECS: dict[tuple[str, str], tuple[str, tuple[str, ...], Callable[[OpContext, GpuDevice], Kernel]]] = {
    **{("", op): ("elementwise.wgsl", ("main",), build) for op, build in _BUILDERS.items()},
    **{key: ("elementwise.wgsl", ("main",), _BUILDERS[key[1]]) for key in ACTIVATION_OPS},
}
