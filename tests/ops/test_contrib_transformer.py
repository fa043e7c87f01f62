"""onnxruntime's fused transformer ops (com.microsoft) against onnxruntime on random data.

Tolerances: float32 kernels that differ from onnxruntime's only in summation order and in
the erf/tanh/exp approximations: rtol 1e-4, atol 1e-5 (attention and layer norms over
hidden sizes up to 64, values ~1).  float16 inputs: 5e-3 (one float16 ulp near 1 is 1e-3).
"""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.errors import WebinferError

from .contrib_util import one_node, run_ours

RNG = np.random.default_rng(21)


@pytest.fixture(autouse=True)
def _same_data_in_any_order() -> None:
    """Each test draws the same data however the tests are ordered or split between workers."""
    global RNG
    RNG = np.random.default_rng(21)
TOL = dict(rtol=1e-4, atol=1e-5)


def _r(*shape: int, dtype: type = np.float32, scale: float = 1.0) -> np.ndarray:
    return (RNG.normal(0, scale, shape)).astype(dtype)


def _close(ours: list, ref: list, **tol: float) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.dtype == b.dtype and a.shape == b.shape, (i, a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), err_msg=f"output {i}",
                                   **(tol or TOL))


# ------------------------------------------------------------ activations

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_activations(dtype: type) -> None:
    tol = TOL if dtype is np.float32 else dict(rtol=5e-3, atol=5e-3)
    x, bias = _r(2, 5, 24, dtype=dtype, scale=2), _r(24, dtype=dtype)
    _close(*one_node("Gelu", {"x": x}), **tol)
    _close(*one_node("BiasGelu", {"x": x}, {"b": bias}), **tol)
    _close(*one_node("FastGelu", {"x": x}), **tol)
    _close(*one_node("FastGelu", {"x": x}, {"b": bias}), **tol)
    _close(*one_node("QuickGelu", {"x": x}, alpha=1.5), **tol)
    _close(*one_node("QuickGelu", {"x": x}), **tol)



def test_bias_add() -> None:
    """onnxruntime has BiasAdd on CUDA only: the reference is its Add(Add(X, bias), skip)."""
    from onnx import helper

    from .contrib_util import contrib_model, run_pair

    feed = {"x": _r(2, 5, 24), "skip": _r(2, 5, 24)}
    init = {"b": _r(24)}
    ours = run_ours("BiasAdd", feed, init, ["x", "b", "skip"])
    adds = [helper.make_node("Add", ["x", "b"], ["t"]), helper.make_node("Add", ["t", "skip"], ["y0"])]
    _, ref = run_pair(contrib_model(adds, feed, ["y0"], init), feed)
    _close(ours, ref)


# ------------------------------------------------------------ layer norms

@pytest.mark.parametrize("skip_shape", [(2, 7, 48), (7, 48), (1, 7, 48)])
@pytest.mark.parametrize("outputs", [1, 4])
def test_skip_layer_normalization(skip_shape: tuple[int, ...], outputs: int) -> None:
    x = _r(2, 7, 48, scale=3)
    init = {"gamma": _r(48), "beta": _r(48), "bias": _r(48)}
    ours, ref = one_node("SkipLayerNormalization", {"x": x, "skip": _r(*skip_shape)}, init, n_out=outputs,
                         epsilon=1e-5)
    # onnxruntime's CPU kernel leaves mean and inv_std_var unset: compare output and the sum
    _close([ours[0]] + ours[3:], [ref[0]] + ref[3:])


def test_skip_layer_normalization_no_beta_no_bias() -> None:
    x = _r(3, 5, 32)
    ours, ref = one_node("SkipLayerNormalization", {"x": x, "skip": _r(3, 5, 32)}, {"gamma": _r(32)})
    _close(ours, ref)


@pytest.mark.parametrize("with_bias", [False, True])
def test_skip_simplified_layer_normalization(with_bias: bool) -> None:
    init = {"gamma": _r(40)} | ({"bias": _r(40)} if with_bias else {})
    ours, ref = one_node("SkipSimplifiedLayerNormalization", {"x": _r(2, 6, 40, scale=2), "skip": _r(2, 6, 40)},
                         init, n_out=4, epsilon=1e-6)
    _close([ours[0], ours[3]], [ref[0], ref[3]])


@pytest.mark.parametrize("axis", [-1, 1])
def test_simplified_layer_normalization(axis: int) -> None:
    from onnx import helper

    from .contrib_util import contrib_model, run_pair

    x = _r(3, 4, 10, scale=2)
    scale = _r(*x.shape[axis % 3:])
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "scale"], ["y", "inv"], axis=axis, epsilon=1e-6)
    ours, ref = run_pair(contrib_model([node], {"x": x}, ["y", "inv"], {"scale": scale}), {"x": x})
    _close(ours, ref)


@pytest.mark.parametrize("with_segments", [False, True])
@pytest.mark.parametrize("with_positions", [False, True])
def test_embed_layer_normalization(with_segments: bool, with_positions: bool) -> None:
    b, s, hidden, vocab = 2, 9, 32, 50
    feed = {"ids": RNG.integers(0, vocab, (b, s)).astype(np.int32)}
    mask = np.ones((b, s), np.int32)
    mask[1, 5:] = 0
    names = ["ids", "seg_ids" if with_segments else "", "word", "pos", "seg" if with_segments else "",
             "gamma", "beta", "mask"]
    init = {"word": _r(vocab, hidden), "pos": _r(16, hidden), "gamma": _r(hidden), "beta": _r(hidden)}
    if with_segments:
        feed["seg_ids"] = RNG.integers(0, 2, (b, s)).astype(np.int32)
        init["seg"] = _r(2, hidden)
    feed["mask"] = mask
    if with_positions:
        feed["pos_ids"] = RNG.integers(0, 16, (b, s)).astype(np.int32)
        names.append("pos_ids")
    ours, ref = one_node("EmbedLayerNormalization", feed, init, names, n_out=3, epsilon=1e-12)
    _close(ours, ref)


# ------------------------------------------------------------ attention

def _mask(kind: str, b: int, s: int, total: int) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "lengths":
        return np.array([total, total - 3][:b], np.int32)
    if kind == "start_end":
        return np.array([total, total - 2, 0, 2][:2 * b], np.int32)
    if kind == "raw2d":
        m = np.ones((b, total), np.int32)
        m[1, -4:] = 0
        return m
    m = (RNG.random((b, s, total)) > 0.3).astype(np.int32)
    m[..., 0] = 1
    return m


@pytest.mark.parametrize("mask", ["none", "lengths", "start_end", "raw2d", "raw3d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention(mask: str, unidirectional: int) -> None:
    b, s, d, heads = 2, 7, 24, 4
    feed = {"x": _r(b, s, d)}
    init = {"w": _r(d, 3 * d, scale=0.3), "bias": _r(3 * d, scale=0.1)}
    names = ["x", "w", "bias"]
    m = _mask(mask, b, s, s)
    if m is not None:
        feed["mask"] = m
        names.append("mask")
    ours, ref = one_node("Attention", feed, init, names, num_heads=heads, unidirectional=unidirectional)
    _close(ours, ref)


def test_attention_qkv_sizes_past_and_bias() -> None:
    b, s, p, d, heads = 2, 3, 4, 16, 2
    sizes = [16, 16, 24]
    feed = {"x": _r(b, s, d), "past": _r(2, b, heads, p, 8)}
    init = {"w": _r(d, sum(sizes), scale=0.3), "bias": _r(sum(sizes), scale=0.1)}
    # onnxruntime requires equal hidden sizes with a past: sizes only without one
    ours, ref = one_node("Attention", {"x": feed["x"]}, init, ["x", "w", "bias"], num_heads=heads,
                         qkv_hidden_sizes=sizes)
    _close(ours, ref)
    init = {"w": _r(d, 3 * d, scale=0.3), "bias": _r(3 * d, scale=0.1)}
    ours, ref = one_node("Attention", feed, init, ["x", "w", "bias", "", "past"], n_out=2,
                         num_heads=heads, unidirectional=1, scale=0.2)
    _close(ours, ref)
    # onnxruntime takes attention_bias without a past only
    ours, ref = one_node("Attention", {"x": feed["x"], "ab": _r(b, heads, s, s)}, init,
                         ["x", "w", "bias", "", "", "ab"], num_heads=heads)
    _close(ours, ref)


@pytest.mark.parametrize("mask", ["none", "lengths", "raw2d"])
def test_multi_head_attention_cross(mask: str) -> None:
    b, s, length, d, dv, heads = 2, 5, 8, 24, 16, 4
    feed = {"q": _r(b, s, d), "k": _r(b, length, d), "v": _r(b, length, dv)}
    init = {"bias": _r(2 * d + dv, scale=0.1)}
    names = ["q", "k", "v", "bias"]
    m = _mask(mask, b, s, length)
    if m is not None:
        feed["m"] = m
        names.append("m")
    ours, ref = one_node("MultiHeadAttention", feed, init, names, num_heads=heads)
    _close(ours, ref)


def test_multi_head_attention_past_and_packed() -> None:
    b, s, p, heads, hd = 2, 3, 5, 2, 8
    feed = {"q": _r(b, s, heads * hd), "k": _r(b, s, heads * hd), "v": _r(b, s, heads * hd),
            "pk": _r(b, heads, p, hd), "pv": _r(b, heads, p, hd), "ab": _r(1, heads, s, p + s)}
    ours, ref = one_node("MultiHeadAttention", feed, None, ["q", "k", "v", "", "", "ab", "pk", "pv"], n_out=3,
                         num_heads=heads, unidirectional=1)
    _close(ours, ref)
    # onnxruntime's CPU kernel has no packed QKV: the reference is the same values fed apart
    qkv = _r(b, s, heads, 3, hd)
    ours = run_ours("MultiHeadAttention", {"qkv": qkv}, None, ["qkv"], num_heads=heads)
    apart = {n: np.ascontiguousarray(qkv[:, :, :, i]).reshape(b, s, heads * hd) for i, n in enumerate("qkv")}
    _, ref = one_node("MultiHeadAttention", apart, None, ["q", "k", "v"], num_heads=heads)
    _close(ours, ref)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout", ["3d", "4d"])
@pytest.mark.parametrize("positions", ["offset", "ids"])
def test_rotary_embedding(interleaved: int, layout: str, positions: str) -> None:
    b, s, heads, hd, max_len = 2, 5, 3, 8, 16
    x = _r(b, s, heads * hd) if layout == "3d" else _r(b, heads, s, hd)
    pos = np.array([3], np.int64) if positions == "offset" else RNG.integers(0, max_len, (b, s)).astype(np.int64)
    angles = np.arange(max_len)[:, None] * (1e-2 ** (np.arange(hd // 2) / (hd // 2)))[None]
    init = {"cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}
    ours, ref = one_node("RotaryEmbedding", {"x": x, "pos": pos}, init, ["x", "pos", "cos", "sin"],
                         interleaved=interleaved, **({"num_heads": heads} if layout == "3d" else {}))
    _close(ours, ref)


def test_errors_name_the_node() -> None:
    with pytest.raises(WebinferError, match=r"Attention node 'n'.*qkv_hidden_sizes \[8, 8\] must be 3"):
        run_ours("Attention", {"x": _r(1, 2, 8)}, {"w": _r(8, 24)}, num_heads=2, qkv_hidden_sizes=[8, 8])
    with pytest.raises(WebinferError, match=r"SkipLayerNormalization node 'n'.*gamma \[5\] must be 1-D"):
        run_ours("SkipLayerNormalization", {"x": _r(1, 2, 8), "s": _r(1, 2, 8)}, {"g": _r(5)})
    with pytest.raises(WebinferError, match=r"EmbedLayerNormalization node 'n'.*input_ids range \[0, 60\]"):
        run_ours("EmbedLayerNormalization", {"ids": np.array([[0, 60]], np.int32)},
                 {"w": _r(50, 8), "p": _r(4, 8), "g": _r(8), "b": _r(8)}, ["ids", "", "w", "p", "", "g", "b"])
    with pytest.raises(WebinferError, match=r"Attention node 'n'.*mask \[3\] fits none"):
        run_ours("Attention", {"x": _r(2, 2, 8), "m": np.ones(3, np.int32)}, {"w": _r(8, 24)},
                 ["x", "w", "", "m"], num_heads=2)


def _gqa_case(b: int, s: int, past: int, heads: int, kv_heads: int, d: int, rotary: bool,
              packed: bool = False) -> tuple[dict, list[str], dict]:
    total = past + s
    feed: dict[str, np.ndarray] = {}
    if packed:
        feed["qkv"] = _r(b, s, (heads + 2 * kv_heads) * d)
        names = ["qkv", "", ""]
    else:
        feed.update(q=_r(b, s, heads * d), k=_r(b, s, kv_heads * d), v=_r(b, s, kv_heads * d))
        names = ["q", "k", "v"]
    feed.update(pk=_r(b, kv_heads, past, d), pv=_r(b, kv_heads, past, d),
                seqlens=np.full(b, total - 1, np.int32), total=np.array(total, np.int32))
    names += ["pk", "pv", "seqlens", "total"]
    init = {}
    if rotary:
        angles = np.arange(32)[:, None] * (1e-2 ** (np.arange(d // 2) / (d // 2)))[None]
        init = {"cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32)}
        names += ["cos", "sin"]
    return feed, names, init


@pytest.mark.parametrize("s,past", [(6, 0), (1, 5), (3, 4)], ids=["prompt", "decode", "chunk"])
@pytest.mark.parametrize("rotary", [False, True])
def test_group_query_attention(s: int, past: int, rotary: bool) -> None:
    """(onnxruntime: a chunk after a past needs batch 1; rotary needs head size % 16 == 0.)"""
    feed, names, init = _gqa_case(1 if s > 1 and past else 2, s, past, 4, 2, 16 if rotary else 8, rotary)
    ours, ref = one_node("GroupQueryAttention", feed, init, names, n_out=3, num_heads=4, kv_num_heads=2,
                         do_rotary=int(rotary))
    _close(ours, ref)


@pytest.mark.parametrize("attrs", [dict(local_window_size=3), dict(softcap=2.0), dict(scale=0.3),
                                   dict(do_rotary=1, rotary_interleaved=1)])
def test_group_query_attention_options(attrs: dict) -> None:
    feed, names, init = _gqa_case(1, 5, 2, 6, 2, 16, rotary=bool(attrs.get("do_rotary")))
    ours, ref = one_node("GroupQueryAttention", feed, init, names, n_out=3, num_heads=6, kv_num_heads=2, **attrs)
    _close(ours, ref)


def test_group_query_attention_packed() -> None:
    feed, names, init = _gqa_case(2, 1, 4, 4, 1, 8, rotary=False, packed=True)
    ours, ref = one_node("GroupQueryAttention", feed, init, names, n_out=3, num_heads=4, kv_num_heads=1)
    _close(ours, ref)


@pytest.mark.parametrize("w_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_qattention(w_dtype: type, per_column: bool, with_mask: bool) -> None:
    """Integer product exact in both runtimes, then float attention: TOL."""
    b, s, d, heads = 2, 5, 16, 2
    n = 3 * d
    lo, hi = (-128, 128) if w_dtype is np.int8 else (0, 256)
    feed = {"x": RNG.integers(0, 256, (b, s, d)).astype(np.uint8)}
    init = {"w": RNG.integers(lo, hi, (d, n)).astype(w_dtype), "bias": _r(n, scale=0.1),
            "xs": np.array(0.02, np.float32),
            "ws": RNG.uniform(0.001, 0.004, (n,) if per_column else ()).astype(np.float32),
            "xz": np.array(128, np.uint8),
            "wz": (np.zeros((n,) if per_column else (), w_dtype) if w_dtype is np.int8
                   else RNG.integers(120, 136, (n,) if per_column else ()).astype(np.uint8))}
    names = ["x", "w", "bias", "xs", "ws", "", "xz", "wz"]
    if with_mask:
        feed["mask"] = np.array([s, s - 2], np.int32)
        names[5] = "mask"
    ours, ref = one_node("QAttention", feed, init, names, num_heads=heads)
    _close(ours, ref, rtol=1e-4, atol=1e-4)


def test_qembed_layer_normalization() -> None:
    b, s, hidden, vocab = 2, 7, 16, 40
    q8 = lambda *shape: RNG.integers(0, 256, shape).astype(np.uint8)  # noqa: E731
    scalar = lambda v, t=np.float32: np.array(v, t)  # noqa: E731
    feed = {"ids": RNG.integers(0, vocab, (b, s)).astype(np.int32), "seg_ids": RNG.integers(0, 2, (b, s)).astype(np.int32),
            "mask": np.array([[1] * s, [1] * 4 + [0] * (s - 4)], np.int32)}
    init = {"word": q8(vocab, hidden), "pos": q8(12, hidden), "seg": q8(2, hidden), "gamma": q8(hidden),
            "beta": q8(hidden), "ws": scalar(0.01), "ps": scalar(0.02), "ss": scalar(0.015), "gs": scalar(0.008),
            "bs": scalar(0.004), "wz": scalar(128, np.uint8), "pz": scalar(120, np.uint8),
            "sz": scalar(130, np.uint8), "gz": scalar(0, np.uint8), "bz": scalar(128, np.uint8)}
    names = ["ids", "seg_ids", "word", "pos", "seg", "gamma", "beta", "mask", "ws", "ps", "ss", "gs", "bs",
             "wz", "pz", "sz", "gz", "bz"]
    ours, ref = one_node("QEmbedLayerNormalization", feed, init, names, n_out=2, epsilon=1e-12)
    _close(ours, ref)


def test_multi_head_attention_per_head_and_packed_kv() -> None:
    b, s, length, heads, hd = 2, 4, 6, 2, 8
    q = _r(b, s, heads * hd)
    k, v = _r(b, heads, length, hd), _r(b, heads, length, hd)
    ours, ref = one_node("MultiHeadAttention", {"q": q, "k": k, "v": v}, None, ["q", "k", "v"], num_heads=heads)
    _close(ours[:1], ref[:1])
    # packed KV: the reference is the same values fed as 3-D key/value
    kv = _r(b, length, heads, 2, hd)
    ours = run_ours("MultiHeadAttention", {"q": q, "kv": kv}, None, ["q", "kv"], num_heads=heads)
    apart = {"q": q, "k": np.ascontiguousarray(kv[:, :, :, 0]).reshape(b, length, heads * hd),
             "v": np.ascontiguousarray(kv[:, :, :, 1]).reshape(b, length, heads * hd)}
    _, ref = one_node("MultiHeadAttention", apart, None, ["q", "k", "v"], num_heads=heads)
    _close(ours[:1], ref[:1])
