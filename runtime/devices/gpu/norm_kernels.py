"""Row-wise and reducing ops on the GPU: Softmax, LogSoftmax, LayerNormalization,
RMSNormalization, GroupNormalization, InstanceNormalization, BatchNormalization (inference), Reduce*,
ArgMax/ArgMin, GlobalAveragePool/GlobalMaxPool.

Softmax and the normalizations work on rows ([outer, L, inner] views, no
transposes) with two schedules: one invocation per row on CPU emulations,
where barriers are expensive, and one workgroup per row with tree
reductions in workgroup memory elsewhere.  Reductions run one invocation per
output element over any set of axes, long ones in passes (`ELEMENTS_PER_PASS`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import DeviceError
from ...ops.registry import Kernel, OpContext
from .common import (WG, ShapeMemo, ceil_div, collapse, contiguous_strides, has_input, host_params, host_values,
                     out_dtype, require_float, storage_decls, wgsl_float)
from .device import GpuDevice, GpuTensor, Site, Unsupported
from .elementwise_kernels import map_kernel
from .uniforms import Uniforms

#: The words of wgsl/softmax.wgsl and wgsl/layernorm.wgsl (uniforms.py).
SOFTMAX = Uniforms("sm", ("rows", "length", "inner"))
LAYERNORM = Uniforms("ln", ("rows", "length", "eps", "groups", "channels_per_group", "cells"))
#: The words of wgsl/arg.wgsl.
ARG = Uniforms("ag", ("n", "length", "inner"))


def reduce_uniforms(kept: int, reduced: int) -> Uniforms:
    """The words of wgsl/reduce.wgsl for `kept` kept and `reduced` reduced (collapsed) dims."""
    return Uniforms("rd", ("n", "count", "max_begin", "max_end", "sum_begin", "sum_end", "first", "last",
                           ("kept_dims", kept), ("kept_strides", kept), ("red_dims", reduced),
                           ("red_strides", reduced)))


#: Reduced elements one reduce.wgsl invocation walks per dispatch: llvmpipe counts every loop iteration
#: of an invocation against one limit of 65535 and silently stops looping past it (a 512x512
#: GlobalAveragePool read zeros); an element's offset loops over the collapsed reduced dims, so 2048
#: elements stay well inside it, and bounded work per invocation also keeps long reductions clear of
#: the watchdogs of other drivers.
ELEMENTS_PER_PASS = 2048

#: Words per output of reduce.wgsl's `Part` (m, acc) carried between passes.
REDUCE_PART_WORDS = 2

#: Workgroup of the one-workgroup-per-row schedule.
ROW_WG = 64


def _row_schedule(dev: GpuDevice, rows: int) -> str:
    """Invocation per row on CPU emulations (or when rows alone fill the GPU), else a workgroup per row;
    the provider option `row_schedule` ("serial" / "wg") forces one (benchmarks compare them)."""
    forced = dev.options.get("row_schedule")
    if forced in ("serial", "wg"):
        return forced
    return "serial" if dev.backend.software or rows >= 16384 else "wg"


def _dispatch_rows(dev: GpuDevice, site: Site, file: str, rows: int, tensors: list[GpuTensor], params: list[Any],
                   uniforms: tuple[Uniforms, ...] = (), **values: Any) -> None:
    """Run `file` (softmax.wgsl or layernorm.wgsl, whose `wg` entries reduce with workgroup_reduce.wgsl) on
    `rows` rows."""
    entry = _row_schedule(dev, rows)
    wg = WG if entry == "serial" else ROW_WG
    prog = dev.program(file, entry, wg, ("workgroup_reduce.wgsl",), uniforms=uniforms, **values)
    dev.dispatch(site, prog, tensors, params, ceil_div(rows, WG) if entry == "serial" else rows)


# ------------------------------------------------------------------ softmax

def build_softmax(ctx: OpContext, dev: GpuDevice) -> Kernel:
    t = require_float(ctx, dev, 0)
    legacy = ctx.opset < 13
    axis_attr = int(ctx.attr("axis", 1 if legacy else -1))
    log = ctx.node.op_type == "LogSoftmax"
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...]) -> tuple[int, list[int | float]]:
        rank = len(shape)
        if rank == 0 or not -rank <= axis_attr < rank:
            raise DeviceError(f"axis {axis_attr} is out of range for shape {list(shape)}")
        a = axis_attr % rank
        if legacy:
            rows, length, inner = math.prod(shape[:a]), math.prod(shape[a:]), 1
        else:
            inner = math.prod(shape[a + 1:])
            rows, length = math.prod(shape[:a]) * inner, shape[a]
        return rows, SOFTMAX.pack(rows=rows, length=length, inner=inner)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        rows, words = memo.get(x.shape, x.shape)
        out = dev.empty(x.shape, x.dtype)
        if out.size:
            _dispatch_rows(dev, site, "softmax.wgsl", rows, [x, out], words, (SOFTMAX,), LOG=str(log).lower(), T=t)
        return (out,)

    return run


# ------------------------------------------------------------------ layer/rms/instance norm

def _norm_decls(t: str, has_bias: bool, stats: bool = False) -> dict[str, str]:
    reads = [("X", t), ("Scale", t)] + ([("Bias", t)] if has_bias else [])
    writes = [("Y", t)] + ([("Mean", "f32"), ("Inv", "f32")] if stats else [])
    return {"DECLS": storage_decls(reads, writes), "T": t, "STATS": "Mean[r] = mean; Inv[r] = inv;" if stats else ""}


def _param_index(shape: tuple[int, ...], tail: tuple[int, ...], what: str) -> str:
    """How a scale/bias of `shape` is indexed in a row of shape `tail`: by element (j) or a single value."""
    core = tuple(shape)
    while core and core[0] == 1 and len(core) > len(tail):
        core = core[1:]
    if math.prod(core) == 1:
        return "0u"
    pad = (1,) * (len(tail) - len(core)) + core
    if pad == tuple(tail):
        return "j"
    raise DeviceError(f"{what} of shape {list(shape)} must match the normalized dims {list(tail)} or be a scalar")


def build_layernorm(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """LayerNormalization (with its optional Mean/InvStdDev outputs) and RMSNormalization."""
    rms = ctx.node.op_type == "RMSNormalization"
    present = [i for i in range(len(ctx.node.inputs)) if has_input(ctx, i)]
    t = require_float(ctx, dev, *present)
    stats = any(o for o in ctx.node.outputs[1:])
    if stats and (rms or any(out_dtype(ctx, i) != np.float32 for i in (1, 2))):
        raise Unsupported("statistics outputs other than LayerNormalization's float32 Mean/InvStdDev")
    axis_attr = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))
    has_bias = not rms and has_input(ctx, 2)
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...], s_shape: tuple[int, ...], b_shape: tuple[int, ...] | None) -> Any:
        rank = len(shape)
        if not -rank <= axis_attr < max(rank, 1):
            raise DeviceError(f"axis {axis_attr} is out of range for X of shape {list(shape)}")
        a = axis_attr % rank if rank else 0
        tail = shape[a:]
        values = {"RMS": str(rms).lower(), **_norm_decls(t, has_bias, stats),
                  "SCALE_AT": f"f32(Scale[{_param_index(s_shape, tail, 'scale')}])",
                  "BIAS_AT": f"f32(Bias[{_param_index(b_shape, tail, 'bias')}])" if b_shape is not None else "0.0"}
        rows = math.prod(shape[:a])
        words = LAYERNORM.pack(rows=rows, length=math.prod(tail), eps=eps, groups=0, channels_per_group=0, cells=0)
        return rows, words, values, shape[:a] + (1,) * (rank - a)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, scale: GpuTensor, bias: GpuTensor | None = None) -> tuple[GpuTensor, ...]:
        b_shape = bias.shape if has_bias and bias is not None else None
        rows, words, values, stat_shape = memo.get((x.shape, scale.shape, b_shape), x.shape, scale.shape, b_shape)
        out = dev.empty(x.shape, x.dtype)
        extra = [dev.empty(stat_shape, np.float32), dev.empty(stat_shape, np.float32)] if stats else []
        if out.size:
            tensors = [x, scale] + ([bias] if b_shape is not None and bias is not None else []) + [out] + extra
            _dispatch_rows(dev, site, "layernorm.wgsl", rows, tensors, words, (LAYERNORM,), **values)
        return (out, *extra)

    return run


def build_groupnorm(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """GroupNormalization and InstanceNormalization (one channel per group): statistics per (sample, group)
    over the group's channels and spatial cells, then scale and bias per channel (per group before
    GroupNormalization-21, as the CPU op reads them)."""
    t = require_float(ctx, dev, 0, 1, 2)
    eps = float(ctx.attr("epsilon", 1e-5))
    instance = ctx.node.op_type == "InstanceNormalization"
    groups_attr = None if instance else int(ctx.attr("num_groups"))
    per_group = not instance and ctx.opset < 21
    at = "r % pu(ln_groups)" if per_group else "(r % pu(ln_groups)) * pu(ln_channels_per_group) + j / pu(ln_cells)"
    site = Site(ctx.node.label())
    values = {"RMS": "false", **_norm_decls(t, True), "SCALE_AT": f"f32(Scale[{at}])", "BIAS_AT": f"f32(Bias[{at}])"}

    def run(x: GpuTensor, scale: GpuTensor, bias: GpuTensor) -> tuple[GpuTensor]:
        c = x.shape[1] if x.ndim > 1 else 0
        groups = c if groups_attr is None else groups_attr
        want = groups if per_group else c
        if x.ndim < 2 or groups <= 0 or c % groups or scale.size != want or bias.size != want:
            raise DeviceError(f"X {list(x.shape)}, scale {list(scale.shape)}, B {list(bias.shape)}: need {groups} "
                              f"groups dividing the channels and {want} scale and bias values")
        hw = math.prod(x.shape[2:])
        rows, length = x.shape[0] * groups, c // groups * hw
        out = dev.empty(x.shape, x.dtype)
        if out.size:
            words = LAYERNORM.pack(rows=rows, length=length, eps=eps, groups=groups, channels_per_group=c // groups,
                                   cells=max(hw, 1))
            _dispatch_rows(dev, site, "layernorm.wgsl", rows, [x, scale, bias, out], words, (LAYERNORM,), **values)
        return (out,)

    return run


def build_batchnorm(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Inference BatchNormalization as one elementwise pass over per-channel statistics."""
    require_float(ctx, dev, 0, 1, 2, 3, 4)
    if ctx.attr("training_mode", 0) or any(o for o in ctx.node.outputs[1:]):
        raise Unsupported("training mode (running statistics outputs)")
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise Unsupported("training mode (is_test=0)")
    eps = wgsl_float(float(ctx.attr("epsilon", 1e-5)))
    inner = map_kernel(ctx, dev, ["x", "s", "b", "m", "v"], f"(x - m) * (s / sqrt(v + {eps})) + b", out_dtype(ctx))

    def run(x: GpuTensor, s: GpuTensor, b: GpuTensor, m: GpuTensor, v: GpuTensor) -> Sequence[GpuTensor]:
        if x.ndim < 2:
            raise DeviceError(f"X {list(x.shape)} needs a channel axis")
        c = (x.shape[1],) + (1,) * (x.ndim - 2)
        return inner(x, s.view(c), b.view(c), m.view(c), v.view(c))

    return run


# ------------------------------------------------------------------ reductions

#: name -> (INIT, UPDATE over acc and v, FINAL, log-sum-exp)
REDUCERS: dict[str, tuple[str, str, str, bool]] = {
    "ReduceSum": ("0.0", "acc + v", "acc", False),
    "ReduceMean": ("0.0", "acc + v", "acc / f32(count)", False),
    "ReduceMax": ("-wi_inf()", "max(acc, v)", "acc", False),
    "ReduceMin": ("wi_inf()", "min(acc, v)", "acc", False),
    "ReduceProd": ("1.0", "acc * v", "acc", False),
    "ReduceL1": ("0.0", "acc + abs(v)", "acc", False),
    "ReduceL2": ("0.0", "acc + v * v", "sqrt(acc)", False),
    "ReduceSumSquare": ("0.0", "acc + v * v", "acc", False),
    "ReduceLogSum": ("0.0", "acc + v", "wi_log(acc)", False),
    "ReduceLogSumExp": ("0.0", "acc + exp(v)", "m + wi_log(acc)", True),
    "GlobalAveragePool": ("0.0", "acc + v", "acc / f32(count)", False),
    "GlobalMaxPool": ("-wi_inf()", "max(acc, v)", "acc", False),
}

#: Opset from which `axes` is an input (before: an attribute).
_AXES_INPUT_SINCE = {"ReduceSum": 13}


class Reducer:
    """One reduction call site: plans [kept dims] x [reduced dims] walks and dispatches reduce.wgsl."""

    def __init__(self, dev: GpuDevice, label: str, op: str, t: str):
        self.dev = dev
        self.label = label
        self.sites = [Site(label)]
        self.op = op
        self.t = t

    def plan(self, shape: tuple[int, ...], axes: tuple[int, ...], keep: bool) -> tuple[tuple[int, ...], Any]:
        rank = len(shape)
        red = sorted({a % rank for a in axes}) if rank else []
        kept = [d for d in range(rank) if d not in red]
        strides = contiguous_strides(shape)
        out_shape = tuple(1 if d in red else shape[d] for d in range(rank)) if keep else \
            tuple(shape[d] for d in kept)
        kd, (ks,) = collapse([shape[d] for d in kept] or [1], [[strides[d] for d in kept] or [0]])
        rd, (rs,) = collapse([shape[d] for d in red] or [1], [[strides[d] for d in red] or [0]])
        count = math.prod(shape[d] for d in red)
        n = math.prod(out_shape)
        init, update, final, lse = REDUCERS[self.op]
        words = reduce_uniforms(len(kd), len(rd))
        prog = self.dev.program("reduce.wgsl", "reduce", WG, uniforms=(words,),
                                by_shape=dict(KEPT=len(kd), RED=len(rd)), LSE=str(lse).lower(), INIT=init,
                                UPDATE=update, FINAL=final, T=self.t)
        ranges = self._ranges(count, lse)
        while len(self.sites) < len(ranges):
            self.sites.append(Site(f"{self.label} pass {len(self.sites)}"))
        passes = [(self.sites[i], words.pack(n=n, count=count, max_begin=mb, max_end=me, sum_begin=sb, sum_end=se,
                                             first=int(i == 0), last=int(i == len(ranges) - 1), kept_dims=kd,
                                             kept_strides=ks, red_dims=rd, red_strides=rs))
                  for i, (mb, me, sb, se) in enumerate(ranges)]
        part = (n if len(passes) > 1 else 1) * REDUCE_PART_WORDS
        return out_shape, (prog, passes, part, ceil_div(n, WG))

    @staticmethod
    def _ranges(count: int, lse: bool) -> list[tuple[int, int, int, int]]:
        """Per pass (max_begin, max_end, sum_begin, sum_end): one pass when `count` fits, else the max
        passes (log-sum-exp only) with their sum range empty at `count`, then the sum passes."""
        if count <= ELEMENTS_PER_PASS:
            return [(0, count if lse else 0, 0, count)]
        starts = range(0, count, ELEMENTS_PER_PASS)
        maxes = [(b, min(b + ELEMENTS_PER_PASS, count), count, count) for b in starts] if lse else []
        return maxes + [(0, 0, b, min(b + ELEMENTS_PER_PASS, count)) for b in starts]

    def run(self, planned: Any, x: GpuTensor, out: GpuTensor) -> None:
        prog, passes, part_words, groups = planned
        if out.size:
            # a single pass never touches Part; it is bound (a few words) because the layout is fixed
            part = self.dev.empty((part_words,), np.dtype(np.float32))
            for site, params in passes:
                self.dev.dispatch(site, prog, [x, out, part], params, groups)


def build_reduce(ctx: OpContext, dev: GpuDevice) -> Kernel:
    op = ctx.node.op_type
    t = require_float(ctx, dev, 0)
    host_params(ctx, dev, 1)
    keep = bool(ctx.attr("keepdims", 1))
    noop = bool(ctx.attr("noop_with_empty_axes", 0))
    since = _AXES_INPUT_SINCE.get(op, 18)
    if ctx.opset < since:
        attr = ctx.attr("axes", None)
        fixed: list[int] | None = [int(a) for a in attr] if attr is not None else []
    elif not has_input(ctx, 1):
        fixed = []
    elif ctx.const(1) is not None:
        fixed = [int(a) for a in np.asarray(ctx.const(1)).reshape(-1)]
    else:
        fixed = None
    red = Reducer(dev, ctx.node.label(), op, t)
    memo = ShapeMemo(red.plan)

    def run(x: GpuTensor, axes: Any = None) -> tuple[GpuTensor]:
        given = fixed if fixed is not None else [int(a) for a in np.asarray(host_values(axes, "axes")).reshape(-1)]
        if not given:
            if noop:
                return (x,)
            given = list(range(x.ndim))
        out_shape, planned = memo.get((x.shape, tuple(given), keep), x.shape, tuple(given), keep)
        out = dev.empty(out_shape, x.dtype)
        red.run(planned, x, out)
        return (out,)

    return run


def build_global_pool(ctx: OpContext, dev: GpuDevice) -> Kernel:
    red = Reducer(dev, ctx.node.label(), ctx.node.op_type, require_float(ctx, dev, 0))
    memo = ShapeMemo(red.plan)

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        if x.ndim < 3:
            raise DeviceError(f"X {list(x.shape)} needs spatial dims")
        axes = tuple(range(2, x.ndim))
        out_shape, planned = memo.get((x.shape, axes), x.shape, axes, True)
        out = dev.empty(out_shape, x.dtype)
        red.run(planned, x, out)
        return (out,)

    return run


def build_arg(ctx: OpContext, dev: GpuDevice) -> Kernel:
    t = require_float(ctx, dev, 0)
    axis_attr = int(ctx.attr("axis", 0))
    keep = bool(ctx.attr("keepdims", 1))
    last = bool(ctx.attr("select_last_index", 0))
    cmp = (">" if ctx.node.op_type == "ArgMax" else "<") + ("=" if last else "")
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...]) -> Any:
        rank = len(shape)
        if rank == 0 or not -rank <= axis_attr < rank or shape[axis_attr] == 0:
            raise DeviceError(f"axis {axis_attr} is invalid or empty for shape {list(shape)}")
        a = axis_attr % rank
        out_shape = tuple(1 if d == a else s for d, s in enumerate(shape)) if keep else shape[:a] + shape[a + 1:]
        n = math.prod(out_shape)
        prog = dev.program("arg.wgsl", "arg", WG, uniforms=(ARG,), BETTER=f"v {cmp} best", T=t)
        return out_shape, prog, ARG.pack(n=n, length=shape[a], inner=math.prod(shape[a + 1:])), ceil_div(n, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        out_shape, prog, params, groups = memo.get(x.shape, x.shape)
        out = dev.empty(out_shape, np.dtype(np.int64))
        if out.size:
            dev.dispatch(site, prog, [x, out], params, groups)
        return (out,)

    return run


_BUILD: dict[str, tuple[str, tuple[str, ...], Callable[[OpContext, GpuDevice], Kernel]]] = {
    "Softmax": ("softmax.wgsl", ("serial", "wg"), build_softmax),
    "LogSoftmax": ("softmax.wgsl", ("serial", "wg"), build_softmax),
    "LayerNormalization": ("layernorm.wgsl", ("serial", "wg"), build_layernorm),
    "RMSNormalization": ("layernorm.wgsl", ("serial", "wg"), build_layernorm),
    "InstanceNormalization": ("layernorm.wgsl", ("serial", "wg"), build_groupnorm),
    "GroupNormalization": ("layernorm.wgsl", ("serial", "wg"), build_groupnorm),
    "BatchNormalization": ("elementwise.wgsl", ("main",), build_batchnorm),
    "ArgMax": ("arg.wgsl", ("arg",), build_arg),
    "ArgMin": ("arg.wgsl", ("arg",), build_arg),
    "GlobalAveragePool": ("reduce.wgsl", ("reduce",), build_global_pool),
    "GlobalMaxPool": ("reduce.wgsl", ("reduce",), build_global_pool),
}
_BUILD.update({op: ("reduce.wgsl", ("reduce",), build_reduce) for op in REDUCERS if op.startswith("Reduce")})

SPECS = {("", op): spec for op, spec in _BUILD.items()}
