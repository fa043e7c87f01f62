"""Property tests of the GPU's MatMul/Gemm, Conv and attention kernels against numpy in float64.

Random shapes (small: the software Vulkan adapter is slow), strides, pads,
dilations, groups, transposes, broadcast batches and masks; every node must
run on the GPU (`providers=["webgpu"]` alone), and both matmul schedules are
exercised whatever the adapter prefers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import webinfer

pytestmark = pytest.mark.gpu

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _model(node: Any, inputs: dict[str, np.ndarray], opset: int = 17, domain: str = "") -> bytes:
    vis = [helper.make_tensor_value_info(n, TensorProto.BOOL if a.dtype == np.bool_ else TensorProto.FLOAT,
                                         list(a.shape)) for n, a in inputs.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph([node], "g", vis, [out]), opset_imports=opsets).SerializeToString()


def run_gpu(node: Any, inputs: dict[str, np.ndarray], opset: int = 17, domain: str = "",
            variant: str | None = None) -> np.ndarray:
    """Run one node on the webgpu provider alone; every node must be placed there."""
    opts = webinfer.SessionOptions()
    if variant:
        opts.provider_options["webgpu"] = {"matmul_variant": variant}
    sess = webinfer.InferenceSession(_model(node, inputs, opset, domain), opts, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    return sess.run(None, inputs)[0]


def close(got: np.ndarray, want: np.ndarray, k: int) -> None:
    """float32 accumulation of k products of O(1) values: a few ulp times sqrt(k)."""
    assert got.shape == want.shape
    tol = 2e-6 * max(1.0, math.sqrt(k)) * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-5, atol=tol)


def rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ MatMul / Gemm

@st.composite
def matmul_case(draw: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    m, n, k = draw(st.integers(1, 19)), draw(st.integers(1, 19)), draw(st.integers(1, 23))
    batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    a_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)
    b_batch = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))):]
    a = a_batch + (m, k) if draw(st.integers(0, 5)) else (k,)
    b = b_batch + (k, n) if draw(st.integers(0, 5)) else (k,)
    return a, b


@pytest.mark.parametrize("variant", ["regblock", "tiled", "tiled8"])
@SETTINGS
@given(case=matmul_case(), seed=st.integers(0, 2**31 - 1))
def test_matmul(gpu_device: Any, variant: str, case: tuple[tuple[int, ...], tuple[int, ...]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rand(rng, case[0]), rand(rng, case[1])
    got = run_gpu(helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": a, "b": b}, variant=variant)
    close(got, np.matmul(a.astype(np.float64), b.astype(np.float64)), a.shape[-1])


@pytest.mark.parametrize("variant", ["regblock", "tiled", "tiled8"])
@SETTINGS
@given(m=st.integers(1, 21), n=st.integers(1, 21), k=st.integers(1, 21), trans_a=st.booleans(), trans_b=st.booleans(),
       c_shape=st.sampled_from(["none", "scalar", "row", "col", "full"]), alpha=st.sampled_from([1.0, 0.5, -2.0]),
       beta=st.sampled_from([1.0, 0.0, 0.25]), seed=st.integers(0, 2**31 - 1))
def test_gemm(gpu_device: Any, variant: str, m: int, n: int, k: int, trans_a: bool, trans_b: bool, c_shape: str,
              alpha: float, beta: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rand(rng, (k, m) if trans_a else (m, k))
    b = rand(rng, (n, k) if trans_b else (k, n))
    feeds = {"a": a, "b": b}
    shapes = {"scalar": (), "row": (n,), "col": (m, 1), "full": (m, n)}
    if c_shape != "none":
        feeds["c"] = rand(rng, shapes[c_shape])
    node = helper.make_node("Gemm", list(feeds), ["y"], transA=int(trans_a), transB=int(trans_b), alpha=alpha,
                            beta=beta)
    got = run_gpu(node, feeds, variant=variant)
    want = alpha * (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    if "c" in feeds:
        want = want + beta * feeds["c"].astype(np.float64)
    close(got, want, k)


# ------------------------------------------------------------------ Conv

def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: list[int], dil: list[int],
             pads: list[int], group: int) -> np.ndarray:
    """Direct float64 convolution over 2-D NCHW (the definition, loop over kernel taps)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]:i * dil[0] + (oh - 1) * strides[0] + 1:strides[0],
                           j * dil[1]:j * dil[1] + (ow - 1) * strides[1] + 1:strides[1]]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, w[g * mg:(g + 1) * mg, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


@st.composite
def conv_case(draw: Any) -> dict[str, Any]:
    group = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and group == 1
    cg = 1 if depthwise else draw(st.integers(1, 3))
    c = draw(st.integers(1, 4)) if depthwise else cg * group
    group = c if depthwise else group
    m = group * (draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3)))
    one_d = draw(st.integers(0, 4)) == 0
    kh, kw = (1, draw(st.integers(1, 4))) if one_d else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = [1 if one_d else draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    dil = [1 if one_d else draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    pads = [0 if one_d else draw(st.integers(0, 2)), draw(st.integers(0, 2)), 0 if one_d else draw(st.integers(0, 2)),
            draw(st.integers(0, 2))]
    h = 1 if one_d else draw(st.integers(max(1, (kh - 1) * dil[0] + 1 - pads[0] - pads[2]), 9))
    w = draw(st.integers(max(1, (kw - 1) * dil[1] + 1 - pads[1] - pads[3]), 9))
    return dict(n=draw(st.integers(1, 2)), c=c, m=m, h=h, w=w, kh=kh, kw=kw, strides=strides, dil=dil, pads=pads,
                group=group, bias=draw(st.booleans()), one_d=one_d, act=draw(st.sampled_from([None, "Relu", "Clip", "LeakyRelu", "Sigmoid"])))


@SETTINGS
@given(case=conv_case(), seed=st.integers(0, 2**31 - 1))
def test_conv(gpu_device: Any, case: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x4 = rand(rng, (case["n"], case["c"], case["h"], case["w"]))
    w4 = rand(rng, (case["m"], case["c"] // case["group"], case["kh"], case["kw"]))
    b = rand(rng, (case["m"],)) if case["bias"] else None
    want = conv_ref(x4.astype(np.float64), w4.astype(np.float64), None if b is None else b.astype(np.float64),
                    case["strides"], case["dil"], case["pads"], case["group"])
    attrs: dict[str, Any] = {"group": case["group"]}
    if case["one_d"]:
        x, w = x4[:, :, 0], w4[:, :, 0]
        attrs.update(strides=case["strides"][1:], dilations=case["dil"][1:], pads=[case["pads"][1], case["pads"][3]])
        want = want[:, :, 0]
    else:
        x, w = x4, w4
        attrs.update(strides=case["strides"], dilations=case["dil"], pads=case["pads"])
    if case["act"] == "Relu":
        attrs["activation"] = "Relu"
        want = np.maximum(want, 0)
    elif case["act"] == "Clip":
        attrs.update(activation="Clip", activation_min=-0.5, activation_max=0.75)
        want = np.clip(want, -0.5, 0.75)
    elif case["act"] == "LeakyRelu":  # alpha: the table's default (activations.py)
        attrs["activation"] = "LeakyRelu"
        want = np.where(want >= 0, want, 0.01 * want)
    elif case["act"] == "Sigmoid":
        attrs["activation"] = "Sigmoid"
        want = 1 / (1 + np.exp(-want))
    feeds = {"x": x, "w": w} if b is None else {"x": x, "w": w, "b": b}
    if case["act"]:  # the fused activation is webinfer.FusedConv's
        got = run_gpu(helper.make_node("FusedConv", list(feeds), ["y"], domain="webinfer", **attrs), feeds,
                      domain="webinfer")
    else:
        got = run_gpu(helper.make_node("Conv", list(feeds), ["y"], **attrs), feeds)
    close(got, want, case["c"] // case["group"] * case["kh"] * case["kw"])


def test_conv_quantize_grid(gpu_device: Any) -> None:
    """The QDQ fusion's QuantizeGrid activation (clip, then round half to even): integers equal to the
    float64 reference's, except where that lies within float32 rounding of a tie."""
    rng = np.random.default_rng(7)
    x = np.rint(rng.standard_normal((1, 6, 9, 8)) * 40).astype(np.float32)
    w = (rng.standard_normal((5, 6, 3, 3)) * 0.1).astype(np.float32)
    want = conv_ref(x.astype(np.float64), w.astype(np.float64), None, [1, 1], [1, 1], [1, 1, 1, 1], 1)
    node = helper.make_node("FusedConv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], domain="webinfer",
                            activation="QuantizeGrid", activation_min=-20.0, activation_max=30.0)
    got = run_gpu(node, {"x": x, "w": w}, domain="webinfer")
    clipped = np.clip(want, -20, 30)
    near_tie = np.abs(np.abs(clipped - np.floor(clipped)) - 0.5) < 1e-3
    assert np.all(got == np.rint(got)) and got.min() >= -20 and got.max() <= 30
    np.testing.assert_array_equal(got[~near_tie], np.rint(clipped)[~near_tie])


# ------------------------------------------------------------------ attention

def attention_ref(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, causal: bool,
                  scale: float) -> np.ndarray:
    """softmax(q.k^T * scale + mask) . v in float64 on [B, H, S, D]; rows with no visible key give zeros."""
    group = q.shape[1] // k.shape[1]
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    skv = k.shape[2]
    if mask is not None:
        bias = np.where(mask, 0.0, -np.inf) if mask.dtype == np.bool_ else mask.astype(np.float64)
        if bias.shape[-1] < skv:
            pad = np.full(bias.shape[:-1] + (skv - bias.shape[-1],), -np.inf)
            bias = np.concatenate([bias, pad], axis=-1)
        s = s + bias
    if causal:
        s = s + np.where(np.tril(np.ones((q.shape[2], skv), bool)), 0.0, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    tot = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
    return np.einsum("bhqk,bhkd->bhqd", p, v)


@st.composite
def attention_case(draw: Any) -> dict[str, Any]:
    hkv = draw(st.sampled_from([1, 2]))
    return dict(b=draw(st.integers(1, 2)), hkv=hkv, hq=hkv * draw(st.sampled_from([1, 2])), sq=draw(st.integers(1, 9)),
                skv=draw(st.integers(1, 40)), d=draw(st.integers(1, 12)), dv=draw(st.integers(1, 12)),
                mask=draw(st.sampled_from([None, "bool", "float", "short"])),
                mask_rank=draw(st.integers(2, 4)), causal=draw(st.booleans()),
                scale=draw(st.sampled_from([None, 0.3])), three_d=draw(st.booleans()))


@SETTINGS
@given(case=attention_case(), seed=st.integers(0, 2**31 - 1))
def test_attention(gpu_device: Any, case: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    b, hq, hkv, sq, skv, d, dv = (case[k] for k in ("b", "hq", "hkv", "sq", "skv", "d", "dv"))
    if case["three_d"] and d != dv and hq != hkv:
        dv = d  # 3-D inputs with GQA need V's hidden size to split into kv heads of the query head size
    q, k, v = rand(rng, (b, hq, sq, d)), rand(rng, (b, hkv, skv, d)), rand(rng, (b, hkv, skv, dv))
    full = (b, hq, sq, skv)[4 - case["mask_rank"]:]
    mask = None
    if case["mask"] == "bool":
        mask = rng.random(full) > 0.3
    elif case["mask"] == "float":
        mask = rand(rng, full)
    elif case["mask"] == "short":
        mask = rand(rng, full[:-1] + (max(1, skv - 3),))
    attrs: dict[str, Any] = {"is_causal": int(case["causal"])}
    if case["scale"] is not None:
        attrs["scale"] = case["scale"]
    feeds: dict[str, np.ndarray]
    if case["three_d"]:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
        feeds = {"q": q.transpose(0, 2, 1, 3).reshape(b, sq, hq * d), "k": k.transpose(0, 2, 1, 3).reshape(b, skv, -1),
                 "v": v.transpose(0, 2, 1, 3).reshape(b, skv, -1)}
    else:
        feeds = {"q": q, "k": k, "v": v}
    if mask is not None:
        feeds["mask"] = mask
    got = run_gpu(helper.make_node("Attention", list(feeds), ["y"], **attrs), feeds, opset=23)
    scale = case["scale"] if case["scale"] is not None else 1 / math.sqrt(d)
    want = attention_ref(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask, case["causal"], scale)
    if case["three_d"]:
        want = want.transpose(0, 2, 1, 3).reshape(b, sq, hq * dv)
    close(got, want, skv * d)


@SETTINGS
@given(b=st.integers(1, 2), heads=st.sampled_from([1, 2, 3]), sq=st.integers(1, 9), skv=st.integers(1, 33),
       d=st.sampled_from([1, 4, 6, 8]), masked=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_multi_head_attention(gpu_device: Any, b: int, heads: int, sq: int, skv: int, d: int, masked: bool,
                              seed: int) -> None:
    """webinfer.MultiHeadAttention (the fused exporters' pattern): [B, S, H*D] in and out, additive mask."""
    rng = np.random.default_rng(seed)
    q, k, v = rand(rng, (b, sq, heads * d)), rand(rng, (b, skv, heads * d)), rand(rng, (b, skv, heads * d))
    feeds = {"q": q, "k": k, "v": v}
    if masked:
        mask = np.where(rng.random((b, 1, 1, skv)) > 0.2, 0.0, -1e4).astype(np.float32)
        mask[..., 0] = 0.0  # a row masked everywhere by a finite -1e4 is softmax over scores float32 cannot resolve
        feeds["mask"] = mask
    node = helper.make_node("MultiHeadAttention", list(feeds), ["y"], domain="webinfer", num_heads=heads, scale=0.25)
    got = run_gpu(node, feeds, domain="webinfer")
    split = [x.astype(np.float64).reshape(b, -1, heads, d).transpose(0, 2, 1, 3) for x in (q, k, v)]
    want = attention_ref(*split, feeds.get("mask"), False, 0.25).transpose(0, 2, 1, 3).reshape(b, sq, heads * d)
    close(got, want, skv * d)


# ------------------------------------------------------------------ float16

F16_CASES: list[tuple[str, Any, dict[str, tuple[int, ...]], int]] = [
    ("matmul vec4", helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": (3, 8, 12), "b": (12, 16)}, 17),
    ("matmul scalar", helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": (5, 7), "b": (7, 3)}, 17),
    ("gemm transB", helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1),
     {"a": (6, 5), "b": (9, 5), "c": (9,)}, 17),
    ("conv 3x3", helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
     {"x": (1, 3, 7, 6), "w": (4, 3, 3, 3), "b": (4,)}, 17),
    ("conv 1x1", helper.make_node("Conv", ["x", "w"], ["y"]), {"x": (2, 8, 4, 4), "w": (4, 8, 1, 1)}, 17),
    ("attention", helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1),
     {"q": (1, 2, 5, 8), "k": (1, 2, 7, 8), "v": (1, 2, 7, 8)}, 23),
    ("layernorm", helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"]),
     {"x": (4, 10), "s": (10,), "b": (10,)}, 17),
    ("softmax", helper.make_node("Softmax", ["x"], ["y"], axis=1), {"x": (3, 9, 2)}, 17),
    ("reduce mean", helper.make_node("ReduceMean", ["x"], ["y"], axes=[1]), {"x": (3, 9, 2)}, 17),
    ("transpose", helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1]), {"x": (3, 5, 2)}, 17),
    ("maxpool", helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2]), {"x": (1, 2, 5, 5)}, 17),
]


@pytest.mark.parametrize("name,node,shapes,opset", F16_CASES, ids=[c[0] for c in F16_CASES])
def test_float16_kernels(gpu_device: Any, name: str, node: Any, shapes: dict[str, tuple[int, ...]],
                         opset: int) -> None:
    """float16 storage, float32 arithmetic, one rounding at the store: within a few f16 ulp of the cpu."""
    if not gpu_device.f16:
        pytest.skip("the adapter has no shader-f16")
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(s).astype(np.float16) for n, s in shapes.items()}
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT16, list(a.shape)) for n, a in feeds.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    data = helper.make_model(helper.make_graph([node], "g", vis, [out]),
                             opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}, sess.device_stats()["fallback_reasons"]
    got = sess.run(None, feeds)[0]
    want = webinfer.InferenceSession(data).run(None, feeds)[0]
    assert got.dtype == np.float16 and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=4e-3,
                               atol=4e-3 * max(1.0, float(np.abs(want).max())))
