"""Data movement on the GPU: views, Transpose, Concat, Split, Slice, Gather, Expand, Tile, Pad, Shape,
DepthToSpace/SpaceToDepth.

Reshape, Squeeze, Unsqueeze, Flatten, Identity and (inference) Dropout are
views: no dispatch, the output shares the input's storage.  Shape and Size
read only the tensor's metadata and produce host-backed tensors, so the
shape arithmetic that follows stays on the CPU without a GPU readback.
Everything else moves raw words (u32, or f16) with the kernels in
wgsl/copy.wgsl and wgsl/gather.wgsl; one strided copy covers Transpose,
Expand, Slice, Concat, Split and DepthToSpace/SpaceToDepth; Resize uses the CPU op's own index and
weight tables (wgsl/resize.wgsl).  Targets (shapes, axes, starts, pads, repeats) must be
known on the host: constants, or values the CPU computed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import DeviceError
from ...ops import resize as cpu_resize
from ...ops.shape import axes_arg, reshape_target
from ...ops.registry import Kernel, OpContext
from .common import (WG, ShapeMemo, bcast_strides, ceil_div, collapse, const_ints, contiguous_strides, has_input,
                     host_params, host_values, in_dtype, storage_decls)
from .device import GpuDevice, GpuTensor, Site, Unsupported
from .uniforms import Uniforms, Value


def _words(ctx: OpContext, dev: GpuDevice, *inputs: int) -> str:
    """The word the copy kernels move for these inputs' type: u32 for every 32-bit storage, f16."""
    kinds = {"f16" if in_dtype(ctx, i) == np.float16 else "u32" for i in inputs}
    if len(kinds) > 1:
        raise Unsupported("inputs mix 16- and 32-bit storage")
    return kinds.pop() if kinds else "u32"


def _ints(t: Any, what: str) -> list[int]:
    v = host_values(t, what)
    assert v is not None
    return [int(x) for x in np.asarray(v).reshape(-1)]


#: Pad's constant as the copy word: the raw bits, or an f16 rounded from the f32 in the uniform.
_PAD = {"u32": "pu(cp_value)", "f16": "f16(pf(cp_value))"}


def copy_uniforms(rank: int) -> tuple[Uniforms, Uniforms, Uniforms]:
    """The words of wgsl/copy.wgsl's strided, tile and pad entry points for (merged) rank `rank`; a
    pipeline declares all three (one module)."""
    r = max(rank, 1)
    return (Uniforms("cs", ("n", "src_offset", "dst_offset", ("shape", r), ("src_strides", r), ("dst_strides", r))),
            Uniforms("ct", ("n", ("out_shape", r), ("in_shape", r), ("in_strides", r))),
            Uniforms("cp", ("n", "mode", "value", ("out_shape", r), ("in_shape", r), ("begin", r))))


def resize_uniforms(rank: int) -> Uniforms:
    """The words of wgsl/resize.wgsl for an output of rank `rank` (at least 1)."""
    return Uniforms("rs", ("n", "axis1", "taps1", "table1", "axis2", "taps2", "table2", "stride1", "stride2",
                           ("out_shape", rank), ("in_strides", rank), "fill"))


def gather_uniforms(rank: int) -> tuple[Uniforms, Uniforms]:
    """The words of wgsl/gather.wgsl's gather and gather_elements entry points."""
    r = max(rank, 1)
    return (Uniforms("gt", ("n", "inner", "count", "axis")),
            Uniforms("ge", ("n", "axis", "axis_length", ("indices_shape", r), ("data_strides", r))))


class Strided:
    """Strided copies from one dispatch site per region (Concat and Split use several)."""

    def __init__(self, dev: GpuDevice, label: str, word: str = "u32"):
        self.dev = dev
        self.label = label
        self.word = word
        self.sites: list[Site] = []

    def plan(self, shape: Sequence[int], src_strides: Sequence[int], src_off: int, dst_strides: Sequence[int],
             dst_off: int) -> tuple[Any, list[Value], int] | None:
        n = math.prod(shape)
        if n == 0:
            return None
        dims, (ss, ds) = collapse(list(shape), [list(src_strides), list(dst_strides)])
        layouts = copy_uniforms(len(dims))
        prog = self.dev.program("copy.wgsl", "strided", WG, uniforms=layouts, by_shape=dict(RANK=len(dims)),
                                W=self.word, PAD_VALUE=_PAD[self.word])
        words = layouts[0].pack(n=n, src_offset=src_off, dst_offset=dst_off, shape=dims, src_strides=ss,
                                dst_strides=ds)
        return prog, words, ceil_div(n, WG)

    def run(self, k: int, planned: tuple[Any, list[Value], int] | None, src: GpuTensor, dst: GpuTensor) -> None:
        if planned is None:
            return
        while len(self.sites) <= k:
            self.sites.append(Site(f"{self.label} #{len(self.sites)}"))
        prog, params, groups = planned
        self.dev.dispatch(self.sites[k], prog, [src, dst], params, groups)


# ------------------------------------------------------------------ views

def build_reshape(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    allowzero = bool(ctx.attr("allowzero", 0))
    if ctx.opset < 5:
        fixed = [int(d) for d in ctx.attr("shape")]

        def run_attr(x: GpuTensor) -> tuple[GpuTensor]:
            return (x.view(reshape_target(x.shape, fixed, allowzero)),)

        return run_attr
    const = const_ints(ctx, 1, "shape") if ctx.const(1) is not None else None

    def run(x: GpuTensor, shape: Any) -> tuple[GpuTensor]:
        target = const if const is not None else _ints(shape, "Reshape's shape")
        return (x.view(reshape_target(x.shape, target, allowzero)),)

    return run


def build_squeeze(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    arg = axes_arg(ctx)

    def run(x: GpuTensor, axes: Any = None) -> tuple[GpuTensor]:
        ax = _ints(axes, "Squeeze's axes") if arg.at_run_time else arg.axes
        if ax is None:
            shape = tuple(d for d in x.shape if d != 1)
        else:
            norm = {a % x.ndim for a in ax}
            if any(x.shape[a] != 1 for a in norm):
                raise DeviceError(f"cannot squeeze axes {ax} of shape {list(x.shape)}")
            shape = tuple(d for i, d in enumerate(x.shape) if i not in norm)
        return (x.view(shape),)

    return run


def build_unsqueeze(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    arg = axes_arg(ctx)

    def run(x: GpuTensor, axes: Any = None) -> tuple[GpuTensor]:
        ax = _ints(axes, "Unsqueeze's axes") if arg.at_run_time else arg.axes
        if ax is None:
            raise DeviceError("Unsqueeze needs axes")
        rank = x.ndim + len(ax)
        norm = sorted(a % rank for a in ax)
        shape = list(x.shape)
        for a in norm:
            shape.insert(a, 1)
        return (x.view(tuple(shape)),)

    return run


def build_flatten(ctx: OpContext, dev: GpuDevice) -> Kernel:
    axis = int(ctx.attr("axis", 1))

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        a = axis % x.ndim if x.ndim and axis < 0 else axis
        return (x.view((math.prod(x.shape[:a]), math.prod(x.shape[a:]))),)

    return run


def build_identity(ctx: OpContext, dev: GpuDevice) -> Kernel:
    return lambda x: (x,)


def build_dropout(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Inference Dropout is the identity; training mode (random) stays on the CPU."""
    if ctx.opset >= 12 and has_input(ctx, 2):
        t = ctx.const(2)
        if t is None or bool(np.asarray(t).reshape(-1)[0]):
            raise Unsupported("training_mode is set or not a constant")
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise Unsupported("training mode (is_test=0)")
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1]:
        def run_mask(x: GpuTensor, *_: Any) -> tuple[GpuTensor, GpuTensor]:
            return x, dev.upload(np.ones(x.shape, dtype=np.bool_))

        return run_mask
    return lambda x, *_: (x,)


def build_shape(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Shape of a GPU tensor, as a host-backed int64 vector (no readback)."""
    if ctx.node.inputs[0] not in dev.resident:
        raise Unsupported("the input is on the host: the cpu provider answers without a transfer")
    start, end = ctx.attr("start", 0), ctx.attr("end", None)

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        return (dev.upload(np.array(x.shape[start:end], dtype=np.int64)),)

    return run


def build_size(ctx: OpContext, dev: GpuDevice) -> Kernel:
    if ctx.node.inputs[0] not in dev.resident:
        raise Unsupported("the input is on the host: the cpu provider answers without a transfer")
    return lambda x: (dev.upload(np.array(x.size, dtype=np.int64)),)


# ------------------------------------------------------------------ strided copies

def build_transpose(ctx: OpContext, dev: GpuDevice) -> Kernel:
    word = _words(ctx, dev, 0)
    perm_attr = ctx.attr("perm", None)
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        perm = [int(p) for p in perm_attr] if perm_attr is not None else list(range(len(shape)))[::-1]
        if sorted(perm) != list(range(len(shape))):
            raise DeviceError(f"perm {perm} is not a permutation of the {len(shape)} axes of {list(shape)}")
        st = contiguous_strides(shape)
        out_shape = tuple(shape[p] for p in perm)
        return out_shape, copier.plan(out_shape, [st[p] for p in perm], 0, contiguous_strides(out_shape), 0)

    return _planned_copy(dev, copier, plan)


def build_depth_space(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """DepthToSpace (DCR, CRD) and SpaceToDepth: a transpose of a 6-D view of the NCHW input, one strided copy."""
    word = _words(ctx, dev, 0)
    block = int(ctx.attr("blocksize"))
    to_space = ctx.node.op_type == "DepthToSpace"
    crd = ctx.attr("mode", "DCR") == "CRD"
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        if len(shape) != 4:
            raise DeviceError(f"{ctx.node.label()}: input {list(shape)} must have rank 4")
        n, c, h, w = shape
        b = block
        view: tuple[int, ...]
        if to_space:
            cc = c // (b * b)
            view, perm = ((n, cc, b, b, h, w), (0, 1, 4, 2, 5, 3)) if crd else ((n, b, b, cc, h, w), (0, 3, 4, 1, 5, 2))
            out_shape = (n, cc, h * b, w * b)
        else:
            view, perm = (n, c, h // b, b, w // b, b), (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4)
            out_shape = (n, c * b * b, h // b, w // b)
        st = contiguous_strides(view)
        moved = tuple(view[p] for p in perm)
        return out_shape, copier.plan(moved, [st[p] for p in perm], 0, contiguous_strides(moved), 0)

    return _planned_copy(dev, copier, plan)


def _planned_copy(dev: GpuDevice, copier: "Strided", plan: Callable[[tuple[int, ...]], tuple[tuple[int, ...], Any]]
                  ) -> Kernel:
    """A kernel that is one strided copy, planned once per input shape by `plan` (output shape, copy plan)."""
    memo = ShapeMemo(plan)

    def run(x: GpuTensor) -> tuple[GpuTensor]:
        out_shape, planned = memo.get(x.shape, x.shape)
        out = dev.empty(out_shape, x.dtype)
        copier.run(0, planned, x, out)
        return (out,)

    return run


def build_expand(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    word = _words(ctx, dev, 0)
    const = const_ints(ctx, 1, "shape") if ctx.const(1) is not None else None
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        out_shape = tuple(np.broadcast_shapes(shape, target))
        return out_shape, copier.plan(out_shape, bcast_strides(shape, out_shape), 0,
                                      contiguous_strides(out_shape), 0)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, shape: Any) -> tuple[GpuTensor]:
        target = tuple(const if const is not None else _ints(shape, "Expand's shape"))
        out_shape, planned = memo.get((x.shape, target), x.shape, target)
        out = dev.empty(out_shape, x.dtype)
        copier.run(0, planned, x, out)
        return (out,)

    return run


def _slice_params(ctx: OpContext) -> Callable[[tuple[Any, ...]], tuple[list[int], list[int], list[int] | None,
                                                                    list[int] | None]]:
    """starts, ends, axes, steps: from attributes (opset < 10) or inputs 1-4 (constants or host values)."""
    if ctx.opset < 10:
        starts, ends = [int(v) for v in ctx.attr("starts")], [int(v) for v in ctx.attr("ends")]
        axes = ctx.attr("axes", None)
        fixed = (starts, ends, [int(a) for a in axes] if axes is not None else None, None)
        return lambda args: fixed
    consts = [const_ints(ctx, i, "slice parameter") if ctx.const(i) is not None else None for i in range(1, 5)]
    present = [has_input(ctx, i) for i in range(1, 5)]

    def get(args: tuple[Any, ...]) -> tuple[list[int], list[int], list[int] | None, list[int] | None]:
        vals: list[list[int] | None] = []
        for k in range(4):
            if not present[k]:
                vals.append(None)
            elif consts[k] is not None:
                vals.append(consts[k])
            else:
                vals.append(_ints(args[k], "a Slice parameter"))
        assert vals[0] is not None and vals[1] is not None
        return vals[0], vals[1], vals[2], vals[3]

    return get


def build_slice(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1, 2, 3, 4)
    word = _words(ctx, dev, 0)
    params_of = _slice_params(ctx)
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shape: tuple[int, ...], starts: tuple[int, ...], ends: tuple[int, ...], axes: tuple[int, ...] | None,
             steps: tuple[int, ...] | None) -> tuple[tuple[int, ...], Any]:
        rank = len(shape)
        ax = list(axes) if axes is not None else list(range(len(starts)))
        st = list(steps) if steps is not None else [1] * len(starts)
        begin = [0] * rank
        step = [1] * rank
        out = list(shape)
        for a, s, e, k in zip(ax, starts, ends, st):
            a %= rank
            if k == 0:
                raise DeviceError("Slice step 0")
            lo, hi, kk = slice(s, e, k).indices(shape[a])
            begin[a], step[a], out[a] = lo, kk, len(range(lo, hi, kk))
        strides = contiguous_strides(shape)
        off = sum(b * s for b, s in zip(begin, strides))
        out_shape = tuple(out)
        return out_shape, copier.plan(out_shape, [s * k for s, k in zip(strides, step)], off,
                                      contiguous_strides(out_shape), 0)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, *args: Any) -> tuple[GpuTensor]:
        starts, ends, axes, steps = params_of(args)
        key = (x.shape, tuple(starts), tuple(ends), tuple(axes) if axes is not None else None,
               tuple(steps) if steps is not None else None)
        out_shape, planned = memo.get(key, *key)
        out = dev.empty(out_shape, x.dtype)
        copier.run(0, planned, x, out)
        return (out,)

    return run


def build_concat(ctx: OpContext, dev: GpuDevice) -> Kernel:
    word = _words(ctx, dev, *range(len(ctx.node.inputs)))
    axis_attr = int(ctx.attr("axis", 1))
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], list[Any]]:
        rank = len(shapes[0])
        axis = axis_attr % rank
        for s in shapes:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
                raise DeviceError(f"cannot concatenate shapes {[list(x) for x in shapes]} along axis {axis_attr}")
        out_shape = list(shapes[0])
        out_shape[axis] = sum(s[axis] for s in shapes)
        dst = contiguous_strides(out_shape)
        planned, at = [], 0
        for s in shapes:
            planned.append(copier.plan(s, contiguous_strides(s), 0, dst, at * dst[axis]))
            at += s[axis]
        return tuple(out_shape), planned

    memo = ShapeMemo(plan)

    def run(*xs: GpuTensor) -> tuple[GpuTensor]:
        shapes = tuple(x.shape for x in xs)
        out_shape, planned = memo.get(shapes, shapes)
        out = dev.empty(out_shape, xs[0].dtype)
        for k, (x, p) in enumerate(zip(xs, planned)):
            copier.run(k, p, x, out)
        return (out,)

    return run


def build_split(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    word = _words(ctx, dev, 0)
    axis_attr = int(ctx.attr("axis", 0))
    n_out = len(ctx.node.outputs)
    if ctx.opset < 13:
        split_attr = ctx.attr("split", None)
        fixed = [int(v) for v in split_attr] if split_attr is not None else None
        dynamic = False
        if has_input(ctx, 1):
            fixed, dynamic = (const_ints(ctx, 1, "split"), False) if ctx.const(1) is not None else (None, True)
    else:
        fixed = const_ints(ctx, 1, "split") if has_input(ctx, 1) and ctx.const(1) is not None else None
        dynamic = has_input(ctx, 1) and fixed is None
    num_outputs = ctx.attr("num_outputs", None)
    copier = Strided(dev, ctx.node.label(), word)

    def plan(shape: tuple[int, ...], sizes: tuple[int, ...] | None) -> list[tuple[tuple[int, ...], Any]]:
        axis = axis_attr % len(shape)
        dim = shape[axis]
        if sizes is None:
            parts = num_outputs if num_outputs is not None else n_out
            each = ceil_div(dim, parts)
            sizes = tuple(min(each, max(0, dim - each * k)) for k in range(parts))
        if sum(sizes) != dim or len(sizes) != n_out:
            raise DeviceError(f"split sizes {list(sizes)} do not divide axis {axis} of {list(shape)} "
                              f"into {n_out} outputs")
        src = contiguous_strides(shape)
        outs, at = [], 0
        for size in sizes:
            o = list(shape)
            o[axis] = size
            outs.append((tuple(o), copier.plan(o, src, at * src[axis], contiguous_strides(o), 0)))
            at += size
        return outs

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, split: Any = None) -> tuple[GpuTensor, ...]:
        sizes = tuple(_ints(split, "Split's sizes")) if dynamic else (tuple(fixed) if fixed is not None else None)
        planned = memo.get((x.shape, sizes), x.shape, sizes)
        outs = []
        for k, (shape, p) in enumerate(planned):
            out = dev.empty(shape, x.dtype)
            copier.run(k, p, x, out)
            outs.append(out)
        return tuple(outs)

    return run


# ------------------------------------------------------------------ gathers, tile, pad

def build_gather(ctx: OpContext, dev: GpuDevice) -> Kernel:
    word = _words(ctx, dev, 0)
    axis_attr = int(ctx.attr("axis", 0))
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...], ishape: tuple[int, ...]) -> tuple[tuple[int, ...], Any, list[Value], int]:
        axis = axis_attr % len(shape)
        out_shape = shape[:axis] + ishape + shape[axis + 1:]
        inner = math.prod(shape[axis + 1:])
        n = math.prod(out_shape)
        layouts = gather_uniforms(1)
        prog = dev.program("gather.wgsl", "gather", WG, uniforms=layouts, RANK=1, W=word)
        words = layouts[0].pack(n=n, inner=inner, count=math.prod(ishape), axis=shape[axis])
        return out_shape, prog, words, ceil_div(n, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, idx: GpuTensor) -> tuple[GpuTensor]:
        out_shape, prog, params, groups = memo.get((x.shape, idx.shape), x.shape, idx.shape)
        out = dev.empty(out_shape, x.dtype)
        if out.size:
            dev.dispatch(site, prog, [x, idx, out], params, groups)
        return (out,)

    return run


def build_gather_elements(ctx: OpContext, dev: GpuDevice) -> Kernel:
    word = _words(ctx, dev, 0)
    axis_attr = int(ctx.attr("axis", 0))
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...], ishape: tuple[int, ...]) -> tuple[Any, list[Value], int]:
        rank = len(shape)
        if len(ishape) != rank:
            raise DeviceError(f"indices {list(ishape)} and data {list(shape)} differ in rank")
        axis = axis_attr % rank
        n = math.prod(ishape)
        layouts = gather_uniforms(rank)
        prog = dev.program("gather.wgsl", "gather_elements", WG, uniforms=layouts, by_shape=dict(RANK=rank), W=word)
        words = layouts[1].pack(n=n, axis=axis, axis_length=shape[axis], indices_shape=ishape,
                                data_strides=contiguous_strides(shape))
        return prog, words, ceil_div(n, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, idx: GpuTensor) -> tuple[GpuTensor]:
        prog, params, groups = memo.get((x.shape, idx.shape), x.shape, idx.shape)
        out = dev.empty(idx.shape, x.dtype)
        if out.size:
            dev.dispatch(site, prog, [x, idx, out], params, groups)
        return (out,)

    return run


def build_tile(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1)
    word = _words(ctx, dev, 0)
    const = const_ints(ctx, 1, "repeats") if ctx.const(1) is not None else None
    site = Site(ctx.node.label())

    def plan(shape: tuple[int, ...], reps: tuple[int, ...]) -> tuple[tuple[int, ...], Any, list[Value], int]:
        if len(reps) != len(shape):
            raise DeviceError(f"repeats {list(reps)} must have one entry per axis of {list(shape)}")
        out_shape = tuple(d * r for d, r in zip(shape, reps))
        n = math.prod(out_shape)
        layouts = copy_uniforms(len(shape))
        prog = dev.program("copy.wgsl", "tile", WG, uniforms=layouts, by_shape=dict(RANK=max(1, len(shape))),
                           W=word, PAD_VALUE=_PAD[word])
        words = layouts[1].pack(n=n, out_shape=list(out_shape) or [1], in_shape=list(shape) or [1],
                                in_strides=contiguous_strides(shape) or [1])
        return out_shape, prog, words, ceil_div(n, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, repeats: Any) -> tuple[GpuTensor]:
        reps = tuple(const if const is not None else _ints(repeats, "Tile's repeats"))
        out_shape, prog, params, groups = memo.get((x.shape, reps), x.shape, reps)
        out = dev.empty(out_shape, x.dtype)
        if out.size:
            dev.dispatch(site, prog, [x, out], params, groups)
        return (out,)

    return run


_PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2, "wrap": 3}


def build_pad(ctx: OpContext, dev: GpuDevice) -> Kernel:
    host_params(ctx, dev, 1, 2, 3)
    word = _words(ctx, dev, 0)
    mode = ctx.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in _PAD_MODES:
        raise Unsupported(f"mode {mode!r}")
    dt = in_dtype(ctx, 0)
    site = Site(ctx.node.label())
    if ctx.opset < 11:
        pads_fixed: list[int] | None = [int(p) for p in ctx.attr("pads", ctx.attr("paddings", []))]
        value_fixed: float | None = float(ctx.attr("value", 0.0))
        axes_fixed: list[int] | None = None
    else:
        pads_fixed = const_ints(ctx, 1, "pads") if ctx.const(1) is not None else None
        value_fixed = None
        if not has_input(ctx, 2):
            value_fixed = 0.0
        elif ctx.const(2) is not None:
            value_fixed = np.asarray(ctx.const(2)).reshape(-1)[0].item() if np.asarray(ctx.const(2)).size else 0.0
        axes_fixed = const_ints(ctx, 3, "axes") if has_input(ctx, 3) and ctx.const(3) is not None else None

    def bits(v: Any) -> int:
        return int(np.array(v, dtype=np.float32).view(np.uint32)) if dt is not None and dt.kind == "f" \
            else int(np.array(v).astype(np.int64)) & 0xFFFFFFFF

    def plan(shape: tuple[int, ...], pads: tuple[int, ...], axes: tuple[int, ...] | None,
             value: Any) -> tuple[tuple[int, ...], Any, list[Value], int]:
        rank = len(shape)
        ax = [a % rank for a in axes] if axes is not None else list(range(rank))
        if len(pads) != 2 * len(ax):
            raise DeviceError(f"pads {list(pads)} must have 2 entries per padded axis of {list(shape)}")
        begin, end = [0] * rank, [0] * rank
        for k, a in enumerate(ax):
            begin[a], end[a] = pads[k], pads[k + len(ax)]
        out_shape = tuple(d + b + e for d, b, e in zip(shape, begin, end))
        if any(d < 0 for d in out_shape):
            raise DeviceError(f"pads {list(pads)} make shape {list(shape)} negative")
        if mode != "constant" and any(d == 0 for d in shape) and any(begin + end):
            raise DeviceError(f"{mode} padding of an empty axis")
        n = math.prod(out_shape)
        layouts = copy_uniforms(rank)
        prog = dev.program("copy.wgsl", "pad", WG, uniforms=layouts, by_shape=dict(RANK=max(rank, 1)), W=word,
                           PAD_VALUE=_PAD[word])
        params = layouts[2].pack(n=n, mode=_PAD_MODES[mode], value=bits(value), out_shape=list(out_shape) or [1],
                                 in_shape=list(shape) or [1], begin=begin or [0])
        return out_shape, prog, params, ceil_div(n, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, pads: Any = None, value: Any = None, axes: Any = None) -> tuple[GpuTensor]:
        p = tuple(pads_fixed if pads_fixed is not None else _ints(pads, "Pad's pads"))
        if value_fixed is not None:
            v = value_fixed
        else:
            hv = host_values(value, "Pad's constant_value")
            v = np.asarray(hv).reshape(-1)[0].item() if hv is not None and np.asarray(hv).size else 0.0
        a = axes_fixed if axes_fixed is not None or axes is None else _ints(axes, "Pad's axes")
        key = (x.shape, p, tuple(a) if a is not None else None, v)
        out_shape, prog, params, groups = memo.get(key, *key)
        out = dev.empty(out_shape, x.dtype)
        if out.size:
            dev.dispatch(site, prog, [x, out], params, groups)
        return (out,)

    return run


# ------------------------------------------------------------------ resize

def build_resize(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """Resize (10+) and Upsample (7, 9) from the CPU op's per-axis index/weight tables (wgsl/resize.wgsl)."""
    host_params(ctx, dev, 1, 2, 3)
    word = _words(ctx, dev, 0)
    upsample = ctx.node.op_type == "Upsample"
    legacy = upsample or ctx.opset < 11
    spec = cpu_resize.read_spec(ctx, legacy)
    crop = spec.coord == "tf_crop_and_resize"
    nearest = spec.mode == "nearest"
    if not nearest and in_dtype(ctx, 0) not in (np.float32, np.float16):
        raise Unsupported(f"{spec.mode} interpolation of {in_dtype(ctx, 0)} data")
    if not nearest and word == "u32":
        word = "f32"  # interpolation reads values, not words
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    attr_scales = np.asarray(ctx.attr("scales"), dtype=np.float32) if upsample and ctx.opset < 9 else None
    site = Site(ctx.node.label())
    decls = storage_decls([("X", word), ("Idx", "i32")] + ([] if nearest else [("Wt", "f32")]), [("Y", word)])
    values = {"NEAREST": str(nearest).lower(), "DECLS": decls, "EXTRAP": str(crop).lower(),
              "WEIGHT_AT": "1.0" if nearest else "Wt[at]", "STORE": f"{word}(acc)",
              "FILL": "pu(rs_fill)" if word == "u32" else f"{word}(pf(rs_fill))"}
    dt = in_dtype(ctx, 0)
    fill = spec.extrapolation
    fill_word = int(np.array(fill, np.float32).view(np.uint32)) if word == "u32" and dt is not None \
        and dt.kind == "f" else (int(fill) & 0xFFFFFFFF if word == "u32" else float(fill))

    def plan(shape: tuple[int, ...], out_shape: tuple[int, ...], factors: tuple[float, ...],
             rois: tuple[tuple[float, float], ...]) -> Any:
        resized = [a for a, (i, o, f) in enumerate(zip(shape, out_shape, factors))
                   if i != o or not math.isclose(f, 1.0) or (crop and rois[a] != (0.0, 1.0))]
        if len(resized) > 2:
            raise DeviceError(f"resizing {len(resized)} axes of {list(shape)} (the GPU kernel resizes at most two)")
        idx_parts, w_parts = [np.zeros(1, np.int32)], [np.ones(1, np.float32)]
        meta, at = [], 1
        for a in resized:
            t = cpu_resize.axis_table(spec, shape[a], out_shape[a], float(factors[a]), rois[a])
            idx = np.array(t.idx).reshape(out_shape[a], -1)
            if t.outside is not None:
                idx[np.asarray(t.outside), 0] = -1
            idx_parts.append(idx.astype(np.int32).reshape(-1))
            w = np.ones(idx.shape, np.float32) if t.w is None else np.asarray(t.w, np.float32)
            w_parts.append(w.reshape(-1))
            meta.append((a, idx.shape[1], at))
            at += idx.size
        rank = max(len(shape), 1)
        while len(meta) < 2:
            meta.append((rank, 1, 0))
        strides = contiguous_strides(shape) or [1]
        tables = [dev.upload(np.concatenate(idx_parts))] + ([] if nearest else [dev.upload(np.concatenate(w_parts))])
        n = math.prod(out_shape)
        s1 = strides[meta[0][0]] if meta[0][0] < len(shape) else 0
        s2 = strides[meta[1][0]] if meta[1][0] < len(shape) else 0
        words = resize_uniforms(rank)
        (axis1, taps1, table1), (axis2, taps2, table2) = meta[:2]
        params = words.pack(n=n, axis1=axis1, taps1=taps1, table1=table1, axis2=axis2, taps2=taps2, table2=table2,
                            stride1=s1, stride2=s2, out_shape=list(out_shape) or [1], in_strides=strides,
                            fill=fill_word)
        prog = dev.program("resize.wgsl", "main", WG, uniforms=(words,), by_shape=dict(RANK=rank), **values)
        return prog, params, ceil_div(n, WG), tables

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, *rest: Any) -> tuple[GpuTensor]:
        axes = cpu_resize.resize_axes(ctx, x.ndim)
        roi = None
        if upsample:
            scales = attr_scales if attr_scales is not None else cpu_resize.present_values(host_values(
                rest[0] if rest else None, "Upsample's scales"))
            sizes = None
        elif legacy:
            scales, sizes = cpu_resize.present_values(host_values(rest[0] if rest else None, "Resize's scales")), None
        else:
            roi = cpu_resize.present_values(host_values(rest[0], "Resize's roi")) if rest else None
            scales = cpu_resize.present_values(host_values(rest[1], "Resize's scales")) if len(rest) > 1 else None
            sizes = cpu_resize.present_values(host_values(rest[2], "Resize's sizes")) if len(rest) > 2 else None
        out_shape, factors = cpu_resize.resize_target(ctx, x.shape, axes, scales, sizes, policy)
        rois = [(0.0, 1.0)] * x.ndim
        if crop:
            if roi is None or roi.size != 2 * len(axes):
                raise DeviceError(f"tf_crop_and_resize needs roi with {2 * len(axes)} entries, got "
                                  f"{None if roi is None else roi.tolist()}")
            r = roi.reshape(-1).astype(np.float64)
            for i, a in enumerate(axes):
                rois[a] = (float(r[i]), float(r[i + len(axes)]))
        key = (x.shape, tuple(out_shape), tuple(factors), tuple(rois))
        prog, params, groups, tables = memo.get(key, *key)
        out = dev.empty(tuple(out_shape), x.dtype)
        if out.size and x.size:
            dev.dispatch(site, prog, [x, *tables, out], params, groups)
        return (out,)

    return run


_VIEW: tuple[str, tuple[str, ...]] = ("", ())  # views and metadata: no dispatch
_STRIDED = ("copy.wgsl", ("strided",))

#: (domain, op) -> (WGSL file, entry points, builder)
SPECS: dict[tuple[str, str], tuple[str, tuple[str, ...], Callable[[OpContext, GpuDevice], Kernel]]] = {
    ("", "Reshape"): (*_VIEW, build_reshape), ("", "Squeeze"): (*_VIEW, build_squeeze),
    ("", "Unsqueeze"): (*_VIEW, build_unsqueeze), ("", "Flatten"): (*_VIEW, build_flatten),
    ("", "Identity"): (*_VIEW, build_identity), ("", "Dropout"): (*_VIEW, build_dropout),
    ("", "Shape"): (*_VIEW, build_shape), ("", "Size"): (*_VIEW, build_size),
    ("", "Transpose"): (*_STRIDED, build_transpose), ("", "Expand"): (*_STRIDED, build_expand),
    ("", "DepthToSpace"): (*_STRIDED, build_depth_space), ("", "SpaceToDepth"): (*_STRIDED, build_depth_space),
    ("", "Slice"): (*_STRIDED, build_slice), ("", "Concat"): (*_STRIDED, build_concat),
    ("", "Split"): (*_STRIDED, build_split), ("", "Tile"): ("copy.wgsl", ("tile",), build_tile),
    ("", "Pad"): ("copy.wgsl", ("pad",), build_pad), ("", "Gather"): ("gather.wgsl", ("gather",), build_gather),
    ("", "GatherElements"): ("gather.wgsl", ("gather_elements",), build_gather_elements),
    ("", "Resize"): ("resize.wgsl", ("main",), build_resize),
    ("", "Upsample"): ("resize.wgsl", ("main",), build_resize),
}

#: Ops whose outputs live on the host (metadata only).
HOST_OUTPUTS = {("", "Shape"), ("", "Size")}
