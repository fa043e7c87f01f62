"""Attention and transformer blocks: Attention, RotaryEmbedding, SwiGLU,
CausalConvWithState, LinearAttention and FlexAttention (ai.onnx.preview).

Every attention variant funnels into one core (`_attend`): scale folded into
Q, one batched matmul for Q.K^T, an additive bias, a softmax computed in
place and one matmul with V.  Grouped-query attention never copies K or V
per query head: the query heads sharing a KV head are stacked along the row
axis, so each KV head is a single matmul operand.  float16 and bfloat16
compute in float32 (bfloat16 reaches the kernels already decoded to
float32), which is both faster in numpy and closer to the exact result.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeGuard

import numpy as np

from .. import dtypes, gemm, wasm_ops
from ..ir import Dim, TensorType, Type
from ..shapes import InferContext, dim_add, dim_div, dim_mul, dim_sub, shape_str, tensor
from ..special import sigmoid
from .registry import Kernel, OpContext, op

# ------------------------------------------------------------------ the core


def _compute_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 stays float64; every narrower float computes in float32."""
    return np.dtype(np.float64) if any(a is not None and a.dtype == np.float64 for a in arrays) \
        else np.dtype(np.float32)


def _causal_allowed(sq: int, skv: int, offset: int | np.ndarray, left: int = -1, right: int = -1,
                    causal: bool = True) -> np.ndarray:
    """Which keys each query may see: (sq, skv), or (batch, 1, sq, skv) for per-batch offsets.

    Query i sits at absolute position i + offset (bottom-right alignment); it
    sees key j iff j <= i + offset when causal, and within the left/right
    window sizes when those are >= 0.
    """
    rows = np.arange(sq).reshape(sq, 1)
    cols = np.arange(skv).reshape(1, skv)
    if np.ndim(offset):
        rows = rows + np.asarray(offset, dtype=np.int64).reshape(-1, 1, 1, 1)
    else:
        rows = rows + int(offset)
    dist = rows - cols
    allowed = dist >= 0 if causal else np.ones(dist.shape, dtype=bool)
    if left >= 0:
        allowed &= dist <= left
    if right >= 0:
        allowed &= -dist <= right
    return allowed


def _as_bias(allowed: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """0 where allowed, -inf elsewhere (a select, so no 0 * inf NaNs)."""
    return np.where(allowed, dtype.type(0), dtype.type(-np.inf))


def _mask_bias(mask: np.ndarray, skv: int, dtype: np.dtype) -> np.ndarray:
    """An attn_mask as an additive bias; a short last axis is padded as masked."""
    short = skv - mask.shape[-1]
    if mask.dtype == np.bool_:
        bias = _as_bias(mask, dtype)
    else:
        bias = mask.astype(dtype, copy=False)
    if short > 0:
        pad = np.full(bias.shape[:-1] + (short,), -np.inf, dtype=dtype)
        bias = np.concatenate([bias, pad], axis=-1)
    return bias


def _add_bias(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    return b if a is None else a + b


def _exp_rowwise(x: np.ndarray) -> np.ndarray:
    """exp(x - row max) in place over the last axis; returns the row sums (keepdims).

    An all -inf row becomes zeros with sum 1, so dividing by the sums never
    makes NaN.
    """
    m = x.max(axis=-1, keepdims=True)
    m[~np.isfinite(m)] = 0
    x -= m
    np.exp(x, out=x)
    sums = x.sum(axis=-1, keepdims=True)
    sums[sums == 0] = 1
    return sums


def _softmax_inplace(x: np.ndarray) -> None:
    """Stable softmax over the last axis, in place; an all -inf row becomes all 0 (not NaN)."""
    if x.size and wasm_ops.softmax(x, x, True) is None:
        x /= _exp_rowwise(x)


#: A row whose exp(x - global max) sums below this sits too far under the global
#: max for that shift to keep its small terms exact: it is redone with its own max.
#: Rows above it only lose terms (to float32 underflow) that weigh less than
#: exp(-57) * row length relative to their largest term.
_LOW_SUM = math.exp(-30.0)


def _softcap_inplace(x: np.ndarray, softcap: float) -> None:
    if softcap > 0:
        x /= x.dtype.type(softcap)
        np.tanh(x, out=x)
        x *= x.dtype.type(softcap)


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None, scale: float,
            softcap: float = 0.0, softmax_dtype: np.dtype | None = None,
            qk_mode: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """softmax(softcap(q.k^T * scale) + bias) @ v on [B, H, S, D] arrays of one float dtype.

    K/V may have fewer heads than Q (GQA/MQA: query head h reads KV head
    h // (Hq / Hkv)).  Rows whose bias is -inf everywhere output zeros.
    With `qk_mode` set, also returns the matching qk_matmul_output (0: raw
    scores, 1: after softcap, 2: after the bias, 3: the probabilities).

    Speed: the softmax is shifted by the maximum of the whole score tensor
    (one fast pass) instead of per-row maxima (a slow short-axis reduction
    in numpy); rows sitting far below it are recomputed exactly.  Row sums
    come from a matrix-vector product and the division is applied to the
    [S, Dv] output instead of the [S, S] probabilities.
    """
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group = hq // hkv
    cdt = q.dtype
    dv = v.shape[-1]
    if sq == 0 or skv == 0:
        empty = np.zeros((b, hq, sq, skv), dtype=cdt) if qk_mode is not None else None
        return np.zeros((b, hq, sq, dv), dtype=cdt), empty
    qs = np.multiply(q, cdt.type(scale), order="C")  # C order: the GQA reshape below stays a view
    scores = gemm.matmul(qs.reshape(b, hkv, group * sq, d), k.swapaxes(-1, -2)).reshape(b, hq, sq, skv)
    qk_out = scores.copy() if qk_mode == 0 else None
    sdt = softmax_dtype if softmax_dtype is not None else cdt
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        _softcap_inplace(scores, softcap)
        if qk_mode == 1:
            qk_out = scores.copy()
        if bias is not None:
            scores += bias
        if qk_mode == 2:
            qk_out = scores.copy()
        scores = scores.astype(sdt, copy=False)
        dead = None
        if bias is not None:
            dead = np.broadcast_to(np.isneginf(bias.max(axis=-1, keepdims=True)), (b, hq, sq, 1))
            if not dead.any():
                dead = None

        def exact_rows(bi: np.ndarray, hi: np.ndarray, ii: np.ndarray) -> np.ndarray:
            """The logits of rows (bi, hi, ii) recomputed from Q and K, one KV head at a time."""
            out = np.empty((len(bi), skv), dtype=sdt)
            qs4 = qs.reshape(b, hq, sq, d)
            full_bias = None if bias is None else np.broadcast_to(bias, (b, hq, sq, skv))
            block = bi * hkv + hi // group
            for blk in np.unique(block):
                sel = np.nonzero(block == blk)[0]
                rows = np.matmul(qs4[bi[sel], hi[sel], ii[sel]], k[blk // hkv, blk % hkv].T)
                _softcap_inplace(rows, softcap)
                if full_bias is not None:
                    rows += full_bias[bi[sel], hi[sel], ii[sel]]
                out[sel] = rows
            return out

        # Pyodide: the wasm kernel normalises each row exactly, in three passes over it (dead rows: 0).
        sums = _exp_shifted(scores, dead, exact_rows) if wasm_ops.softmax(scores, scores, True) is None else None
    if dead is not None:
        np.copyto(scores, 0, where=dead)
        if sums is not None:
            sums[dead] = 1
    if qk_mode == 3:
        if sums is not None:
            scores /= sums
        qk_out = probs = scores.astype(cdt, copy=False)
    else:
        probs = scores.astype(cdt, copy=False)
    y = gemm.matmul(probs.reshape(b, hkv, group * sq, skv), v.astype(cdt, copy=False)).reshape(b, hq, sq, dv)
    if qk_mode != 3 and sums is not None:
        y /= sums.astype(cdt, copy=False)
    return y, qk_out


def _exp_shifted(x: np.ndarray, dead: np.ndarray | None,
                 exact_rows: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Softmax numerators in place over the last axis of a 4D x; returns the row sums (keepdims).

    Shifts by the global maximum; rows whose sum underflows towards zero
    (far below that maximum, e.g. behind a large finite mask) are rebuilt
    from `exact_rows` with their own maximum.  Rows in `dead` (no key
    visible) are left to the caller.  Sums of rows that are all zero are 1.
    """
    m = x.max()
    if not np.isfinite(m):  # +inf or NaN logits, or nothing visible anywhere: per-row shifts
        return _exp_rowwise(x)
    x -= m
    np.exp(x, out=x)
    sums = np.matmul(x, np.ones((x.shape[-1], 1), dtype=x.dtype))
    low = sums < _LOW_SUM
    if dead is not None:
        low &= ~dead
    if low.any():
        idx = np.nonzero(low[..., 0])
        rows = exact_rows(*idx)
        sums[idx] = _exp_rowwise(rows)
        x[idx] = rows
    sums[sums == 0] = 1
    return sums


def scaled_dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
                                 scale: float | None = None, causal: bool = False) -> np.ndarray:
    """softmax(q.k^T * scale + mask) @ v on [B, H, S, D] arrays; the result has q's dtype.

    For fusion passes that turn exporters' MatMul/Div/Add/Softmax/MatMul
    chains into one kernel.  `mask` is boolean (True = attend) or additive,
    broadcastable to [B, H, Sq, Skv]; `causal` masks key j > query i
    (top-left aligned, as torch's is_causal); `scale` defaults to
    1/sqrt(D).  K/V may have fewer heads than Q (grouped-query attention).
    Rows with no visible key output zeros.
    """
    cdt = _compute_dtype(q)
    skv = k.shape[2]
    bias = None if mask is None else _mask_bias(np.asarray(mask), skv, cdt)
    if causal:
        bias = _add_bias(bias, _as_bias(_causal_allowed(q.shape[2], skv, 0), cdt))
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    y, _ = _attend(q.astype(cdt, copy=False), k.astype(cdt, copy=False), v, bias, scale)
    return y.astype(q.dtype, copy=False)


# ------------------------------------------------------------------ shape helpers


def _known(d: Dim) -> TypeGuard[int]:
    return isinstance(d, int)


def _same(a: Dim, b: Dim) -> bool:
    """False only when two dims are certainly different."""
    return not (_known(a) and _known(b) and a != b)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _check_divisible(ctx: InferContext | OpContext, what: str, total: Dim, parts: Dim, shape: Any) -> None:
    if _known(total) and _known(parts) and (parts <= 0 or total % parts):
        raise ctx.error(f"{what}: last dimension {total} of shape {shape_str(shape)} is not divisible "
                        f"by {parts} heads")


def _softmax_elem(ctx: InferContext | OpContext) -> int | None:
    sp = ctx.attr("softmax_precision", None)
    if sp is not None and sp not in (dtypes.FLOAT, dtypes.FLOAT16, dtypes.DOUBLE, dtypes.BFLOAT16):
        raise ctx.error(f"softmax_precision {sp} is not one of float (1), float16 (10), double (11), "
                        "bfloat16 (16)")
    return sp


# ------------------------------------------------------------------ Attention


def _heads_attrs(ctx: InferContext | OpContext, rank: int | None) -> tuple[int | None, int | None]:
    """q_num_heads/kv_num_heads, validated: required for 3D inputs, ignored (or, from opset 25,
    forbidden) for 4D ones."""
    qh, kvh = ctx.attr("q_num_heads", None), ctx.attr("kv_num_heads", None)
    if rank == 3:
        if qh is None or kvh is None:
            raise ctx.error("3D Q/K/V need both q_num_heads and kv_num_heads attributes")
        if qh <= 0 or kvh <= 0:
            raise ctx.error(f"q_num_heads {qh} and kv_num_heads {kvh} must be positive")
    elif rank == 4 and ctx.opset >= 25 and (qh is not None or kvh is not None):
        raise ctx.error("q_num_heads/kv_num_heads must not be given for 4D Q/K/V")
    return qh, kvh


def _attention_dims(ctx: InferContext) -> dict[str, Dim] | None:
    """batch, heads, lengths and head sizes of an Attention node from its input shapes."""
    qs, ks, vs = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    ranks = {len(s) for s in (qs, ks, vs) if s is not None}
    if ranks - {3, 4}:
        raise ctx.error(f"Q, K and V must be 3D or 4D, got {shape_str(qs)}, {shape_str(ks)}, {shape_str(vs)}")
    if len(ranks) > 1:
        raise ctx.error(f"Q, K and V must have the same rank, got {shape_str(qs)}, {shape_str(ks)}, "
                        f"{shape_str(vs)}")
    rank = ranks.pop() if ranks else None
    qh, kvh = _heads_attrs(ctx, rank)
    if qs is None or ks is None or vs is None:
        return None
    if rank == 3:
        for name, s, h in (("Q", qs, qh), ("K", ks, kvh), ("V", vs, kvh)):
            _check_divisible(ctx, name, s[2], h, s)
        dims = {"b": qs[0], "hq": qh, "sq": qs[1], "d": dim_div(qs[2], qh), "hkv": kvh, "skv": ks[1],
                "dk": dim_div(ks[2], kvh), "dv": dim_div(vs[2], kvh), "bk": ks[0], "bv": vs[0], "skv_v": vs[1]}
    else:
        dims = {"b": qs[0], "hq": qs[1], "sq": qs[2], "d": qs[3], "hkv": ks[1], "skv": ks[2], "dk": ks[3],
                "dv": vs[3], "bk": ks[0], "bv": vs[0], "skv_v": vs[2], "hv": vs[1]}
        if _known(dims["hv"]) and _known(dims["hkv"]) and dims["hv"] != dims["hkv"]:
            raise ctx.error(f"K {shape_str(ks)} and V {shape_str(vs)} have different head counts")
    dims["rank"] = rank
    for a, b, what in (("b", "bk", "batch"), ("b", "bv", "batch"), ("skv", "skv_v", "kv sequence length"),
                       ("d", "dk", "head size")):
        if _known(dims[a]) and _known(dims[b]) and dims[a] != dims[b]:
            raise ctx.error(f"Q {shape_str(qs)}, K {shape_str(ks)}, V {shape_str(vs)}: {what} differs "
                            f"({dims[a]} vs {dims[b]})")
    hq, hkv = dims["hq"], dims["hkv"]
    if _known(hq) and _known(hkv) and (hkv == 0 or hq % hkv):
        raise ctx.error(f"query heads ({hq}) must be a multiple of key/value heads ({hkv}) "
                        f"for Q {shape_str(qs)}, K {shape_str(ks)}")
    return dims


def _attention_rule(ctx: InferContext) -> list[Type | None]:
    mode = ctx.attr("qk_matmul_output_mode", 0)
    if mode not in (0, 1, 2, 3):
        raise ctx.error(f"qk_matmul_output_mode {mode} is not 0, 1, 2 or 3")
    _softmax_elem(ctx)
    if ctx.has(4) != ctx.has(5):
        raise ctx.error("past_key and past_value must be given together")
    if ctx.has(6) and ctx.has(4):
        raise ctx.error("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if ctx.has(6) and ctx.elem(6) not in (None, dtypes.INT64):
        raise ctx.error(f"nonpad_kv_seqlen must be int64, got {dtypes.type_name(ctx.elem(6))}")
    elems = [ctx.elem(0), ctx.elem(1), ctx.elem(2), ctx.elem(0)]
    dims = _attention_dims(ctx)
    if dims is None:
        return [tensor(e) for e in elems]
    past: Dim = 0
    if ctx.has(4):
        pk, pv = ctx.shape(4), ctx.shape(5)
        for name, s, dh in (("past_key", pk, dims["d"]), ("past_value", pv, dims["dv"])):
            if s is None:
                continue
            want = (dims["b"], dims["hkv"], None, dh)
            if len(s) != 4 or any(_known(a) and _known(w) and a != w for a, w in zip(s, want)):
                raise ctx.error(f"{name} has shape {shape_str(s)}, expected {shape_str(want)} "
                                "(batch, kv_num_heads, past_length, head_size)")
        past = pk[2] if pk is not None else None
        if pv is not None and _known(pv[2]) and _known(past) and pv[2] != past:
            raise ctx.error(f"past_key {shape_str(pk)} and past_value {shape_str(pv)} have different lengths")
    total = dim_add(past, dims["skv"])
    mask = ctx.shape(3) if ctx.has(3) else None
    if mask is not None:
        _check_mask(ctx, mask, (dims["b"], dims["hq"], dims["sq"], total))
    b, hq, sq, hkv = dims["b"], dims["hq"], dims["sq"], dims["hkv"]
    if dims["rank"] == 3:  # hidden = V's hidden * (q heads per kv head): stays `hv` when they match
        vs = ctx.shape(2)
        assert vs is not None  # dims exist only where Q, K and V have shapes
        hidden = dim_mul(vs[2], hq // hkv) if _known(hq) and _known(hkv) else dim_mul(hq, dims["dv"])
        y: tuple[Dim, ...] = (b, sq, hidden)
    else:
        y = (b, hq, sq, dims["dv"])
    return [tensor(elems[0], y), tensor(elems[1], (b, hkv, total, dims["d"])),
            tensor(elems[2], (b, hkv, total, dims["dv"])), tensor(elems[3], (b, hq, sq, total))]


def _check_mask(ctx: InferContext, mask: tuple[Dim, ...], target: tuple[Dim, ...]) -> None:
    """attn_mask must broadcast to (batch, q_heads, q_len, total_len); its last axis may be shorter."""
    bad = len(mask) == 0 or len(mask) > 4
    if not bad:
        last, tot = mask[-1], target[-1]
        bad = _known(last) and _known(tot) and last > tot
        for m, t in zip(mask[-2::-1], target[-2::-1]):
            bad |= _known(m) and m != 1 and _known(t) and m != t
    if bad:
        raise ctx.error(f"attn_mask of shape {shape_str(mask)} does not broadcast to {shape_str(target)} "
                        "(batch, q_num_heads, q_sequence_length, total_sequence_length)")


def _to_heads(x: np.ndarray, heads: int | None, ctx: OpContext, name: str) -> np.ndarray:
    """A 3D (B, S, H*D) input as a 4D (B, H, S, D) view; 4D inputs pass through."""
    if x.ndim == 4:
        return x
    if x.ndim != 3 or heads is None or x.shape[2] % heads:
        raise ctx.error(f"{name} of shape {list(x.shape)} cannot be split into {heads} heads")
    return x.reshape(x.shape[0], x.shape[1], heads, x.shape[2] // heads).transpose(0, 2, 1, 3)


@op("Attention", since=23, infer=_attention_rule)
def attention(ctx: OpContext) -> Kernel:
    """Scaled dot-product attention with KV cache, GQA, masks, softcap and sliding windows."""
    rank = next((t.rank for t in ctx.in_types[:3] if isinstance(t, TensorType) and t.rank is not None), None)
    qh, kvh = _heads_attrs(ctx, rank)
    is_causal = bool(ctx.attr("is_causal", 0))
    scale_attr = ctx.attr("scale", None)
    softcap = float(ctx.attr("softcap", 0.0))
    sp = _softmax_elem(ctx)
    left = ctx.attr("left_window_size", -1) if ctx.opset >= 25 else -1
    right = ctx.attr("right_window_size", -1) if ctx.opset >= 25 else -1
    if left < -1 or right < -1:
        raise ctx.error(f"left_window_size {left} / right_window_size {right} must be -1 or >= 0")
    outs = ctx.node.outputs
    qk_mode = ctx.attr("qk_matmul_output_mode", 0) if len(outs) > 3 and outs[3] else None

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
            past_key: np.ndarray | None = None, past_value: np.ndarray | None = None,
            nonpad: np.ndarray | None = None) -> tuple[Any, ...]:
        if mask is not None and mask.ndim == 0:
            raise ctx.error("attn_mask must have at least one dimension (it is a scalar)")
        if not q.ndim == k.ndim == v.ndim:
            raise ctx.error(f"Q {list(q.shape)}, K {list(k.shape)}, V {list(v.shape)} differ in rank")
        q4, k4, v4 = _to_heads(q, qh, ctx, "Q"), _to_heads(k, kvh, ctx, "K"), _to_heads(v, kvh, ctx, "V")
        if past_key is not None and past_value is not None:
            k4 = np.concatenate([past_key, k4], axis=2)
            v4 = np.concatenate([past_value, v4], axis=2)
        b, hq, sq, d = q4.shape
        hkv, skv = k4.shape[1], k4.shape[2]
        if k4.shape[0] != b or v4.shape[:3] != k4.shape[:3] or k4.shape[3] != d or hkv == 0 or hq % hkv:
            raise ctx.error(f"Q {list(q4.shape)}, K {list(k4.shape)}, V {list(v4.shape)} (as batch, heads, "
                            "length, head size) do not fit together")
        cdt = _compute_dtype(q4)
        bias = None if mask is None else _mask_bias(mask, skv, cdt)
        if nonpad is not None:
            if nonpad.shape != (b,):
                raise ctx.error(f"nonpad_kv_seqlen has shape {list(nonpad.shape)}, expected [{b}]")
            offset: int | np.ndarray = nonpad - sq
            pad = np.arange(skv) < nonpad.reshape(b, 1, 1, 1)
            bias = _add_bias(bias, _as_bias(pad, cdt))
        else:
            offset = skv - k.shape[-2] if past_key is not None else 0
        if is_causal or left >= 0 or right >= 0:
            bias = _add_bias(bias, _as_bias(_causal_allowed(sq, skv, offset, left, right, is_causal), cdt))
        if bias is not None and not _broadcasts_to(bias.shape, (b, hq, sq, skv)):
            raise ctx.error(f"attn_mask of shape {list(mask.shape) if mask is not None else '?'} does not "
                            f"broadcast to {[b, hq, sq, skv]} (batch, q_num_heads, q_sequence_length, "
                            "total_sequence_length)")
        scale = scale_attr if scale_attr is not None else 1.0 / math.sqrt(d)
        softmax_dtype = np.dtype(np.float64) if sp == dtypes.DOUBLE else None
        y, qk = _attend(q4.astype(cdt, copy=False), k4.astype(cdt, copy=False), v4, bias, scale, softcap,
                        softmax_dtype, qk_mode)
        if q.ndim == 3:
            y = y.transpose(0, 2, 1, 3).reshape(b, sq, hq * v4.shape[3])
        return (y.astype(q.dtype, copy=False), k4, v4, None if qk is None else qk.astype(q.dtype, copy=False))

    return run


# ------------------------------------------------------------------ RotaryEmbedding


def _rotary_rule(ctx: InferContext) -> list[Type | None]:
    xs = ctx.shape(0)
    if xs is not None and len(xs) not in (3, 4):
        raise ctx.error(f"input must be 3D or 4D, got {shape_str(xs)}")
    if ctx.has(3) and ctx.elem(3) not in (None, dtypes.INT64):
        raise ctx.error(f"position_ids must be int64, got {dtypes.type_name(ctx.elem(3))}")
    if xs is not None:
        head = _rotary_head_size(ctx, len(xs), xs[-1])
        rd = ctx.attr("rotary_embedding_dim", 0) or head
        if _known(rd) and (rd % 2 or (_known(head) and rd > head)):
            raise ctx.error(f"rotary_embedding_dim {rd} must be even and at most the head size {head} "
                            f"of input {shape_str(xs)}")
        want_rank = 2 if ctx.has(3) else 3
        for i, name in ((1, "cos_cache"), (2, "sin_cache")):
            s = ctx.shape(i)
            if s is None:
                continue
            half = dim_div(rd, 2)
            if len(s) != want_rank or (_known(s[-1]) and _known(half) and s[-1] != half):
                raise ctx.error(f"{name} has shape {shape_str(s)}, expected rank {want_rank} with last "
                                f"dimension rotary_embedding_dim/2 = {half} for input {shape_str(xs)}")
    return [ctx.type(0)]


def _rotary_head_size(ctx: InferContext | OpContext, rank: int, last: Dim) -> Dim:
    if rank == 4:
        return last
    heads = ctx.attr("num_heads", None)
    if not heads:
        raise ctx.error("a 3D input needs the num_heads attribute")
    if _known(last) and last % heads:
        raise ctx.error(f"hidden size {last} is not divisible by num_heads {heads}")
    return dim_div(last, heads)


@op("RotaryEmbedding", since=23, infer=_rotary_rule)
def rotary_embedding(ctx: OpContext) -> Kernel:
    """Rotate pairs of channels by position-dependent angles (RoPE), half-split or interleaved."""
    interleaved = bool(ctx.attr("interleaved", 0))
    rd_attr = ctx.attr("rotary_embedding_dim", 0)
    heads = ctx.attr("num_heads", None)

    def run(x: np.ndarray, cos: np.ndarray, sin: np.ndarray,
            position_ids: np.ndarray | None = None) -> tuple[np.ndarray]:
        if x.ndim not in (3, 4):
            raise ctx.error(f"input must be 3D or 4D, got shape {list(x.shape)}")
        head = _rotary_head_size(ctx, x.ndim, x.shape[-1])
        assert isinstance(head, int)  # from a concrete shape
        rd = rd_attr or head
        half = rd // 2
        if rd % 2 or rd > head:
            raise ctx.error(f"rotary_embedding_dim {rd} must be even and at most the head size {head} "
                            f"of input {list(x.shape)}")
        if position_ids is not None:
            if position_ids.size and (position_ids.min() < 0 or position_ids.max() >= cos.shape[0]):
                raise ctx.error(f"position_ids range [{position_ids.min()}, {position_ids.max()}] is outside "
                                f"the cos/sin caches of shape {list(cos.shape)}")
            cos, sin = cos[position_ids], sin[position_ids]
        b, s = (x.shape[0], x.shape[2]) if x.ndim == 4 else x.shape[:2]
        fits = all(c.ndim == 3 and _broadcasts_to(c.shape, (b, s, half)) for c in (cos, sin))
        if not fits:
            raise ctx.error(f"cos/sin of shapes {list(cos.shape)}/{list(sin.shape)} do not match "
                            f"[{b}, {s}, {half}] for input {list(x.shape)} and rotary_embedding_dim {rd}")
        cdt = _compute_dtype(x)
        if x.ndim == 4:  # (B, H, S, D): angles broadcast over heads
            xv = x
            cos, sin = cos[:, None], sin[:, None]
        else:  # (B, S, H*D) viewed as (B, S, H, D)
            xv = x.reshape(b, s, heads, head)
            cos, sin = cos[:, :, None], sin[:, :, None]
        cos, sin = cos.astype(cdt, copy=False), sin.astype(cdt, copy=False)
        out = xv.astype(cdt, copy=True)
        if interleaved:
            i1, i2 = slice(0, rd, 2), slice(1, rd, 2)
        else:
            i1, i2 = slice(0, half), slice(half, rd)
        x1, x2 = xv[..., i1].astype(cdt, copy=False), xv[..., i2].astype(cdt, copy=False)
        out[..., i1] = cos * x1 - sin * x2
        out[..., i2] = sin * x1 + cos * x2
        return (out.reshape(x.shape).astype(x.dtype, copy=False),)

    return run


# ------------------------------------------------------------------ SwiGLU


def _swiglu_rule(ctx: InferContext) -> list[Type | None]:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is not None and b is not None and (len(a) != len(b) or any(
            _known(x) and _known(y) and x != y for x, y in zip(a, b))):
        raise ctx.error(f"A {shape_str(a)} and B {shape_str(b)} must have the same shape (no broadcasting)")
    shape = a if a is not None else b
    if a is not None and b is not None:
        shape = tuple(x if _known(x) or not _known(y) else y for x, y in zip(a, b))
    return [tensor(ctx.elem(0), shape)]


@op("SwiGLU", since=28, infer=_swiglu_rule)
def swiglu(ctx: OpContext) -> Kernel:
    """Y = A * sigmoid(alpha * A) * B: the gated MLP activation of Llama-style blocks."""
    alpha = float(ctx.attr("alpha", 1.0))

    def run(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        if a.shape != b.shape:
            raise ctx.error(f"A {list(a.shape)} and B {list(b.shape)} must have the same shape")
        cdt = _compute_dtype(a)
        af = a.astype(cdt, copy=False)
        y = sigmoid(af * cdt.type(alpha))
        y *= af
        y *= b
        return (y.astype(a.dtype, copy=False),)

    return run


# ------------------------------------------------------------------ CausalConvWithState

_CONV_ACTIVATIONS = ("none", "silu", "swish")


def _causal_conv_rule(ctx: InferContext) -> list[Type | None]:
    act = ctx.attr("activation", "none")
    if act not in _CONV_ACTIVATIONS:
        raise ctx.error(f"activation '{act}' is not one of {', '.join(_CONV_ACTIVATIONS)}")
    xs, ws = ctx.shape(0), ctx.shape(1)
    if xs is not None and len(xs) != 3:
        raise ctx.error(f"input must be (batch, channels, length), got {shape_str(xs)}")
    if ws is not None and (len(ws) != 3 or (_known(ws[1]) and ws[1] != 1)):
        raise ctx.error(f"weight must be (channels, 1, k), got {shape_str(ws)}")
    if xs is None or ws is None:
        return [tensor(ctx.elem(0), xs), tensor(ctx.elem(0))]
    b, c = xs[0], xs[1]
    if _known(c) and _known(ws[0]) and c != ws[0]:
        raise ctx.error(f"input {shape_str(xs)} has {c} channels but weight {shape_str(ws)} has {ws[0]}")
    k1 = dim_sub(ws[2], 1)
    bs = ctx.shape(2) if ctx.has(2) else None
    if bs is not None and (len(bs) != 1 or not _same(bs[0], c)):
        raise ctx.error(f"bias {shape_str(bs)} must be ({c},)")
    ps = ctx.shape(3) if ctx.has(3) else None
    if ps is not None:
        if len(ps) != 3 or not all(_same(p, w) for p, w in zip(ps, (b, c, k1))):
            raise ctx.error(f"past_state {shape_str(ps)} must be {shape_str((b, c, k1))} (batch, channels, k-1)")
    return [tensor(ctx.elem(0), xs), tensor(ctx.elem(0), (b, c, k1))]


@op("CausalConvWithState", since=27, infer=_causal_conv_rule)
def causal_conv_with_state(ctx: OpContext) -> Kernel:
    """Depthwise causal 1D convolution carrying the last k-1 inputs between calls (Mamba, DeltaNet)."""
    act = ctx.attr("activation", "none")

    def run(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None,
            past: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if x.ndim != 3 or w.ndim != 3:
            raise ctx.error(f"input {list(x.shape)} and weight {list(w.shape)} must both be 3D")
        b, c, length = x.shape
        k = w.shape[2]
        if w.shape != (c, 1, k) or k < 1:
            raise ctx.error(f"weight {list(w.shape)} must be ({c}, 1, k) for input {list(x.shape)}")
        if past is None:
            past = np.zeros((b, c, k - 1), dtype=x.dtype)
        elif past.shape != (b, c, k - 1):
            raise ctx.error(f"past_state {list(past.shape)} must be {[b, c, k - 1]} for input {list(x.shape)} "
                            f"and kernel size {k}")
        if bias is not None and bias.shape != (c,):
            raise ctx.error(f"bias {list(bias.shape)} must be [{c}] for input {list(x.shape)}")
        padded = np.concatenate([past, x], axis=2)
        cdt = _compute_dtype(x)
        wf = w[:, 0, :].astype(cdt, copy=False)
        out = np.zeros((b, c, length), dtype=cdt)
        for tap in range(k):  # k is a handful of taps: each is one vectorised multiply-add
            out += wf[:, tap, None] * padded[:, :, tap:tap + length]
        if bias is not None:
            out += bias.astype(cdt, copy=False)[:, None]
        if act != "none":
            out *= sigmoid(out)
        return out.astype(x.dtype, copy=False), padded[:, :, length:].copy()

    return run


# ------------------------------------------------------------------ LinearAttention

_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _linear_attention_rule(ctx: InferContext) -> list[Type | None]:
    rule = ctx.attr("update_rule", "gated_delta")
    if rule not in _UPDATE_RULES:
        raise ctx.error(f"update_rule '{rule}' is not one of {', '.join(_UPDATE_RULES)}")
    qh, kvh = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    if qh <= 0 or kvh <= 0 or qh % kvh:
        raise ctx.error(f"q_num_heads ({qh}) must be a positive multiple of kv_num_heads ({kvh})")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != ctx.has(4):
        raise ctx.error(f"update_rule '{rule}' {'requires' if gated else 'forbids'} the decay input")
    if delta != ctx.has(5):
        raise ctx.error(f"update_rule '{rule}' {'requires' if delta else 'forbids'} the beta input")
    state_elem = ctx.elem(3) if ctx.has(3) else ctx.elem(0)
    qs, ks, vs = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    for name, s in (("query", qs), ("key", ks), ("value", vs)):
        if s is not None and len(s) != 3:
            raise ctx.error(f"{name} must be 3D (batch, length, heads*dim), got {shape_str(s)}")
    if qs is None or ks is None or vs is None:
        return [tensor(ctx.elem(0)), tensor(state_elem)]
    _check_divisible(ctx, "query", qs[2], qh, qs)
    _check_divisible(ctx, "value", vs[2], kvh, vs)
    b, t, dk, dv = qs[0], qs[1], dim_div(qs[2], qh), dim_div(vs[2], kvh)
    if not (_same(ks[2], dim_mul(kvh, dk)) and _same(ks[0], b) and _same(vs[0], b)
            and _same(ks[1], t) and _same(vs[1], t)):
        raise ctx.error(f"query {shape_str(qs)}, key {shape_str(ks)}, value {shape_str(vs)} do not fit "
                        f"q_num_heads {qh} and kv_num_heads {kvh}")
    state = (b, kvh, dk, dv)
    ps = ctx.shape(3) if ctx.has(3) else None
    if ps is not None and not (len(ps) == 4 and all(_same(a, w) for a, w in zip(ps, state))):
        raise ctx.error(f"past_state {shape_str(ps)} must be {shape_str(state)}")
    return [tensor(ctx.elem(0), (b, t, dim_mul(qh, dv))), tensor(state_elem, state)]


@op("LinearAttention", since=27, infer=_linear_attention_rule)
def linear_attention(ctx: OpContext) -> Kernel:
    """Recurrent linear attention (linear, gated, delta and gated-delta rules) with a carried state.

    The recurrence runs token by token, each step vectorised over batch and
    heads: the state update is inherently sequential in time.
    """
    rule = ctx.attr("update_rule", "gated_delta")
    qh, kvh = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    scale_attr = float(ctx.attr("scale", 0.0))
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    group = qh // kvh

    def run(query: np.ndarray, key: np.ndarray, value: np.ndarray, past: np.ndarray | None = None,
            decay: np.ndarray | None = None, beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if not query.ndim == key.ndim == value.ndim == 3:
            raise ctx.error(f"query {list(query.shape)}, key {list(key.shape)}, value {list(value.shape)} "
                            "must be 3D (batch, length, heads*dim)")
        b, t, _ = query.shape
        dk, dv = query.shape[2] // qh, value.shape[2] // kvh
        if key.shape != (b, t, kvh * dk) or value.shape != (b, t, kvh * dv) or query.shape[2] != qh * dk:
            raise ctx.error(f"query {list(query.shape)}, key {list(key.shape)}, value {list(value.shape)} "
                            f"do not fit q_num_heads {qh} and kv_num_heads {kvh}")
        f32 = np.float32
        q = query.reshape(b, t, kvh, group, dk).astype(f32)
        k = key.reshape(b, t, kvh, dk).astype(f32)
        v = value.reshape(b, t, kvh, dv).astype(f32)
        if past is not None:
            if past.shape != (b, kvh, dk, dv):
                raise ctx.error(f"past_state {list(past.shape)} must be {[b, kvh, dk, dv]}")
            state = past.astype(f32)
        else:
            state = np.zeros((b, kvh, dk, dv), dtype=f32)
        if decay is not None:  # given exactly when the rule is gated (the shape rule checks)
            if decay.shape not in ((b, t, kvh), (b, t, kvh * dk)):
                raise ctx.error(f"decay {list(decay.shape)} must be {[b, t, kvh]} or {[b, t, kvh * dk]}")
            gate = np.exp(decay.astype(f32).reshape(b, t, kvh, -1))[..., None]  # (b, t, kvh, 1|dk, 1)
        if beta is not None:  # given exactly when the rule has a delta step
            if beta.shape not in ((b, t, kvh), (b, t, 1)):
                raise ctx.error(f"beta {list(beta.shape)} must be {[b, t, kvh]} or {[b, t, 1]}")
            rate = beta.astype(f32).reshape(b, t, -1, 1)
        scale = f32(scale_attr or 1.0 / math.sqrt(dk))
        out = np.empty((b, t, kvh, group, dv), dtype=f32)
        for i in range(t):
            if gated:
                state *= gate[:, i]
            vt = v[:, i]
            if delta:
                vt = rate[:, i] * (vt - np.matmul(k[:, i, :, None, :], state)[:, :, 0])
            state += k[:, i, :, :, None] * vt[:, :, None, :]
            np.matmul(q[:, i], state, out=out[:, i])
        out *= scale
        return (out.reshape(b, t, qh * dv).astype(query.dtype, copy=False),
                state.astype(past.dtype if past is not None else query.dtype, copy=False))

    return run


# ------------------------------------------------------------------ FlexAttention

def _flex_score_elem(ctx: InferContext | OpContext, q_elem: int | None) -> int | None:
    """Element type of the scores the modifier subgraphs see: softmax_precision, else
    float32 (double for double inputs)."""
    sp = _softmax_elem(ctx)
    if sp is not None:
        return sp
    if q_elem is None:
        return None
    return dtypes.DOUBLE if q_elem == dtypes.DOUBLE else dtypes.FLOAT


def _flex_rule(ctx: InferContext) -> list[Type | None]:
    qs, ks, vs = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    for name, s in (("Q", qs), ("K", ks), ("V", vs)):
        if s is not None and len(s) != 4:
            raise ctx.error(f"{name} must be 4D (batch, heads, length, head_size), got {shape_str(s)}")
    score_elem = _flex_score_elem(ctx, ctx.elem(0))
    if qs is None or ks is None or vs is None:
        score_shape = None
        y = None
    else:
        if not (_same(qs[0], ks[0]) and _same(qs[0], vs[0]) and _same(ks[1], vs[1]) and _same(ks[2], vs[2])
                and _same(qs[3], ks[3])):
            raise ctx.error(f"Q {shape_str(qs)}, K {shape_str(ks)}, V {shape_str(vs)} do not fit together")
        if _known(qs[1]) and _known(ks[1]) and (ks[1] == 0 or qs[1] % ks[1]):
            raise ctx.error(f"query heads ({qs[1]}) must be a multiple of key/value heads ({ks[1]})")
        score_shape = (qs[0], qs[1], qs[2], ks[2])
        y = (qs[0], qs[1], qs[2], vs[3])
    for name in ("score_mod", "prob_mod"):
        if name in ctx.node.attrs:
            outs = ctx.subgraph(name, [tensor(score_elem, score_shape)])
            if len(outs) != 1:
                raise ctx.error(f"{name} must have exactly one output, has {len(outs)}")
            got = outs[0]
            if isinstance(got, TensorType) and got.elem is not None and score_elem is not None \
                    and got.elem != score_elem:
                raise ctx.error(f"{name} returns {dtypes.type_name(got.elem)}, expected "
                                f"{dtypes.type_name(score_elem)}")
    return [tensor(ctx.elem(0), y)]


def _modifier(ctx: OpContext, name: str, elem: int, in_type: Type) -> Callable[..., np.ndarray] | None:
    """A score_mod/prob_mod subgraph as a function of float32/float64 values.

    Values cross into the subgraph in its element type (rounded to float16
    or bfloat16 when softmax_precision asks for those) and come back widened.
    """
    if name not in ctx.node.attrs:
        return None
    sub = ctx.subgraph(name, [in_type])

    def apply(x: np.ndarray, outer: dict[str, Any]) -> np.ndarray:
        out = sub([dtypes.from_float(x, elem)], outer)[0]
        if out.shape != x.shape:
            raise ctx.error(f"{name} changed the shape of its input from {list(x.shape)} to {list(out.shape)}")
        return dtypes.to_float32(out, elem).astype(x.dtype)  # a copy: the softmax runs in place on it

    return apply


@op("FlexAttention", since=1, domain="ai.onnx.preview", infer=_flex_rule, exotic=True)
def flex_attention(ctx: OpContext) -> Kernel:
    """Attention whose scores and probabilities pass through user subgraphs (torch flex_attention).

    Registered storage-aware (exotic) and decoding bfloat16 itself: the
    device's generic bfloat16 wrapper does not forward the `outer=` values
    that subgraph-carrying kernels receive.
    """
    in_elem = ctx.in_elem(0)
    scale_attr = ctx.attr("scale", None)
    elem = _flex_score_elem(ctx, in_elem) or dtypes.FLOAT
    q_t, k_t = ctx.in_types[0], ctx.in_types[1]
    score_shape = None
    if isinstance(q_t, TensorType) and isinstance(k_t, TensorType) and q_t.shape and k_t.shape:
        score_shape = (q_t.shape[0], q_t.shape[1], q_t.shape[2], k_t.shape[2])
    score_type = tensor(elem, score_shape)
    score_mod = _modifier(ctx, "score_mod", elem, score_type)
    prob_mod = _modifier(ctx, "prob_mod", elem, score_type)
    cdt = np.dtype(np.float64) if dtypes.DOUBLE in (elem, in_elem) else np.dtype(np.float32)

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, outer: dict[str, Any] | None = None) -> tuple[np.ndarray]:
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise ctx.error(f"Q {list(q.shape)}, K {list(k.shape)}, V {list(v.shape)} must all be 4D")
        if in_elem == dtypes.BFLOAT16:
            q, k, v = (dtypes.to_float32(x, in_elem) for x in (q, k, v))
        b, hq, sq, d = q.shape
        hkv, skv = k.shape[1], k.shape[2]
        if k.shape[0] != b or v.shape[:3] != k.shape[:3] or k.shape[3] != d or hkv == 0 or hq % hkv:
            raise ctx.error(f"Q {list(q.shape)}, K {list(k.shape)}, V {list(v.shape)} do not fit together")
        scale = scale_attr if scale_attr is not None else 1.0 / math.sqrt(d)
        group = hq // hkv
        qs = np.multiply(q, cdt.type(scale), dtype=cdt, order="C")
        scores = gemm.matmul(qs.reshape(b, hkv, group * sq, d), k.astype(cdt, copy=False).swapaxes(-1, -2))
        scores = scores.reshape(b, hq, sq, skv)
        outer = outer or {}
        if score_mod is not None:
            scores = score_mod(scores, outer)
        with np.errstate(invalid="ignore", over="ignore"):
            _softmax_inplace(scores)
        if prob_mod is not None:
            scores = prob_mod(scores, outer)
        y = gemm.matmul(scores.reshape(b, hkv, group * sq, skv), v.astype(cdt, copy=False))
        y = y.reshape(b, hq, sq, v.shape[3])
        if in_elem == dtypes.BFLOAT16:
            return (dtypes.from_float(y, in_elem),)
        return (y.astype(v.dtype, copy=False),)

    return run


# ------------------------------------------- webinfer.MultiHeadAttention (fused)

def _mha_rule(ctx: InferContext) -> list[Type | None]:
    q, v = ctx.shape(0), ctx.shape(2)
    heads = ctx.attr("num_heads")
    if q is not None and len(q) != 3:
        raise ctx.error(f"query must be [batch, seq, heads*dim], got {shape_str(q)}")
    if q is None or v is None:
        return [tensor(ctx.elem(0))]
    _check_divisible(ctx, "query hidden size", q[2], heads, q)
    _check_divisible(ctx, "value hidden size", v[2], heads, v)
    return [tensor(ctx.elem(0), (q[0], q[1], v[2]))]


@op("MultiHeadAttention", domain="webinfer", infer=_mha_rule)
def multi_head_attention(ctx: OpContext) -> Kernel:
    """softmax(Q.K^T * scale + mask).V on [batch, seq, heads*dim] tensors.

    What the fusion pass makes of the exporters' Reshape/Transpose/MatMul/
    Mul/Add/Softmax/MatMul/Transpose/Reshape attention block: the head
    split and merge become views, and the core runs once.
    """
    heads = ctx.attr("num_heads")
    scale = ctx.attr("scale", None)

    def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray]:
        b, sq, hidden = q.shape
        skv = k.shape[1]
        d, dv = hidden // heads, v.shape[2] // heads
        y = scaled_dot_product_attention(q.reshape(b, sq, heads, d).transpose(0, 2, 1, 3),
                                         k.reshape(b, skv, heads, d).transpose(0, 2, 1, 3),
                                         v.reshape(b, skv, heads, dv).transpose(0, 2, 1, 3), mask, scale)
        return (y.transpose(0, 2, 1, 3).reshape(b, sq, heads * dv),)

    return run
