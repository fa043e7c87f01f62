"""The fused transformer ops onnxruntime's optimizer writes into saved files (com.microsoft):
Attention (and QAttention, its form after quantize_dynamic), MultiHeadAttention, GroupQueryAttention, RotaryEmbedding, EmbedLayerNormalization,
SkipLayerNormalization, SkipSimplifiedLayerNormalization, SimplifiedLayerNormalization (ai.onnx
domain, onnxruntime's own), Gelu, BiasGelu, FastGelu, BiasAdd.  QuickGelu is a row of the
activation table (activations.py), which gives its op, its fusion and its GPU kernels.

`onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` turns a BERT export
into EmbedLayerNormalization + (Attention, SkipLayerNormalization, BiasGelu) per layer;
decoder exports bring MultiHeadAttention/GroupQueryAttention with RotaryEmbedding.  The
attention core is attention.py's (`scaled_dot_product_attention`), GELU is special.py's;
float16 inputs compute in float32 and return float16.  Masks follow onnxruntime: masked keys
get `mask_filter_value` (-10000) added, not -inf, so a fully masked row is uniform, as there.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import dtypes, gemm
from ..errors import UnsupportedOpError
from ..ir import Dim, Type
from ..shapes import InferContext, dim_div, dim_mul, dims_compatible, shape_str, tensor
from ..special import gelu, gelu_
from .attention import _attend as attend_core
from .attention import _causal_allowed, rotary_embedding, scaled_dot_product_attention
from .quant import INT_RANGES, exact_matmul
from .registry import Kernel, OpContext, op

MS = "com.microsoft"
#: onnxruntime's default epsilon of its fused layer norms (kDefaultSkipLayerNormEpsilon).
_LN_EPS = 1e-12


def _f32(x: np.ndarray) -> np.ndarray:
    """x in the dtype the kernels compute in: float64 stays, every narrower float becomes float32."""
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _fresh32(x: np.ndarray) -> np.ndarray:
    """A new C-ordered compute-dtype copy of x, for in-place work."""
    return np.array(x, dtype=_f32(x[:0]).dtype, order="C")


# ------------------------------------------------------------ activations

def _same_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.elem(0) not in (None, dtypes.FLOAT, dtypes.FLOAT16, dtypes.DOUBLE, dtypes.BFLOAT16):
        raise ctx.error(f"X must be a float tensor, got {dtypes.type_name(ctx.elem(0))}")
    return [ctx.type(0)]


def _bias_rule(ctx: InferContext) -> list[Type | None]:
    """An activation over X + bias, bias 1-D over X's last axis."""
    x, b = ctx.shape(0), ctx.shape(1) if ctx.has(1) else None
    if x is not None and b is not None and (len(b) != 1 or not x or not dims_compatible(b[0], x[-1])):
        raise ctx.error(f"bias {shape_str(b)} must be 1-D over the last axis of {shape_str(x)}")
    return _same_rule(ctx)


def _add_bias(ctx: OpContext, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = _fresh32(x)
    if bias is not None:
        if bias.ndim != 1 or not x.ndim or bias.shape[0] != x.shape[-1]:
            raise ctx.error(f"bias {list(bias.shape)} must be 1-D over the last axis of {list(x.shape)}")
        y += bias
    return y


@op("Gelu", since=1, domain=MS, infer=_same_rule)
def ms_gelu(ctx: OpContext) -> Kernel:
    """x * Phi(x), the exact (erf) GELU."""
    return lambda x: (gelu(_f32(x)).astype(x.dtype, copy=False),)


@op("BiasGelu", since=1, domain=MS, infer=_bias_rule)
def bias_gelu(ctx: OpContext) -> Kernel:
    """Exact GELU of A + B, B a bias over A's last axis."""

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        y = _add_bias(ctx, a, b)
        gelu_(y)
        return (y.astype(a.dtype, copy=False),)

    return run


@op("FastGelu", since=1, domain=MS, infer=_bias_rule)
def fast_gelu(ctx: OpContext) -> Kernel:
    """tanh-approximated GELU of X (+ bias): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def run(x: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        return (gelu(_add_bias(ctx, x, bias), "tanh").astype(x.dtype, copy=False),)

    return run


def _bias_add_rule(ctx: InferContext) -> list[Type | None]:
    x, b, s = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if x is not None and len(x) != 3:
        raise ctx.error(f"X must be 3-D (N, S, C), got {shape_str(x)}")
    if x is not None and b is not None and (len(b) != 1 or not dims_compatible(b[0], x[-1])):
        raise ctx.error(f"bias {shape_str(b)} must be [C] for X {shape_str(x)}")
    if x is not None and s is not None and (len(s) != 3 or not all(dims_compatible(p, q) for p, q in zip(s, x))):
        raise ctx.error(f"skip {shape_str(s)} must have X's shape {shape_str(x)}")
    return _same_rule(ctx)


@op("BiasAdd", since=1, domain=MS, infer=_bias_add_rule)
def bias_add(ctx: OpContext) -> Kernel:
    """X + bias + skip (the residual), X and skip (N, S, C), bias (C)."""

    def run(x: np.ndarray, bias: np.ndarray, skip: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim != 3 or skip.shape != x.shape:
            raise ctx.error(f"X {list(x.shape)} and skip {list(skip.shape)} must be the same (N, S, C)")
        y = _add_bias(ctx, x, bias)
        y += skip
        return (y.astype(x.dtype, copy=False),)

    return run


# ------------------------------------------------------------ layer norms

def _normalize(s: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None, eps: float,
               center: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """LayerNorm (center) or RMSNorm of s (compute dtype, C order, overwritten) over its last axis.

    Returns (y, mean or None, inv_std), the statistics shaped [..., 1]."""
    n = s.shape[-1]
    mean = None
    if center:
        mean = np.matmul(s, np.full((n, 1), 1.0 / n, s.dtype))
        s -= mean
    var = np.matmul(np.square(s), np.full((n, 1), 1.0 / n, s.dtype))
    var += s.dtype.type(eps)
    inv = 1.0 / np.sqrt(var)
    s *= inv
    s *= gamma
    if beta is not None:
        s += beta
    return s, mean, inv


def _check_hidden(ctx: Any, x: tuple[Dim, ...] | None, params: dict[str, tuple[Dim, ...] | None]) -> None:
    for name, p in params.items():
        if x is not None and p is not None and x and (len(p) != 1 or not dims_compatible(p[0], x[-1])):
            raise ctx.error(f"{name} {shape_str(p)} must be 1-D over the hidden axis of {shape_str(x)}")


def _skip_rule(simplified: bool) -> Callable[[InferContext], list[Type | None]]:
    """SkipLayerNormalization's rule (beta at input 3, bias at 4) or the simplified one's (bias at 3)."""

    def rule(ctx: InferContext) -> list[Type | None]:
        x, skip = ctx.shape(0), ctx.shape(1)
        if x is not None and len(x) not in (2, 3):
            raise ctx.error(f"input must be 3-D (batch, sequence, hidden) or 2-D, got {shape_str(x)}")
        if x is not None and skip is not None and (len(skip) > len(x) or not all(
                a == 1 or dims_compatible(a, b) for a, b in zip(skip[::-1], x[::-1])) or skip[-1] != x[-1]):
            raise ctx.error(f"skip {shape_str(skip)} does not broadcast to input {shape_str(x)}")
        names = {2: "gamma", 3: "bias"} if simplified else {2: "gamma", 3: "beta", 4: "bias"}
        _check_hidden(ctx, x, {n: ctx.shape(i) if ctx.has(i) else None for i, n in names.items()})
        stat = None if x is None else tuple(x[:-1]) + (1,)
        return [ctx.type(0), tensor(dtypes.FLOAT, stat), tensor(dtypes.FLOAT, stat), ctx.type(0)]

    return rule


def _skip_kernel(ctx: OpContext, simplified: bool) -> Kernel:
    eps = float(ctx.attr("epsilon", _LN_EPS))

    def run(x: np.ndarray, skip: np.ndarray, gamma: np.ndarray,
            *rest: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
        beta, bias = (None, rest[0] if rest else None) if simplified else \
            (rest[0] if rest else None, rest[1] if len(rest) > 1 else None)
        try:
            s = _fresh32(np.broadcast_to(x, np.broadcast_shapes(x.shape, skip.shape)))
            s += skip
        except ValueError:
            raise ctx.error(f"skip {list(skip.shape)} does not broadcast to input {list(x.shape)}") from None
        for name, p in (("gamma", gamma), ("beta", beta), ("bias", bias)):
            if p is not None and (p.ndim != 1 or p.shape[0] != x.shape[-1]):
                raise ctx.error(f"{name} {list(p.shape)} must be 1-D over the hidden axis of {list(x.shape)}")
        if bias is not None:
            s += bias
        total = s.astype(x.dtype) if len(ctx.node.outputs) > 3 and ctx.node.outputs[3] else None
        y, mean, inv = _normalize(s, gamma, beta, eps, center=not simplified)
        stat_mean = mean if mean is not None else np.zeros_like(inv)
        return (y.astype(x.dtype, copy=False), stat_mean.astype(np.float32), inv.astype(np.float32), total)

    return run


@op("SkipLayerNormalization", since=1, domain=MS, infer=_skip_rule(False))
def skip_layer_normalization(ctx: OpContext) -> Kernel:
    """LayerNorm(input + skip + bias) * gamma + beta over the hidden axis; the optional outputs are
    the mean, the inverse standard deviation and the sum before normalization."""
    return _skip_kernel(ctx, simplified=False)


@op("SkipSimplifiedLayerNormalization", since=1, domain=MS, infer=_skip_rule(True))
def skip_simplified_layer_normalization(ctx: OpContext) -> Kernel:
    """RMSNorm(input + skip + bias) * gamma over the hidden axis (no centering, no beta)."""
    return _skip_kernel(ctx, simplified=True)


def _simplified_rule(ctx: InferContext) -> list[Type | None]:
    x = ctx.shape(0)
    axis = int(ctx.attr("axis", -1))
    stat = None
    if x is not None:
        if not -len(x) <= axis < len(x):
            raise ctx.error(f"axis {axis} is out of range for X {shape_str(x)}")
        a = axis % len(x)
        stat = tuple(x[:a]) + (1,) * (len(x) - a)
    return [tensor(ctx.elem(1) if ctx.elem(1) is not None else ctx.elem(0), x), tensor(dtypes.FLOAT, stat)]


@op("SimplifiedLayerNormalization", since=1, infer=_simplified_rule)
def simplified_layer_normalization(ctx: OpContext) -> Kernel:
    """onnxruntime's RMSNorm in the ai.onnx domain: X / sqrt(mean(X^2) + eps) * scale over axes
    [axis, rank); the optional output is the inverse root mean square."""
    axis = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))

    def run(x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not -x.ndim <= axis < x.ndim:
            raise ctx.error(f"axis {axis} is out of range for X {list(x.shape)}")
        a = axis % x.ndim
        rows = _fresh32(x).reshape(math.prod(x.shape[:a]), -1)
        try:
            flat_scale = np.broadcast_to(scale, x.shape[a:]).reshape(-1)
        except ValueError:
            raise ctx.error(f"scale {list(scale.shape)} does not broadcast to {list(x.shape[a:])}") from None
        y, _, inv = _normalize(rows, flat_scale, None, eps, center=False)
        stat = x.shape[:a] + (1,) * (x.ndim - a)
        return y.reshape(x.shape).astype(scale.dtype, copy=False), inv.reshape(stat).astype(np.float32)

    return run


def _embed_rule(ctx: InferContext) -> list[Type | None]:
    ids, word = ctx.shape(0), ctx.shape(2)
    for i, name in ((0, "input_ids"), (1, "segment_ids"), (7, "mask"), (8, "position_ids")):
        if ctx.has(i) and ctx.elem(i) not in (None, dtypes.INT32):
            raise ctx.error(f"{name} must be int32, got {dtypes.type_name(ctx.elem(i))}")
    if ids is not None and len(ids) != 2:
        raise ctx.error(f"input_ids must be 2-D (batch, sequence), got {shape_str(ids)}")
    if ctx.has(1) != ctx.has(4):
        raise ctx.error("segment_ids and segment_embedding come together or not at all")
    hidden = word[1] if word is not None and len(word) == 2 else None
    for i, name in ((3, "position_embedding"), (4, "segment_embedding")):
        s = ctx.shape(i) if ctx.has(i) else None
        if s is not None and (len(s) != 2 or not dims_compatible(s[1], hidden)):
            raise ctx.error(f"{name} {shape_str(s)} must be 2-D with hidden size {hidden}")
    _check_hidden(ctx, None if hidden is None else (hidden,), {"gamma": ctx.shape(5), "beta": ctx.shape(6)})
    out = None if ids is None else (ids[0], ids[1], hidden)
    batch = None if ids is None else (ids[0],)
    return [tensor(ctx.elem(2), out), tensor(dtypes.INT32, batch), tensor(ctx.elem(2), out)]


def _lookup(ctx: OpContext, table: np.ndarray, ids: np.ndarray, name: str) -> np.ndarray:
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ctx.error(f"{name} range [{ids.min()}, {ids.max()}] is outside its table of {table.shape[0]} rows")
    return table[ids]


@op("EmbedLayerNormalization", since=1, domain=MS, infer=_embed_rule)
def embed_layer_normalization(ctx: OpContext) -> Kernel:
    """LayerNorm(word[input_ids] + position[position_ids or 0..S-1] + segment[segment_ids]);
    mask_index is the number of ones of each mask row (0 without a mask), as onnxruntime's CPU kernel."""
    eps = float(ctx.attr("epsilon", _LN_EPS))

    def run(ids: np.ndarray, seg_ids: np.ndarray | None, word: np.ndarray, pos: np.ndarray,
            seg: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray, mask: np.ndarray | None = None,
            pos_ids: np.ndarray | None = None) -> tuple[np.ndarray | None, ...]:
        if ids.ndim != 2:
            raise ctx.error(f"input_ids must be 2-D (batch, sequence), got {list(ids.shape)}")
        b, s = ids.shape
        e = _f32(_lookup(ctx, word, ids, "input_ids"))
        if pos_ids is None:
            if s > pos.shape[0]:
                raise ctx.error(f"sequence length {s} exceeds the {pos.shape[0]} position embeddings")
            e = e + _f32(pos[:s])
        else:
            if pos_ids.shape not in ((b, s), (1, s)):
                raise ctx.error(f"position_ids {list(pos_ids.shape)} must be [{b}, {s}] or [1, {s}]")
            e = e + _f32(_lookup(ctx, pos, pos_ids, "position_ids"))
        if seg_ids is not None and seg is not None:
            if seg_ids.shape != ids.shape:
                raise ctx.error(f"segment_ids {list(seg_ids.shape)} must match input_ids {list(ids.shape)}")
            e += _f32(_lookup(ctx, seg, seg_ids, "segment_ids"))
        total = e.astype(word.dtype) if len(ctx.node.outputs) > 2 and ctx.node.outputs[2] else None
        y, _, _ = _normalize(np.ascontiguousarray(e), gamma, beta, eps, center=True)
        if mask is not None and mask.shape != ids.shape:
            raise ctx.error(f"mask {list(mask.shape)} must match input_ids {list(ids.shape)}")
        index = np.zeros(b, np.int32) if mask is None else (mask == 1).sum(axis=1, dtype=np.int32)
        return y.astype(word.dtype, copy=False), index, total

    return run


def _qembed_rule(ctx: InferContext) -> list[Type | None]:
    ids, word = ctx.shape(0), ctx.shape(2)
    hidden = word[1] if word is not None and len(word) == 2 else None
    out = None if ids is None or len(ids) != 2 else (ids[0], ids[1], hidden)
    return [tensor(ctx.elem(8), out), tensor(dtypes.INT32, None if out is None else (ids[0],))]  # type: ignore[index]


@op("QEmbedLayerNormalization", since=1, domain=MS, infer=_qembed_rule)
def qembed_layer_normalization(ctx: OpContext) -> Kernel:
    """EmbedLayerNormalization over 8-bit tables (what quantize_dynamic makes of it): each table,
    gamma and beta dequantized as (q - zero_point) * scale (once, when constant), then the float op."""
    embed = embed_layer_normalization(ctx)
    kept: dict[int, np.ndarray] = {}

    def table(i: int, q: np.ndarray | None, scale: np.ndarray | None, zp: np.ndarray | None) -> np.ndarray | None:
        if q is None:
            return None
        if i in kept:
            return kept[i]
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            raise ctx.error(f"input {i} needs a scalar scale and zero point (per-tensor quantization)")
        t = (q.astype(np.float32) - np.float32(zp.reshape(-1)[0])) * scale.reshape(-1)[0]
        if ctx.const(i) is not None:
            kept[i] = t
        return t

    def run(ids: np.ndarray, seg_ids: np.ndarray | None, word: np.ndarray, pos: np.ndarray,
            seg: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray, mask: np.ndarray | None,
            *params: np.ndarray | None) -> tuple[np.ndarray, ...]:
        scales, zps = (list(params[:5]) + [None] * 5)[:5], (list(params[5:10]) + [None] * 5)[:5]
        tables = [table(i, q, sc, z) for i, q, sc, z in zip((2, 3, 4, 5, 6), (word, pos, seg, gamma, beta), scales, zps)]
        y, index, _ = embed(ids, seg_ids, tables[0], tables[1], tables[2], tables[3], tables[4], mask)
        return y, index

    return run


# ------------------------------------------------------------ attention

def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, S, H*D) -> (B, H, S, D), a view."""
    b, s, hidden = x.shape
    return x.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


def _merge(y: np.ndarray) -> np.ndarray:
    """(B, H, S, D) -> (B, S, H*D)."""
    b, h, s, d = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b, s, h * d)


def _key_mask_bias(ctx: OpContext, mask: np.ndarray | None, b: int, sq: int, total: int, past: int,
                   causal: bool, fill: float) -> np.ndarray | None:
    """onnxruntime's attention masks as an additive (B, 1, Sq, T) float32 bias: `fill` where the
    mask hides a key, float32's lowest value where causality does (as its PrepareMask), so a
    row whose visible keys are all padding averages them, as there.

    mask: (B) key lengths (right padding), (2B) ends then starts (left padding), (B, T) or
    (B, Sq, T) of 1 (attend) / 0 (masked)."""
    allowed = None
    if mask is not None:
        cols = np.arange(total)
        if mask.shape == (b,):
            allowed = (cols[None, :] < mask[:, None])[:, None, None, :]
        elif mask.shape == (2 * b,):
            allowed = ((cols[None, :] < mask[:b, None]) & (cols[None, :] >= mask[b:, None]))[:, None, None, :]
        elif mask.shape == (b, total):
            allowed = (mask != 0)[:, None, None, :]
        elif mask.shape == (b, sq, total):
            allowed = (mask != 0)[:, None]
        else:
            raise ctx.error(f"mask {list(mask.shape)} fits none of onnxruntime's formats for batch {b}, "
                            f"sequence {sq} and total length {total}: (B), (2B), (B, T), (B, S, T)",
                            UnsupportedOpError)
    bias = None if allowed is None else np.where(allowed, np.float32(0), np.float32(fill))
    if causal:
        hidden = np.where(_causal_allowed(sq, total, past), np.float32(0), np.finfo(np.float32).min)[None, None]
        bias = hidden if bias is None else np.minimum(bias, hidden)
    return bias


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None,
            extra: np.ndarray | None, scale: float | None) -> np.ndarray:
    """softmax(q k^T scale + bias + extra) v on (B, H, S, D) arrays (K/V may have fewer heads)."""
    if extra is not None:
        extra = _f32(extra)
        bias = extra if bias is None else bias + extra
    return scaled_dot_product_attention(q, k, v, bias, scale)


def _attention_rule(ctx: InferContext) -> list[Type | None]:
    x, w = ctx.shape(0), ctx.shape(1)
    heads = int(ctx.attr("num_heads"))
    sizes = ctx.attr("qkv_hidden_sizes", [])
    if heads < 1:
        raise ctx.error(f"num_heads must be positive, got {heads}")
    if x is not None and len(x) != 3:
        raise ctx.error(f"input must be 3-D (batch, sequence, hidden), got {shape_str(x)}")
    if w is not None and len(w) != 2:
        raise ctx.error(f"weights must be 2-D, got {shape_str(w)}")
    if x is not None and w is not None and not dims_compatible(x[2], w[0]):
        raise ctx.error(f"weights {shape_str(w)} do not fit input {shape_str(x)}: first dimension must be {x[2]}")
    if sizes and (len(sizes) != 3 or any(s % heads or s <= 0 for s in sizes)):
        raise ctx.error(f"qkv_hidden_sizes {list(sizes)} must be 3 positive multiples of num_heads {heads}")
    vh: Dim = sizes[2] if sizes else (dim_div(w[1], 3) if w is not None else None)
    out = None if x is None else (x[0], x[1], vh)
    return [tensor(ctx.elem(0), out), tensor(ctx.elem(0))]


class _SelfAttention:
    """Attention's and QAttention's work after the input projection: split QKV (B, S, q+k+v) by
    qkv_hidden_sizes (else in three), prepend `past`, mask, attend; returns (output, present)."""

    def __init__(self, ctx: OpContext):
        self.ctx = ctx
        self.heads = int(ctx.attr("num_heads"))
        self.sizes = [int(v) for v in ctx.attr("qkv_hidden_sizes", [])]
        self.causal = bool(ctx.attr("unidirectional", 0))
        self.scale = ctx.attr("scale", None)
        self.fill = float(ctx.attr("mask_filter_value", -10000.0))
        self.want_present = len(ctx.node.outputs) > 1 and bool(ctx.node.outputs[1])
        for name in ("do_rotary", "past_present_share_buffer"):
            if int(ctx.attr(name, 0)):
                raise ctx.error(f"{name}=1 is not supported", UnsupportedOpError)

    def split(self, width: int) -> tuple[int, int, int]:
        heads = self.heads
        qh, kh, vh = self.sizes or [width // 3] * 3
        if qh + kh + vh != width or qh % heads or vh % heads:
            raise self.ctx.error(f"weights of width {width} do not split into Q/K/V of {[qh, kh, vh]} "
                                 f"for {heads} heads")
        return qh, kh, vh

    def __call__(self, qkv: np.ndarray, dtype: np.dtype, mask: np.ndarray | None, past: np.ndarray | None,
                 attention_bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        b, s, width = qkv.shape
        qh, kh, vh = self.split(width)
        q, k, v = (_heads(qkv[..., lo:hi], self.heads) for lo, hi in ((0, qh), (qh, qh + kh), (qh + kh, width)))
        p = 0
        if past is not None:
            if past.ndim != 5 or past.shape[:3] != (2, b, self.heads):
                raise self.ctx.error(f"past {list(past.shape)} must be (2, {b}, {self.heads}, past_length, head_size)")
            p = past.shape[3]
            k = np.concatenate([_f32(past[0]), k], axis=2)
            v = np.concatenate([_f32(past[1]), v], axis=2)
        bias4 = _key_mask_bias(self.ctx, mask, b, s, p + s, p, self.causal, self.fill)
        y = _attend(q, k, v, bias4, attention_bias, self.scale)
        present = np.stack([k, v]).astype(dtype) if self.want_present else None
        return _merge(y).astype(dtype, copy=False), present


def _check_projection(ctx: OpContext, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> None:
    if x.ndim != 3 or w.ndim != 2 or w.shape[0] != x.shape[2]:
        raise ctx.error(f"input {list(x.shape)} and weights {list(w.shape)} do not fit: "
                        "input (B, S, D), weights (D, hidden_q + hidden_k + hidden_v)")
    if bias is not None and bias.shape != (w.shape[1],):
        raise ctx.error(f"bias {list(bias.shape)} must be [{w.shape[1]}]")


@op("Attention", since=1, domain=MS, infer=_attention_rule)
def ms_attention(ctx: OpContext) -> Kernel:
    """BERT/GPT-2 self-attention with its input projection: QKV = input @ weights + bias, split
    by qkv_hidden_sizes (else in three), softmax(Q K^T scale + mask + attention_bias) V per head;
    `past` (2, B, H, P, D) is prepended to K/V and `present` returned."""
    attend = _SelfAttention(ctx)

    def run(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, mask: np.ndarray | None = None,
            past: np.ndarray | None = None, attention_bias: np.ndarray | None = None,
            past_len: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        _check_projection(ctx, x, w, bias)
        b, s, _ = x.shape
        qkv = gemm.matmul(_f32(x).reshape(b * s, -1), _f32(w))
        if bias is not None:
            qkv += bias
        return attend(qkv.reshape(b, s, -1), x.dtype, mask, past, attention_bias)

    return run


def _qattention_rule(ctx: InferContext) -> list[Type | None]:
    for i, name in ((0, "input"), (1, "weight")):
        if ctx.elem(i) not in (None, dtypes.UINT8, dtypes.INT8):
            raise ctx.error(f"{name} must be uint8 or int8, got {dtypes.type_name(ctx.elem(i))}")
    x, w = ctx.shape(0), ctx.shape(1)
    if x is not None and len(x) != 3:
        raise ctx.error(f"input must be 3-D (batch, sequence, hidden), got {shape_str(x)}")
    out = None if x is None or w is None or len(w) != 2 else (x[0], x[1], dim_div(w[1], 3))
    return [tensor(ctx.elem(2), out), tensor(ctx.elem(2))]


@op("QAttention", since=1, domain=MS, infer=_qattention_rule)
def qattention(ctx: OpContext) -> Kernel:
    """Attention over a quantized input and weight (what quantize_dynamic makes of a fused
    Attention): QKV = (input - input_zp)(weight - weight_zp) input_scale weight_scale + bias,
    the integer product exact (quant.py's `exact_matmul`), weight scale and zero point per
    tensor or per column; then Attention's core."""
    attend = _SelfAttention(ctx)
    spans = [INT_RANGES.get(ctx.in_elem(i) or dtypes.UINT8, (0, 255)) for i in (0, 1)]
    bound = (spans[0][1] - spans[0][0]) * (spans[1][1] - spans[1][0])
    #: weight - weight_zp as floats, made once when both are constants
    kept: list[np.ndarray] = []
    const_w = ctx.const(1) is not None and (len(ctx.node.inputs) < 8 or not ctx.node.inputs[7]
                                            or ctx.const(7) is not None)

    def column(p: np.ndarray, n: int, name: str) -> np.ndarray:
        if p.size not in (1, n):
            raise ctx.error(f"{name} {list(p.shape)} must be a scalar or hold {n} values (one per column)")
        return p.reshape(-1).astype(np.float32) if p.size > 1 else p.reshape(()).astype(np.float32)

    def run(x: np.ndarray, w: np.ndarray, bias: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray,
            mask: np.ndarray | None = None, xzp: np.ndarray | None = None, wzp: np.ndarray | None = None,
            past: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        _check_projection(ctx, x, w, bias)
        b, s, _ = x.shape
        n = w.shape[1]
        if kept:
            wd = kept[0]
        else:
            wd = w.astype(np.float32) - (column(wzp, n, "weight_zero_point") if wzp is not None else np.float32(0))
            if const_w:
                kept.append(wd)
        if x_scale.size != 1 or (xzp is not None and xzp.size != 1):
            raise ctx.error("input_scale and input_zero_point must be scalars (per-tensor quantization)")
        xd = x.reshape(b * s, -1).astype(np.float32)
        if xzp is not None:
            xd -= np.float32(xzp.reshape(-1)[0])
        acc = exact_matmul(xd, wd, bound).astype(np.float32)
        qkv = acc * (np.float32(x_scale.reshape(-1)[0]) * column(w_scale, n, "weight_scale"))
        qkv += bias
        return attend(qkv.reshape(b, s, -1), bias.dtype, mask, past, None)

    return run


def _mha_rule(ctx: InferContext) -> list[Type | None]:
    q = ctx.shape(0)
    heads = int(ctx.attr("num_heads"))
    if heads < 1:
        raise ctx.error(f"num_heads must be positive, got {heads}")
    if q is not None and len(q) not in (3, 5):
        raise ctx.error(f"query must be 3-D (batch, sequence, hidden) or packed 5-D, got {shape_str(q)}")
    v = ctx.shape(2) if ctx.has(2) else None
    if q is None:
        return [tensor(ctx.elem(0)), tensor(ctx.elem(0)), tensor(ctx.elem(0))]
    if len(q) == 5:
        out: tuple[Dim, ...] | None = (q[0], q[1], dim_mul(q[2], q[4]))
    elif v is not None and len(v) == 3:
        out = (q[0], q[1], v[2])
    elif v is not None and len(v) == 4:
        out = (q[0], q[1], dim_mul(v[1], v[3]))
    else:
        out = (q[0], q[1], q[2])
    return [tensor(ctx.elem(0), out), tensor(ctx.elem(0)), tensor(ctx.elem(0))]


@op("MultiHeadAttention", since=1, domain=MS, infer=_mha_rule)
def ms_multi_head_attention(ctx: OpContext) -> Kernel:
    """Self/cross attention after the projections: query (B, S, D) or packed QKV (B, S, H, 3, d);
    key/value (B, L, D), packed KV (B, L, H, 2, d) or already split in heads (B, H, L, d); bias
    (D + D + Dv) added to the 3-D projections; key_padding_mask (B) or (B, L); past_key/value
    prepended, present_key/value returned."""
    heads = int(ctx.attr("num_heads"))
    causal = bool(ctx.attr("unidirectional", 0))
    scale = ctx.attr("scale", None)
    fill = float(ctx.attr("mask_filter_value", -10000.0))

    def run(query: np.ndarray, key: np.ndarray | None = None, value: np.ndarray | None = None,
            bias: np.ndarray | None = None, key_mask: np.ndarray | None = None,
            attention_bias: np.ndarray | None = None, past_key: np.ndarray | None = None,
            past_value: np.ndarray | None = None, *unused: Any) -> tuple[np.ndarray, ...]:
        if any(u is not None for u in unused):
            raise ctx.error("past_sequence_length and cache_indirection (shared KV buffers, beam search) "
                            "are not supported", UnsupportedOpError)
        qf = _f32(query)
        if query.ndim == 5:  # packed QKV
            if key is not None or value is not None or query.shape[3] != 3 or query.shape[2] != heads:
                raise ctx.error(f"packed QKV query {list(query.shape)} must be (B, S, {heads}, 3, d) "
                                "with no key/value")
            q, k, v = (qf[:, :, :, i].transpose(0, 2, 1, 3) for i in range(3))
        else:
            if query.ndim != 3 or key is None:
                raise ctx.error(f"query {list(query.shape)} must be (B, S, D) with a key")
            b, s, d = query.shape
            if key.ndim == 5:
                if value is not None or key.shape[3] != 2 or key.shape[2] != heads:
                    raise ctx.error(f"packed KV key {list(key.shape)} must be (B, L, {heads}, 2, d) with no value")
                kf = _f32(key)
                k, v = kf[:, :, :, 0].transpose(0, 2, 1, 3), kf[:, :, :, 1].transpose(0, 2, 1, 3)
            elif value is None:
                raise ctx.error("value is required with a 3-D or 4-D key")
            else:
                k, v = _f32(key), _f32(value)
            if bias is not None:
                if key.ndim != 3:
                    raise ctx.error("bias with packed or per-head (4-D) key/value is not supported",
                                    UnsupportedOpError)
                if bias.shape != (2 * d + v.shape[-1],):
                    raise ctx.error(f"bias {list(bias.shape)} must be [{2 * d + v.shape[-1]}] (query, key, value)")
                qf = qf + bias[:d]
                k, v = k + bias[d:2 * d], v + bias[2 * d:]
            q = _heads(qf, heads)
            if key.ndim == 3:
                if d % heads or v.shape[-1] % heads:
                    raise ctx.error(f"hidden sizes {d} and {v.shape[-1]} must be multiples of num_heads {heads}")
                k, v = _heads(k, heads), _heads(v, heads)
        b, _, s, _ = q.shape
        p = 0
        if past_key is not None and past_value is not None:
            p = past_key.shape[2]
            k = np.concatenate([_f32(past_key), k], axis=2)
            v = np.concatenate([_f32(past_value), v], axis=2)
        bias4 = _key_mask_bias(ctx, key_mask, b, s, k.shape[2], p, causal, fill)
        y = _attend(q, k, v, bias4, attention_bias, scale)
        return _merge(y).astype(query.dtype, copy=False), k.astype(query.dtype), v.astype(query.dtype)

    return run


def _rotary_positions(ctx: OpContext, position_ids: np.ndarray, b: int, s: int) -> np.ndarray:
    """onnxruntime's position_ids: (1) an offset for every sequence, or (B, S)."""
    if position_ids.size == 1 and position_ids.ndim <= 1:
        return np.broadcast_to(int(position_ids.reshape(-1)[0]) + np.arange(s, dtype=np.int64), (b, s))
    if position_ids.shape != (b, s):
        raise ctx.error(f"position_ids {list(position_ids.shape)} must be (1) or ({b}, {s})")
    return position_ids.astype(np.int64, copy=False)


def _ms_rotary_rule(ctx: InferContext) -> list[Type | None]:
    x = ctx.shape(0)
    if x is not None and len(x) not in (3, 4):
        raise ctx.error(f"input must be 3-D (B, S, H*d) or 4-D (B, H, S, d), got {shape_str(x)}")
    if int(ctx.attr("is_packed_batching", 0)):
        raise ctx.error("is_packed_batching=1 is not supported", UnsupportedOpError)
    return [ctx.type(0)]


@op("RotaryEmbedding", since=1, domain=MS, infer=_ms_rotary_rule)
def ms_rotary_embedding(ctx: OpContext) -> Kernel:
    """RoPE as onnxruntime's: inputs (input, position_ids, cos_cache, sin_cache); a 3-D input is
    split in heads of 2 * cos_cache's width unless num_heads says otherwise; the rotation itself
    is attention.py's ai.onnx RotaryEmbedding kernel."""
    heads_attr = int(ctx.attr("num_heads", 0))
    rd_attr = int(ctx.attr("rotary_embedding_dim", 0))
    if float(ctx.attr("scale", 1.0)) != 1.0:
        raise ctx.error("a scale other than 1.0 is not supported", UnsupportedOpError)
    rotate = rotary_embedding(ctx)

    def run(x: np.ndarray, position_ids: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim not in (3, 4):
            raise ctx.error(f"input must be 3-D or 4-D, got {list(x.shape)}")
        if x.ndim == 3:
            b, s, hidden = x.shape
            head = hidden // heads_attr if heads_attr else (2 * cos.shape[-1] if not rd_attr else 0)
            if not head or hidden % head:
                raise ctx.error(f"cannot split hidden size {hidden} in heads: set num_heads")
            x4 = x.reshape(b, s, hidden // head, head).transpose(0, 2, 1, 3)
        else:
            x4 = x
            b, s = x.shape[0], x.shape[2]
        y = rotate(x4, cos, sin, _rotary_positions(ctx, position_ids, b, s))[0]
        if x.ndim == 3:
            y = y.transpose(0, 2, 1, 3).reshape(x.shape)
        return (y,)

    return run


def _gqa_rule(ctx: InferContext) -> list[Type | None]:
    q = ctx.shape(0)
    heads, kv_heads = int(ctx.attr("num_heads")), int(ctx.attr("kv_num_heads"))
    if heads < 1 or kv_heads < 1 or heads % kv_heads:
        raise ctx.error(f"num_heads {heads} must be a positive multiple of kv_num_heads {kv_heads}")
    if q is not None and len(q) != 3:
        raise ctx.error(f"query must be 3-D (batch, sequence, hidden), got {shape_str(q)}")
    out = None
    if q is not None:
        hidden = q[2]
        if not ctx.has(1) and isinstance(hidden, int):
            hidden = hidden // (heads + 2 * kv_heads) * heads  # packed QKV
        out = (q[0], q[1], hidden)
    return [tensor(ctx.elem(0), out), tensor(ctx.elem(0)), tensor(ctx.elem(0))]


@op("GroupQueryAttention", since=1, domain=MS, infer=_gqa_rule)
def group_query_attention(ctx: OpContext) -> Kernel:
    """Decoder attention with a KV cache and grouped KV heads, as onnxruntime's CPU kernel for
    batches whose sequences end together: query/key/value (B, S, H*d) (or packed QKV), past
    caches (B, Hkv, P, d), seqlens_k = total length - 1 per sequence; sequence b's new tokens sit
    at positions seqlens_k[b] + 1 - S .., are rotated there (do_rotary) and appended to its cache;
    causal, with an optional local window and softcap.  The present caches are
    max(P, total_sequence_length) long."""
    heads, kv_heads = int(ctx.attr("num_heads")), int(ctx.attr("kv_num_heads"))
    scale = ctx.attr("scale", None)
    softcap = float(ctx.attr("softcap", 0.0))
    window = int(ctx.attr("local_window_size", -1))
    rotary = bool(ctx.attr("do_rotary", 0))
    interleaved = bool(ctx.attr("rotary_interleaved", 0))
    if not int(ctx.attr("causal", 1)) or int(ctx.attr("smooth_softmax", 0)) or int(ctx.attr("qk_output", 0)) \
            or int(ctx.attr("kv_cache_bit_width", 0)) or int(ctx.attr("sliding_window_cache", 0)):
        raise ctx.error("only causal attention with a float KV cache is supported (causal=1, no smooth_softmax, "
                        "qk_output, quantized or sliding-window cache)", UnsupportedOpError)

    def rotate(x: np.ndarray, pos: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """RoPE of (B, H, S, d) at positions (B, S) over the first 2 * cos.shape[1] channels."""
        half = cos.shape[1]
        c, s_ = cos[pos][:, None], sin[pos][:, None]
        out = x.copy()
        i1, i2 = (slice(0, 2 * half, 2), slice(1, 2 * half, 2)) if interleaved else \
            (slice(0, half), slice(half, 2 * half))
        x1, x2 = x[..., i1], x[..., i2]
        out[..., i1] = c * x1 - s_ * x2
        out[..., i2] = s_ * x1 + c * x2
        return out

    def run(query: np.ndarray, key: np.ndarray | None, value: np.ndarray | None, past_key: np.ndarray | None,
            past_value: np.ndarray | None, seqlens_k: np.ndarray, total_len: np.ndarray,
            cos: np.ndarray | None = None, sin: np.ndarray | None = None, position_ids: np.ndarray | None = None,
            attention_bias: np.ndarray | None = None, *unused: Any) -> tuple[np.ndarray, ...]:
        if any(u is not None for u in unused):
            raise ctx.error("head_sink, KV-cache scales, Q/K norms and query_seqlens are not supported",
                            UnsupportedOpError)
        b, s, _ = query.shape
        qf = _f32(query)
        if key is None:
            d = query.shape[2] // (heads + 2 * kv_heads)
            q, k, v = np.split(qf, [heads * d, (heads + kv_heads) * d], axis=2)
        else:
            if value is None:
                raise ctx.error("key and value come together")
            q, k, v = qf, _f32(key), _f32(value)
            d = query.shape[2] // heads
        q, k, v = q.reshape(b, s, heads, d).transpose(0, 2, 1, 3), \
            k.reshape(b, s, kv_heads, d).transpose(0, 2, 1, 3), v.reshape(b, s, kv_heads, d).transpose(0, 2, 1, 3)
        if seqlens_k.shape != (b,):
            raise ctx.error(f"seqlens_k {list(seqlens_k.shape)} must be [{b}]")
        totals = seqlens_k.astype(np.int64) + 1
        starts = np.maximum(totals - s, 0)
        cap = past_key.shape[2] if past_key is not None else 0
        present_len = max(cap, int(np.asarray(total_len).reshape(-1)[0]))
        if totals.max(initial=0) > present_len:
            raise ctx.error(f"seqlens_k {seqlens_k.tolist()} reach past total_sequence_length {present_len}")
        if rotary:
            if cos is None or sin is None:
                raise ctx.error("do_rotary=1 needs cos_cache and sin_cache")
            pos = starts[:, None] + np.arange(s) if position_ids is None else position_ids.astype(np.int64)
            if pos.max(initial=0) >= cos.shape[0]:
                raise ctx.error(f"position {pos.max()} is outside the cos/sin caches of {cos.shape[0]} rows")
            q, k = rotate(q, pos, _f32(cos), _f32(sin)), rotate(k, pos, _f32(cos), _f32(sin))
        pk = np.zeros((b, kv_heads, present_len, d), np.float32)
        pv = np.zeros((b, kv_heads, present_len, d), np.float32)
        if past_key is not None and past_value is not None:
            pk[:, :, :cap], pv[:, :, :cap] = past_key, past_value
        for i in range(b):
            pk[i, :, starts[i]:starts[i] + s], pv[i, :, starts[i]:starts[i] + s] = k[i], v[i]
        cols = np.arange(present_len)
        rows = starts[:, None] + np.arange(s)  # (B, S) absolute positions
        allowed = (cols[None, None, :] <= rows[:, :, None]) & (cols[None, None, :] < totals[:, None, None])
        if window > 0:
            allowed &= cols[None, None, :] > rows[:, :, None] - window
        bias = np.where(allowed, np.float32(0), np.float32(-np.inf))[:, None]
        if attention_bias is not None:
            bias = bias + _f32(attention_bias)[..., :present_len]
        y, _ = attend_core(q, pk, pv, bias, scale if scale is not None else 1.0 / math.sqrt(d), softcap)
        dt = query.dtype
        return _merge(y).astype(dt, copy=False), pk.astype(dt, copy=False), pv.astype(dt, copy=False)

    return run
