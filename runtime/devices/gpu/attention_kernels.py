"""Attention on the GPU: ONNX Attention (opset 23+) and webinfer.MultiHeadAttention,
both on the fused kernel in wgsl/attention.wgsl (online softmax over key tiles).

Layouts are strides: 3-D [batch, seq, heads*dim] inputs and 4-D [batch,
heads, seq, dim] inputs are read in place, and the output is written in the
layout the op defines, so the exporters' head split/merge transposes cost
nothing.  Head sizes are compile-time constants (the accumulator lives in
registers); sequence lengths, batch and head counts are uniforms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import DeviceError
from ...ops.registry import Kernel, OpContext
from .common import (WG, ShapeMemo, ceil_div, contiguous_strides, has_input, in_dtype, require_float,
                     storage_decls)
from .layout_kernels import Strided
from .device import GpuDevice, GpuTensor, Site, Unsupported
from .uniforms import Uniforms

#: Largest head size the register accumulator is compiled for.
MAX_HEAD = 256
#: The words of wgsl/attention.wgsl and attention_scores.wgsl (uniforms.py): strides are (batch, head, row),
#: the mask's (batch, head, row, key).
ATTENTION = Uniforms("at", ("B", "Hq", "Sq", "Skv", "group", "scale", "softcap", "causal_offset", ("q_strides", 3),
                            ("k_strides", 3), ("v_strides", 3), ("y_strides", 3), ("mask_strides", 4), "mask_length",
                            "window_left", "window_right"))


def _mask_strides(mshape: tuple[int, ...], target: tuple[int, int, int, int]) -> tuple[list[int], int]:
    """Strides of a mask broadcast to (batch, heads, q rows, keys) and its length along keys.

    Keys past the mask's last axis are masked (ONNX: a short last axis is padded with -inf).
    """
    if not 1 <= len(mshape) <= 4:
        raise DeviceError(f"attn_mask of shape {list(mshape)} must have 1 to 4 dims")
    full = (1,) * (4 - len(mshape)) + tuple(mshape)
    own = contiguous_strides(full)
    strides = []
    for d in range(3):
        if full[d] == target[d]:
            strides.append(own[d] if full[d] != 1 else 0)
        elif full[d] == 1:
            strides.append(0)
        else:
            raise DeviceError(f"attn_mask of shape {list(mshape)} does not broadcast to {list(target)} "
                              "(batch, q_num_heads, q_sequence_length, total_sequence_length)")
    if full[3] > target[3]:
        raise DeviceError(f"attn_mask of shape {list(mshape)} is longer than the {target[3]} keys")
    return strides + [1], full[3]


class Attention:
    """One attention call site: plans strides and dispatches attention.wgsl (and attention_scores.wgsl
    when the node asks for its qk_matmul_output)."""

    def __init__(self, dev: GpuDevice, label: str, t: str, mask_dtype: np.dtype | None, causal: bool = False,
                 softcap: float = 0.0, nonpad: bool = False, window: tuple[int, int] = (-1, -1),
                 qk_mode: int | None = None):
        self.dev = dev
        self.t = t
        self.site = Site(label)
        self.scores_site = Site(label + " qk_matmul_output")
        self.mask_dtype = mask_dtype
        self.causal = causal
        self.softcap = softcap
        self.nonpad = nonpad
        self.window = window
        self.qk_mode = qk_mode

    def _decls(self, tensors: list[str], out: str) -> dict[str, str]:
        """Bindings for Q, K, [V], [mask], [nonpad], out, and the mask's accessors."""
        t = self.t
        reads = [(n, t) for n in tensors]
        if self.mask_dtype is not None:
            reads.append(("Mask", "u32" if self.mask_dtype == np.bool_ else t))
        if self.nonpad:
            reads.append(("Nonpad", "i32"))
        if self.mask_dtype is None:
            at = "0.0"
        elif self.mask_dtype == np.bool_:
            at = "select(-wi_inf(), 0.0, Mask[at] != 0u)"
        else:
            at = "f32(Mask[at])"
        return {"DECLS": storage_decls(reads, [(out, t)]), "MASK_AT": at,
                "NONPAD_AT": "Nonpad[b]" if self.nonpad else "0",
                "CAUSAL": str(self.causal).lower(), "NONPAD": str(self.nonpad).lower(),
                "SOFTCAP": str(self.softcap != 0.0).lower(), "T": t}

    def plan(self, b: int, hq: int, hkv: int, sq: int, skv: int, d: int, dv: int, qs: tuple[int, int, int],
             ks: tuple[int, int, int], vs: tuple[int, int, int], ys: tuple[int, int, int],
             mshape: tuple[int, ...] | None, scale: float | None, offset: int = 0) -> Any:
        if d > MAX_HEAD or dv > MAX_HEAD:
            raise DeviceError(f"head size {max(d, dv)} exceeds the kernel's {MAX_HEAD}")
        if hkv == 0 or hq % hkv:
            raise DeviceError(f"{hq} query heads are not a multiple of {hkv} key/value heads")
        if mshape is not None:
            mstr, mlen = _mask_strides(mshape, (b, hq, sq, skv))
        else:
            mstr, mlen = [0, 0, 0, 0], skv
        inc = ("attention_mask.wgsl",)
        # the head sizes select the pipeline (register arrays); batch, heads and sequence lengths are uniforms
        prog = self.dev.program("attention.wgsl", "main", WG, inc, uniforms=(ATTENTION,), by_shape=dict(D=d, DV=dv),
                                **self._decls(["Q", "K", "V"], "Y"))
        scores = None
        if self.qk_mode is not None:
            scores = self.dev.program("attention_scores.wgsl", "main", WG, inc, uniforms=(ATTENTION,),
                                      by_shape=dict(D=d), MODE=self.qk_mode, **self._decls(["Q", "K"], "S"))
        s = float(scale) if scale is not None else 1.0 / math.sqrt(d)
        params = ATTENTION.pack(B=b, Hq=hq, Sq=sq, Skv=skv, group=hq // hkv, scale=s, softcap=float(self.softcap),
                                causal_offset=offset, q_strides=qs, k_strides=ks, v_strides=vs, y_strides=ys,
                                mask_strides=mstr, mask_length=mlen, window_left=self.window[0],
                                window_right=self.window[1])
        return prog, scores, params, ceil_div(b * hq * sq, WG)

    def run(self, planned: Any, q: GpuTensor, k: GpuTensor, v: GpuTensor, mask: GpuTensor | None,
            nonpad: GpuTensor | None, out: GpuTensor, scores_out: GpuTensor | None = None) -> None:
        prog, scores, params, groups = planned
        extra = ([mask] if mask is not None else []) + ([nonpad] if nonpad is not None else [])
        if scores is not None and scores_out is not None and scores_out.size:
            self.dev.dispatch(self.scores_site, scores, [q, k, *extra, scores_out], params, groups)
        if out.size == 0:
            return
        if params[ATTENTION.offsets["Skv"][0]] == 0:
            raise DeviceError("attention over zero keys")
        self.dev.dispatch(self.site, prog, [q, k, v, *extra, out], params, groups)


def _check_mask_type(ctx: OpContext, i: int) -> np.dtype | None:
    """A boolean mask, or an additive one of Q's float type."""
    if not has_input(ctx, i):
        return None
    dt = in_dtype(ctx, i)
    if dt is None or (dt != np.bool_ and dt != in_dtype(ctx, 0)):
        raise Unsupported(f"attn_mask of type {dt} (bool, or Q's type {in_dtype(ctx, 0)})")
    return dt


def build_mha(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """webinfer.MultiHeadAttention: q/k/v [batch, seq, heads*dim], additive or boolean mask."""
    t = require_float(ctx, dev, 0, 1, 2)
    heads = int(ctx.attr("num_heads"))
    scale = ctx.attr("scale", None)
    att = Attention(dev, ctx.node.label(), t, _check_mask_type(ctx, 3))

    def plan(qs: tuple[int, ...], ks: tuple[int, ...], vs: tuple[int, ...], ms: tuple[int, ...] | None) -> Any:
        if len(qs) != 3 or len(ks) != 3 or len(vs) != 3 or qs[2] % heads or vs[2] % heads or ks[2] != qs[2] \
                or ks[:2] != vs[:2] or ks[0] != qs[0]:
            raise DeviceError(f"q {list(qs)}, k {list(ks)}, v {list(vs)} are not [batch, seq, {heads}*dim] "
                              "tensors that fit together")
        b, sq, hidden = qs
        skv = ks[1]
        d, dv = hidden // heads, vs[2] // heads
        out = (b, sq, heads * dv)
        return out, att.plan(b, heads, heads, sq, skv, d, dv, (sq * hidden, d, hidden), (skv * hidden, d, hidden),
                             (skv * vs[2], dv, vs[2]), (sq * heads * dv, dv, heads * dv), ms, scale)

    memo = ShapeMemo(plan)

    def run(q: GpuTensor, k: GpuTensor, v: GpuTensor, mask: GpuTensor | None = None) -> tuple[GpuTensor]:
        ms = mask.shape if mask is not None else None
        out_shape, planned = memo.get((q.shape, k.shape, v.shape, ms), q.shape, k.shape, v.shape, ms)
        out = dev.empty(out_shape, q.dtype)
        att.run(planned, q, k, v, mask, None, out)
        return (out,)

    return run


def _layout(shape: tuple[int, ...], heads: int | None) -> tuple[int, int, int, int, tuple[int, int, int]]:
    """(batch, heads, seq, head size, strides(batch, head, row)) of a 3-D or 4-D Q/K/V."""
    if len(shape) == 4:
        b, h, s, d = shape
        return b, h, s, d, (h * s * d, s * d, d)
    if len(shape) == 3 and heads and shape[2] % heads == 0:
        b, s, hidden = shape
        d = hidden // heads
        return b, heads, s, d, (s * hidden, d, hidden)
    raise DeviceError(f"tensor {list(shape)} is not [batch, heads, seq, dim] or [batch, seq, {heads}*dim]")


def build_attention(ctx: OpContext, dev: GpuDevice) -> Kernel:
    """ONNX Attention: masks, causal, GQA, scale, softcap, sliding windows, per-batch key lengths
    (nonpad_kv_seqlen), a KV cache (past_key/past_value in, present_key/present_value out, concatenated
    on the GPU) and the qk_matmul_output output at any of its four stages."""
    t = require_float(ctx, dev, *[i for i in range(len(ctx.node.inputs)) if has_input(ctx, i) and i not in (3, 6)])
    has_nonpad = has_input(ctx, 6)
    if has_nonpad and in_dtype(ctx, 6) != np.int64:
        raise Unsupported("nonpad_kv_seqlen must be int64")
    outs = ctx.node.outputs
    qk_mode = int(ctx.attr("qk_matmul_output_mode", 0)) if len(outs) > 3 and outs[3] else None
    window = (int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))) if ctx.opset >= 25 \
        else (-1, -1)
    qh, kvh = ctx.attr("q_num_heads", None), ctx.attr("kv_num_heads", None)
    scale = ctx.attr("scale", None)
    want_present = len(outs) > 1 and bool(outs[1]) or len(outs) > 2 and bool(outs[2])
    att = Attention(dev, ctx.node.label(), t, _check_mask_type(ctx, 3), bool(ctx.attr("is_causal", 0)),
                    float(ctx.attr("softcap", 0.0)), has_nonpad, window, qk_mode)
    copier = Strided(dev, ctx.node.label() + " kv cache", "f16" if t == "f16" else "u32")

    def cache(shape: tuple[int, ...], heads: int | None, past: tuple[int, ...] | None, first: int) -> Any:
        """Copies building [B, H, P + S, D] from the past and the new keys/values (in their own layout)."""
        b, h, sn, d, (sb, sh, ss) = _layout(shape, heads)
        p = 0
        if past is not None:
            if len(past) != 4 or past[0] != b or past[1] != h or past[3] != d:
                raise DeviceError(f"past {list(past)} does not fit new keys/values {list(shape)} "
                                  f"(batch {b}, heads {h}, head size {d})")
            p = past[2]
        full = (b, h, p + sn, d)
        dst = contiguous_strides(full)
        plans = [copier.plan(past, contiguous_strides(past), 0, dst, 0) if past is not None else None,
                 copier.plan((b, h, sn, d), (sb, sh, ss, 1), 0, dst, p * d)]
        return full, p, plans, first

    def plan(qs: tuple[int, ...], ks: tuple[int, ...], vs: tuple[int, ...], ms: tuple[int, ...] | None,
             pks: tuple[int, ...] | None, pvs: tuple[int, ...] | None) -> Any:
        if not len(qs) == len(ks) == len(vs):
            raise DeviceError(f"Q {list(qs)}, K {list(ks)}, V {list(vs)} differ in rank")
        b, hq, sq, d, qst = _layout(qs, qh)
        kc = cache(ks, kvh, pks, 0) if pks is not None or want_present else None
        vc = cache(vs, kvh, pvs, 2) if pvs is not None or want_present else None
        bk, hkv, skv, dk, kst = _layout(kc[0] if kc else ks, kvh)
        bv, hv, skv_v, dv, vst = _layout(vc[0] if vc else vs, kvh)
        if bk != b or bv != b or hv != hkv or skv_v != skv or dk != d:
            raise DeviceError(f"Q {list(qs)}, K {list(ks)}, V {list(vs)} (with the past) do not fit together")
        out: tuple[int, ...]
        if len(qs) == 4:
            out = (b, hq, sq, dv)
            yst = (hq * sq * dv, sq * dv, dv)
        else:
            out = (b, sq, hq * dv)
            yst = (sq * hq * dv, dv, hq * dv)
        offset = kc[1] if kc else 0
        return out, (b, hq, sq, skv), kc, vc, att.plan(b, hq, hkv, sq, skv, d, dv, qst, kst, vst, yst, ms, scale,
                                                       offset)

    memo = ShapeMemo(plan)

    def build_cache(c: Any, past: GpuTensor | None, new: GpuTensor) -> GpuTensor:
        full, _, plans, first = c
        t = dev.empty(full, new.dtype)
        if past is not None:
            copier.run(first, plans[0], past, t)
        copier.run(first + 1, plans[1], new, t)
        return t

    def run(q: GpuTensor, k: GpuTensor, v: GpuTensor, mask: GpuTensor | None = None,
            past_k: GpuTensor | None = None, past_v: GpuTensor | None = None,
            nonpad: GpuTensor | None = None) -> tuple[GpuTensor | None, ...]:
        ms = mask.shape if mask is not None else None
        pks = past_k.shape if past_k is not None else None
        pvs = past_v.shape if past_v is not None else None
        key = (q.shape, k.shape, v.shape, ms, pks, pvs)
        out_shape, scores_shape, kc, vc, planned = memo.get(key, *key)
        if nonpad is not None and nonpad.shape != (scores_shape[0],):
            raise DeviceError(f"nonpad_kv_seqlen has shape {list(nonpad.shape)}, expected [{scores_shape[0]}]")
        kk = build_cache(kc, past_k, k) if kc else k
        vv = build_cache(vc, past_v, v) if vc else v
        out = dev.empty(out_shape, q.dtype)
        scores = dev.empty(scores_shape, q.dtype) if qk_mode is not None else None
        att.run(planned, q, kk, vv, mask, nonpad, out, scores)
        return (out, kk if kc else None, vv if vc else None, scores)

    return run


SPECS = {
    ("", "Attention"): ("attention.wgsl", ("main",), build_attention),
    ("webinfer", "MultiHeadAttention"): ("attention.wgsl", ("main",), build_mha),
}
