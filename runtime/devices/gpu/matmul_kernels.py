"""Matrix products on the GPU: MatMul, Gemm, webinfer.FusedMatMul (wgsl/matmul.wgsl).

One kernel, described by strides: transposed operands, broadcast batches and
1-D operands are all stride choices, never copies.  Bias (per column, per
row, or a full matrix), alpha/beta and the fused activation are applied in
the write.  The schedule (register-blocked or shared-memory tiled) is chosen
per adapter (`GpuDevice.matmul_variant`: register-blocked on CPU emulations, shared-memory tiles of
64 or, for products of at least 256x256, 128 elsewhere); vec4 loads are used for an operand
that is contiguous and 4-aligned along the loaded axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...errors import DeviceError
from ...ops.registry import Kernel, OpContext
from .common import (ShapeMemo, activation_expr, bcast_strides, ceil_div, collapse, has_input, require_float,
                     storage_decls)
from .device import GpuDevice, GpuTensor, Program, Site, Unsupported
from .uniforms import Uniforms

#: Output tile of one workgroup per schedule.
TILE = {"regblock": 32, "tiled": 64, "tiled8": 128}
#: Workgroup memory of the tiled8 schedule (two 16 x 128 float tiles).
TILED8_STORAGE = 2 * 16 * 128 * 4
#: Invocations per workgroup per schedule.
INVOCATIONS = {"regblock": 64, "tiled": 256, "tiled8": 256}
MAX_BATCH_RANK = 4
#: The words of wgsl/matmul.wgsl (uniforms.py).
MATMUL = Uniforms("mm", ("M", "N", "K", "batch", "a_row", "a_k", "b_k", "b_col", "bias_m", "bias_n", "alpha", "beta",
                         ("out_dims", MAX_BATCH_RANK), ("a_batch", MAX_BATCH_RANK), ("b_batch", MAX_BATCH_RANK)))


@dataclass(frozen=True)
class MatmulShape:
    """A product in stride form: C[z, m, n] = sum_k A[a(z) + m*sam + k*sak] * B[b(z) + k*sbk + n*sbn]."""

    m: int
    n: int
    k: int
    batch: tuple[int, ...]
    a_batch: tuple[int, ...]
    b_batch: tuple[int, ...]
    sam: int
    sak: int
    sbk: int
    sbn: int


def _decls(va: bool, vb: bool, vc: bool, bias: bool, res: bool, t: str) -> dict[str, str]:
    """The bindings and memory-access forms for one combination of vector widths, epilogue inputs and
    storage type `t` (f32 or f16: loads widen to f32, the store rounds once)."""
    t_a = f"vec4<{t}>" if va else t
    t_b = f"vec4<{t}>" if vb else t
    t_c = f"vec4<{t}>" if vc else t
    reads = [("A", t_a), ("B", t_b)] + ([("Bias", t)] if bias else []) + ([("Res", t)] if res else [])
    if va:
        load_a4 = "vec4<f32>(A[(base + k) >> 2u])"
        load_a1 = "f32(A[(base + k) >> 2u][(base + k) & 3u])"
    else:
        load_a4 = ("vec4<f32>(f32(A[base + k * pu(mm_a_k)]), f32(A[base + (k + 1u) * pu(mm_a_k)]), "
                   "f32(A[base + (k + 2u) * pu(mm_a_k)]), f32(A[base + (k + 3u) * pu(mm_a_k)]))")
        load_a1 = "f32(A[base + k * pu(mm_a_k)])"
    if vb:
        load_b4 = "vec4<f32>(B[(base + n) >> 2u])"
        load_b1 = "f32(B[(base + n) >> 2u][(base + n) & 3u])"
    else:
        last = "(pu(mm_N) - 1u)"
        load_b4 = (f"vec4<f32>(f32(B[base + n * pu(mm_b_col)]), f32(B[base + min(n + 1u, {last}) * pu(mm_b_col)]), "
                   f"f32(B[base + min(n + 2u, {last}) * pu(mm_b_col)]), f32(B[base + min(n + 3u, {last}) * pu(mm_b_col)]))")
        load_b1 = "f32(B[base + n * pu(mm_b_col)])"
    if vc:
        store = f"    C[at >> 2u] = vec4<{t}>(r);"
    else:
        store = "\n".join([f"    C[at] = {t}(r.x);"] + [f"    if (n0 + {c}u < N) {{ C[at + {c}u] = {t}(r.{x}); }}"
                                                          for c, x in ((1, "y"), (2, "z"), (3, "w"))])
    return {"DECLS": storage_decls(reads, [("C", t_c)]), "LOAD_A4": load_a4, "LOAD_A1": load_a1, "LOAD_B4": load_b4,
            "LOAD_B1": load_b1, "STORE": store,
            "BIAS_AT": "f32(Bias[m * pu(mm_bias_m) + n * pu(mm_bias_n)])" if bias else "0.0",
            "RES_AT": "f32(Res[at])" if res else "0.0"}


class Matmul:
    """Plans and records one product per call site (MatMul/Gemm/FusedMatMul nodes, 1x1 Conv)."""

    def __init__(self, dev: GpuDevice, label: str, act: str = "x", t: str = "f32"):
        self.dev = dev
        self.site = Site(label)
        self.act = act
        self.t = t
        self.variant = dev.matmul_variant

    def plan(self, s: MatmulShape, bias_strides: tuple[int, int] | None, alpha: float = 1.0,
             beta: float = 1.0, residual: bool = False) -> tuple[Program, list[int | float], tuple[int, int, int]]:
        dims, (sa, sb) = collapse(list(s.batch) or [1], [list(s.a_batch) or [0], list(s.b_batch) or [0]])
        if len(dims) > MAX_BATCH_RANK:
            raise DeviceError(f"batch dims {list(s.batch)} with these broadcasts need {len(dims)} strides "
                              f"(the kernel takes {MAX_BATCH_RANK})")
        nbatch = math.prod(dims)
        if nbatch > self.dev.limits.max_workgroups_per_dim:
            raise DeviceError(f"{nbatch} matrices in one batch exceed the grid's z limit")
        va = s.sak == 1 and s.k % 4 == 0 and s.sam % 4 == 0 and all(x % 4 == 0 for x in sa)
        vb = s.sbn == 1 and s.n % 4 == 0 and s.sbk % 4 == 0 and all(x % 4 == 0 for x in sb)
        vc = s.n % 4 == 0
        values = _decls(va, vb, vc, bias_strides is not None, residual, self.t)
        variant = self.variant
        if variant == "auto":  # hardware adapters: the big tiles only when the product fills them
            big = s.m >= 256 and s.n >= 256 and self.dev.limits.max_workgroup_storage >= TILED8_STORAGE
            variant = "tiled8" if big else "tiled"
        prog = self.dev.program("matmul.wgsl", variant, INVOCATIONS[variant], uniforms=(MATMUL,),
                                by_shape=dict(BR=len(dims), **values), ACT=self.act)
        bs = bias_strides or (0, 0)
        params = MATMUL.pack(M=s.m, N=s.n, K=s.k, batch=nbatch, a_row=s.sam, a_k=s.sak, b_k=s.sbk, b_col=s.sbn,
                             bias_m=bs[0], bias_n=bs[1], alpha=float(alpha), beta=float(beta), out_dims=dims,
                             a_batch=sa, b_batch=sb)
        tile = TILE[variant]
        return prog, params, (ceil_div(s.n, tile), ceil_div(s.m, tile), nbatch)

    def run(self, planned: tuple[Program, list[int | float], tuple[int, int, int]], a: GpuTensor, b: GpuTensor,
            bias: GpuTensor | None, out: GpuTensor, residual: GpuTensor | None = None) -> None:
        prog, params, groups = planned
        if out.size == 0:
            return
        if params[MATMUL.offsets["K"][0]] == 0:
            raise DeviceError("a product over an empty inner dimension (K = 0) is not supported on the GPU")
        tensors = [a, b] + ([bias] if bias is not None else []) + ([residual] if residual is not None else []) + [out]
        self.dev.dispatch(self.site, prog, tensors, params, groups)


def _stride2(shape: Sequence[int], out: tuple[int, int]) -> tuple[int, int]:
    """(m, n) strides of a bias of `shape` broadcast onto an [M, N] output."""
    tail = tuple(shape)
    while len(tail) > 2 and tail[0] == 1:
        tail = tail[1:]
    if len(tail) > 2:
        raise DeviceError(f"bias of shape {list(shape)} has batch dims; the fused write takes [M, N] biases")
    st = bcast_strides(tail, out)
    return st[0], st[1]


def matmul_shape(a: Sequence[int], b: Sequence[int], trans_a: bool, trans_b: bool
                 ) -> tuple[MatmulShape, tuple[int, ...]]:
    """numpy.matmul over possibly transposed operands: the stride form and the output shape."""
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    m, ka = (a2[-1], a2[-2]) if trans_a and len(a) > 1 else (a2[-2], a2[-1])
    kb, n = (b2[-1], b2[-2]) if trans_b and len(b) > 1 else (b2[-2], b2[-1])
    if ka != kb:
        raise DeviceError(f"cannot multiply A {list(a)} by B {list(b)}: inner dimensions {ka} and {kb} differ")
    try:
        batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError:
        raise DeviceError(f"batch dimensions of A {list(a)} and B {list(b)} do not broadcast") from None
    mat_a, mat_b = a2[-2] * a2[-1], b2[-2] * b2[-1]
    a_batch = tuple(x * mat_a for x in bcast_strides(a2[:-2], batch))
    b_batch = tuple(x * mat_b for x in bcast_strides(b2[:-2], batch))
    sam, sak = (1, m) if trans_a and len(a) > 1 else (ka, 1)
    sbk, sbn = (1, kb) if trans_b and len(b) > 1 else (n, 1)
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    return MatmulShape(m, n, ka, batch, a_batch, b_batch, sam, sak, sbk, sbn), out


def build_matmul(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """MatMul and webinfer.FusedMatMul (transA/transB, alpha, bias input 2, activation)."""
    t = require_float(ctx, dev, *[i for i in range(len(ctx.node.inputs)) if has_input(ctx, i)])
    fused = ctx.node.domain == "webinfer"
    trans_a = bool(ctx.attr("transA", 0)) if fused else False
    trans_b = bool(ctx.attr("transB", 0)) if fused else False
    alpha = float(ctx.attr("alpha", 1.0)) if fused else 1.0
    mm = Matmul(dev, ctx.node.label(), activation_expr(ctx) if fused else "x", t)

    def plan(sa: tuple[int, ...], sb: tuple[int, ...], sbias: tuple[int, ...] | None) -> Any:
        if not sa or not sb:
            raise DeviceError(f"operands must have rank >= 1, got {list(sa)} and {list(sb)}")
        shape, out = matmul_shape(sa, sb, trans_a, trans_b)
        bias = _stride2(sbias, (shape.m, shape.n)) if sbias is not None else None
        return out, mm.plan(shape, bias, alpha, 1.0)

    memo = ShapeMemo(plan)

    def run(a: GpuTensor, b: GpuTensor, bias: GpuTensor | None = None) -> tuple[GpuTensor]:
        sbias = bias.shape if bias is not None else None
        out_shape, planned = memo.get((a.shape, b.shape, sbias), a.shape, b.shape, sbias)
        out = dev.empty(out_shape, a.dtype)
        mm.run(planned, a, b, bias, out)
        return (out,)

    return run


def build_gemm(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """alpha * A' @ B' + beta * C for 2-D A and B."""
    t = require_float(ctx, dev, *[i for i in range(len(ctx.node.inputs)) if has_input(ctx, i)])
    if ctx.opset < 7 and has_input(ctx, 2) and not ctx.attr("broadcast", 0):
        c = ctx.in_types[2]
        if getattr(c, "rank", None) != 2:
            raise Unsupported("opset < 7 C without broadcast must be [M, N]")
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    mm = Matmul(dev, ctx.node.label(), "x", t)

    def plan(sa: tuple[int, ...], sb: tuple[int, ...], sc: tuple[int, ...] | None) -> Any:
        if len(sa) != 2 or len(sb) != 2:
            raise DeviceError(f"Gemm needs matrices, got A {list(sa)} and B {list(sb)}")
        shape, out = matmul_shape(sa, sb, trans_a, trans_b)
        bias = _stride2(sc, (shape.m, shape.n)) if sc is not None and beta != 0.0 else None
        return out, mm.plan(shape, bias, alpha, beta), bias is not None

    memo = ShapeMemo(plan)

    def run(a: GpuTensor, b: GpuTensor, c: GpuTensor | None = None) -> tuple[GpuTensor]:
        sc = c.shape if c is not None else None
        out_shape, planned, use_c = memo.get((a.shape, b.shape, sc), a.shape, b.shape, sc)
        out = dev.empty(out_shape, a.dtype)
        mm.run(planned, a, b, c if use_c else None, out)
        return (out,)

    return run


SPECS = {
    ("", "MatMul"): ("matmul.wgsl", ("regblock", "tiled", "tiled8"), build_matmul),
    ("webinfer", "FusedMatMul"): ("matmul.wgsl", ("regblock", "tiled", "tiled8"), build_matmul),
    ("", "Gemm"): ("matmul.wgsl", ("regblock", "tiled", "tiled8"), build_gemm),
}
