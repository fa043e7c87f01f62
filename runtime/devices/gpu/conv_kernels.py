"""Convolutions and pooling on the GPU: Conv, ConvTranspose, MaxPool, AveragePool.

Conv picks its kernel per node and shape: a 1x1, stride-1, unpadded,
ungrouped conv is a matrix product (matmul.wgsl, weights [M, C] times each
image [C, H*W], no copy); depthwise convs (groups == input channels) have a
kernel of their own; everything else runs as an implicit GEMM
(conv2d.wgsl `direct`).  Bias, the fused residual (4th input) and the fused
activation attributes are applied in the write.  1-D convs run as 2-D with
H = 1; 3-D convs stay on the CPU.  The window geometry (pads, auto_pad,
ceil mode) comes from the CPU op's own helpers, so both devices agree on it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from ...errors import DeviceError
from ...ops.conv import Geometry, Window, read_transpose, read_window
from ...ops.registry import Kernel, OpContext
from .common import WG, ShapeMemo, activation_expr, ceil_div, has_input, require_float, storage_decls
from .device import GpuDevice, GpuTensor, Site, Unsupported
from .matmul_kernels import Matmul, MatmulShape
from .uniforms import Uniforms


def _rank_ok(ctx: OpContext) -> None:
    rank = getattr(ctx.in_types[0], "rank", None)
    if rank is not None and rank not in (3, 4):
        raise Unsupported(f"{rank - 2}-D spatial data (the GPU kernels take 1-D and 2-D)")


def _as_2d(x: tuple[int, ...]) -> tuple[int, int, int, int]:
    """N, C, H, W of a 3-D (1-D conv) or 4-D input."""
    if len(x) == 3:
        return x[0], x[1], 1, x[2]
    if len(x) == 4:
        return x[0], x[1], x[2], x[3]
    raise DeviceError(f"input {list(x)} is not [N, C, W] or [N, C, H, W]")


#: The words of wgsl/conv2d.wgsl (uniforms.py); a 1-D conv is a 2-D one of height 1.
CONV2D = Uniforms("cv", ("N", "C", "H", "W", "M", "OH", "OW", "G", "Cg", "Mg", "KH", "KW", "stride_y", "stride_x",
                         "dilation_y", "dilation_x", "pad_top", "pad_left"))


def _conv_words(n: int, c: int, h: int, w: int, m: int, oh: int, ow: int, group: int, kh: int, kw: int,
                geo: list[int]) -> list[int | float]:
    """CONV2D's words; `geo` is [stride y, stride x, dilation y, dilation x, pad top, pad left]."""
    sy, sx, dy, dx, py, px = geo
    return CONV2D.pack(N=n, C=c, H=h, W=w, M=m, OH=oh, OW=ow, G=group, Cg=c // group, Mg=m // group, KH=kh, KW=kw,
                       stride_y=sy, stride_x=sx, dilation_y=dy, dilation_x=dx, pad_top=py, pad_left=px)


def pool_uniforms(spatial: int) -> Uniforms:
    """The words of wgsl/pool.wgsl for `spatial` spatial dims (8 per dim: see the file)."""
    return Uniforms("pl", ("planes", "cells", "in_cells", "tap_begin", "tap_end", "first", "last",
                           ("dims", 8 * spatial)))


#: Window taps one pool.wgsl invocation walks per dispatch. llvmpipe counts every loop iteration of an
#: invocation against one limit of 65535 and silently stops looping past it (a 128x128 window summed
#: its first 8192 taps: 8 iterations per tap at 2 spatial dims, more at 3, as the tap's decode loops over
#: the dims); 2048 taps stay well inside it, and bounded work per invocation also keeps huge windows
#: clear of the watchdogs of other drivers.
TAPS_PER_PASS = 2048

#: Words per output of pool.wgsl's `Part` (acc, count, best) carried between passes.
POOL_PART_WORDS = 3


def _geometry2(g: Geometry) -> tuple[list[int], int, int]:
    """(strides, dilations, pads as [sy, sx, dy, dx, py, px]), OH, OW of a 1-D or 2-D geometry."""
    if len(g.out) == 1:
        return [1, g.strides[0], 1, g.dilations[0], 0, g.begin[0]], 1, g.out[0]
    return [g.strides[0], g.strides[1], g.dilations[0], g.dilations[1], g.begin[0], g.begin[1]], g.out[0], g.out[1]


def _decls(bias: bool, res: bool, t: str) -> dict[str, str]:
    reads = [("X", t), ("Wt", t)] + ([("Bias", t)] if bias else []) + ([("Res", t)] if res else [])
    return {"DECLS": storage_decls(reads, [("Y", t)]), "T": t, "BIAS_AT": "f32(Bias[m])" if bias else "0.0",
            "RES_AT": "f32(Res[at])" if res else "0.0"}


def build_conv(ctx: OpContext, dev: GpuDevice) -> Kernel:
    present = [i for i in range(len(ctx.node.inputs)) if has_input(ctx, i)]
    t = require_float(ctx, dev, *present)
    _rank_ok(ctx)
    win: Window = read_window(ctx, pool=False)
    group = int(ctx.attr("group", 1))
    act = activation_expr(ctx)
    has_bias, has_res = has_input(ctx, 2), has_input(ctx, 3)
    mm = Matmul(dev, ctx.node.label(), act, t)
    site = Site(ctx.node.label())
    values: dict[str, Any] = {"ACT": act, **_decls(has_bias, has_res, t)}

    def plan(xs: tuple[int, ...], ws: tuple[int, ...]) -> Any:
        n, c, h, w = _as_2d(xs)
        if len(ws) != len(xs) or c != ws[1] * group or ws[0] % group:
            raise DeviceError(f"X {list(xs)} and W {list(ws)} do not fit with group={group}")
        m = ws[0]
        kernel = ws[2:]
        g = win.geometry(ctx, xs[2:], kernel)
        geo, oh, ow = _geometry2(g)
        out = (n, m) + tuple(g.out)
        kh, kw = (1, kernel[0]) if len(kernel) == 1 else (kernel[0], kernel[1])
        if g.trivial and group == 1:
            shape = MatmulShape(m, h * w, c, (n,), (0,), (c * h * w,), c, 1, h * w, 1)
            return out, "matmul", mm.plan(shape, (1, 0) if has_bias else None, residual=has_res)
        params = _conv_words(n, c, h, w, m, oh, ow, group, kh, kw, geo)
        if group == c and ws[1] == 1:
            prog = dev.program("conv2d.wgsl", "depthwise", WG, uniforms=(CONV2D,), **values)
            return out, "direct", (prog, params, ceil_div(n * m * ceil_div(oh * ow, 4), WG))
        prog = dev.program("conv2d.wgsl", "direct", 64, uniforms=(CONV2D,), **values)
        return out, "direct", (prog, params, (ceil_div(oh * ow, 32), ceil_div(m // group, 32), n * group))

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, w: GpuTensor, b: GpuTensor | None = None, z: GpuTensor | None = None
            ) -> tuple[GpuTensor]:
        out_shape, how, planned = memo.get((x.shape, w.shape), x.shape, w.shape)
        if b is not None and b.size != w.shape[0]:
            raise DeviceError(f"B {list(b.shape)} must be a vector of the {w.shape[0]} output channels")
        if z is not None and z.shape != out_shape:
            raise DeviceError(f"residual input {list(z.shape)} must have the output's shape {list(out_shape)}")
        out = dev.empty(out_shape, x.dtype)
        if out.size == 0:
            return (out,)
        if how == "matmul":
            mm.run(planned, w, x, b, out, z)
        else:
            prog, params, groups = planned
            tensors = [x, w] + ([b] if b is not None else []) + ([z] if z is not None else []) + [out]
            dev.dispatch(site, prog, tensors, params, groups)
        return (out,)

    return run


def build_conv_transpose(ctx: OpContext, dev: GpuDevice) -> Kernel:
    present = [i for i in range(len(ctx.node.inputs)) if has_input(ctx, i)]
    t = require_float(ctx, dev, *present)
    _rank_ok(ctx)
    attrs = read_transpose(ctx)
    group = int(ctx.attr("group", 1))
    has_bias = has_input(ctx, 2)
    site = Site(ctx.node.label())
    values: dict[str, Any] = {"ACT": activation_expr(ctx), **_decls(has_bias, False, t)}

    def plan(xs: tuple[int, ...], ws: tuple[int, ...]) -> Any:
        n, c, h, w = _as_2d(xs)
        if len(ws) != len(xs) or ws[0] != c or c % group:
            raise DeviceError(f"X {list(xs)} and W {list(ws)} do not fit with group={group}")
        m = ws[1] * group
        kernel = ws[2:]
        spatial, begin = attrs.geometry(ctx, xs[2:], kernel)
        dims = cast("list[int]", spatial)  # a concrete input shape gives concrete output dims
        strides, dilations, _ = attrs.win.axes(ctx, kernel, len(kernel))
        if len(kernel) == 1:
            geo, oh, ow, kh, kw = [1, strides[0], 1, dilations[0], 0, begin[0]], 1, dims[0], 1, kernel[0]
        else:
            geo = [strides[0], strides[1], dilations[0], dilations[1], begin[0], begin[1]]
            oh, ow, kh, kw = dims[0], dims[1], kernel[0], kernel[1]
        out = (n, m) + tuple(dims)
        prog = dev.program("conv2d.wgsl", "transpose", WG, uniforms=(CONV2D,), **values)
        params = _conv_words(n, c, h, w, m, oh, ow, group, kh, kw, geo)
        return out, prog, params, ceil_div(n * m * oh * ow, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor, w: GpuTensor, b: GpuTensor | None = None) -> tuple[GpuTensor]:
        out_shape, prog, params, groups = memo.get((x.shape, w.shape), x.shape, w.shape)
        out = dev.empty(out_shape, x.dtype)
        if out.size:
            dev.dispatch(site, prog, [x, w] + ([b] if b is not None else []) + [out], params, groups)
        return (out,)

    return run


def build_pool(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """MaxPool (optionally with its Indices output, either storage order) and AveragePool over 1 to 3
    spatial dims."""
    t = require_float(ctx, dev, 0)
    rank = getattr(ctx.in_types[0], "rank", None)
    if rank is not None and not 3 <= rank <= 5:
        raise Unsupported(f"{rank - 2}-D spatial data (the pool kernel takes 1 to 3 spatial dims)")
    is_max = ctx.node.op_type == "MaxPool"
    want_index = is_max and len(ctx.node.outputs) > 1 and bool(ctx.node.outputs[1])
    win = read_window(ctx, pool=True)
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    include_pad = bool(ctx.attr("count_include_pad", 0))
    site_label = ctx.node.label()
    sites = [Site(site_label)]
    decls = storage_decls([("X", t)], [("Y", t)] + ([("Index", "i32")] if want_index else []) + [("Part", "f32")])
    if is_max:
        values = {"INIT": "-wi_inf()", "UPDATE": "if (v > acc) { acc = v; best = base + select(at, atc, COLUMN); }",
                  "FINAL": "acc"}
    else:
        values = {"INIT": "0.0", "UPDATE": "acc += v;", "FINAL": "acc / max(count, 1.0)"}
    values.update(T=t, DECLS=decls, WRITE_INDEX="    Index[t] = i32(best);" if want_index else "",
                  COLUMN=str(bool(ctx.attr("storage_order", 0))).lower())

    def plan(xs: tuple[int, ...]) -> Any:
        if not 3 <= len(xs) <= 5:
            raise DeviceError(f"X {list(xs)} must be [N, C] plus 1 to 3 spatial dims")
        g = win.geometry(ctx, xs[2:], kernel)
        dims: list[int] = []
        for d, size in enumerate(xs[2:]):
            lo, hi = (-g.begin[d], size + g.pad_end[d]) if include_pad else (0, size)
            dims += [size, g.out[d], kernel[d], g.strides[d], g.dilations[d], g.begin[d], lo, hi]
        planes = xs[0] * xs[1]
        cells = math.prod(g.out)
        words = pool_uniforms(len(xs) - 2)
        prog = dev.program("pool.wgsl", "main", WG, uniforms=(words,), by_shape=dict(RANK=len(xs) - 2), **values)
        taps = math.prod(kernel)
        starts = range(0, taps, TAPS_PER_PASS)
        while len(sites) < len(starts):
            sites.append(Site(f"{site_label} pass {len(sites)}"))
        passes = [(sites[i], words.pack(planes=planes, cells=cells, in_cells=math.prod(xs[2:]), tap_begin=begin,
                                        tap_end=min(begin + TAPS_PER_PASS, taps), first=int(i == 0),
                                        last=int(i == len(starts) - 1), dims=dims))
                  for i, begin in enumerate(starts)]
        part = (planes * cells if len(passes) > 1 else 1) * POOL_PART_WORDS
        return xs[:2] + tuple(g.out), prog, passes, part, ceil_div(planes * cells, WG)

    memo = ShapeMemo(plan)

    def run(x: GpuTensor) -> tuple[GpuTensor, ...]:
        out_shape, prog, passes, part_words, groups = memo.get(x.shape, x.shape)
        out = dev.empty(out_shape, x.dtype)
        index = [dev.empty(out_shape, np.dtype(np.int64))] if want_index else []
        if out.size:
            # a single pass never touches Part; it is bound (a few words) because the layout is fixed
            part = dev.empty((part_words,), np.dtype(np.float32))
            for pass_site, params in passes:
                dev.dispatch(pass_site, prog, [x, out, *index, part], params, groups)
        return (out, *index)

    return run


SPECS = {
    ("", "Conv"): ("conv2d.wgsl", ("direct", "depthwise"), build_conv),
    ("webinfer", "FusedConv"): ("conv2d.wgsl", ("direct", "depthwise"), build_conv),
    ("", "ConvTranspose"): ("conv2d.wgsl", ("transpose",), build_conv_transpose),
    ("", "MaxPool"): ("pool.wgsl", ("main",), build_pool),
    ("", "AveragePool"): ("pool.wgsl", ("main",), build_pool),
}
