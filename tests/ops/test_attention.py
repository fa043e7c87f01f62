"""Attention family against onnxruntime (or onnx's reference where onnxruntime lacks the op)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import webinfer
from webinfer.ops.attention import scaled_dot_product_attention

from .util import assert_close, check_node, make_model, run_both

rng = np.random.default_rng(0)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def run_ours(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = webinfer.SessionOptions(strict_shape_checks=True)
    return webinfer.InferenceSession(model.SerializeToString(), options).run(None, feed)


# ------------------------------------------------------------------ Attention


def test_attention_4d_gqa_causal_mask_with_past() -> None:
    """GQA (4 query heads on 2 KV heads), a float mask, causal with a KV cache, all four outputs.

    (qk_matmul_output mode 2 is left to the conformance suite: onnxruntime writes
    masked scores as float32's lowest value where the spec's reference writes -inf.)
    """
    inputs = {"q": rand(2, 4, 3, 8), "k": rand(2, 2, 3, 8), "v": rand(2, 2, 3, 6),
              "mask": rand(3, 8), "past_k": rand(2, 2, 5, 8), "past_v": rand(2, 2, 5, 6)}
    check_node("Attention", inputs, n_outputs=4, opset=23, rtol=1e-4, atol=1e-5, is_causal=1,
               qk_matmul_output_mode=0)


def test_attention_3d_bool_mask_softcap_scale() -> None:
    inputs = {"q": rand(2, 5, 3 * 4), "k": rand(2, 7, 3 * 4), "v": rand(2, 7, 3 * 2),
              "mask": rng.random((2, 3, 5, 7)) > 0.3}
    inputs["mask"][..., 0] = True
    check_node("Attention", inputs, opset=23, rtol=1e-4, atol=1e-5, q_num_heads=3, kv_num_heads=3,
               softcap=2.5, scale=0.3)


def test_attention_rows_behind_large_finite_mask() -> None:
    """Rows far below the tensor's maximum (an all -1e4 mask row, as padding masks
    do) still get an exact softmax, with GQA and softcap in the way."""
    mask = rand(2, 1, 4, 6)
    mask[0, 0, 1] = -1e4
    mask[1, 0, 2, :3] = -1e30
    inputs = {"q": rand(2, 4, 4, 8) * 4, "k": rand(2, 2, 6, 8), "v": rand(2, 2, 6, 8), "mask": mask}
    check_node("Attention", inputs, opset=23, rtol=1e-4, atol=1e-5, softcap=30.0)


def test_attention_fp16_probabilities_output() -> None:
    inputs = {"q": rand(1, 2, 4, 8, dtype=np.float16), "k": rand(1, 2, 6, 8, dtype=np.float16),
              "v": rand(1, 2, 6, 8, dtype=np.float16)}
    outs = ["y", "", "", "probs"]
    node = helper.make_node("Attention", list(inputs), outs, qk_matmul_output_mode=3)
    model = make_model([node], inputs, ["y", "probs"], opset=23)
    ours, ref = run_both(model, inputs)
    assert_close(ours, ref, rtol=2e-3, atol=2e-3)


def test_attention_nonpad_kv_seqlen() -> None:
    """Opset 24 external cache: per-batch valid lengths, bottom-right causal alignment."""
    inputs = {"q": rand(2, 2, 2, 8), "k": rand(2, 2, 6, 8), "v": rand(2, 2, 6, 8),
              "nonpad": np.array([6, 4], dtype=np.int64)}
    node = helper.make_node("Attention", ["q", "k", "v", "", "", "", "nonpad"], ["y"], is_causal=1)
    model = make_model([node], inputs, ["y"], opset=24)
    ours, ref = run_both(model, inputs)
    assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_attention_sliding_window() -> None:
    inputs = {"q": rand(1, 2, 6, 8), "k": rand(1, 2, 6, 8), "v": rand(1, 2, 6, 8)}
    check_node("Attention", inputs, opset=25, rtol=1e-4, atol=1e-5, is_causal=1, left_window_size=2)


def test_attention_3d_without_heads_is_a_clear_error() -> None:
    inputs = {"q": rand(1, 4, 8), "k": rand(1, 4, 8), "v": rand(1, 4, 8)}
    node = helper.make_node("Attention", list(inputs), ["y"], name="attn0")
    model = make_model([node], inputs, ["y"], opset=23)
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="Attention node 'attn0'.*q_num_heads"):
        run_ours(model, inputs)


def test_attention_heads_not_dividing_is_a_clear_error() -> None:
    inputs = {"q": rand(1, 3, 4, 8), "k": rand(1, 2, 4, 8), "v": rand(1, 2, 4, 8)}
    node = helper.make_node("Attention", list(inputs), ["y"], name="attn1")
    model = make_model([node], inputs, ["y"], opset=23)
    with pytest.raises(webinfer.errors.ShapeInferenceError, match=r"attn1.*\(3\).*\(2\)"):
        run_ours(model, inputs)


def test_scaled_dot_product_attention_matches_naive() -> None:
    q, k, v = rand(2, 4, 5, 8), rand(2, 2, 7, 8), rand(2, 2, 7, 3)
    mask = rand(2, 1, 1, 7)
    y = scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    kk, vv = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    s = q @ kk.swapaxes(-1, -2) / np.sqrt(8) + mask + np.where(np.tri(5, 7, dtype=bool), 0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(y, (p / p.sum(-1, keepdims=True)) @ vv, rtol=1e-5, atol=1e-6)
    assert scaled_dot_product_attention(q.astype(np.float16), k, v).dtype == np.float16


# ------------------------------------------------------------------ RotaryEmbedding


def test_rotary_3d_position_ids_interleaved() -> None:
    inputs = {"x": rand(2, 5, 3 * 8), "cos": rand(10, 4), "sin": rand(10, 4),
              "pos": rng.integers(0, 10, (2, 5)).astype(np.int64)}
    check_node("RotaryEmbedding", inputs, opset=23, num_heads=3, interleaved=1)


def test_rotary_4d_partial_no_position_ids() -> None:
    inputs = {"x": rand(2, 3, 5, 8), "cos": rand(2, 5, 2), "sin": rand(2, 5, 2)}
    check_node("RotaryEmbedding", inputs, opset=23, rotary_embedding_dim=4)


def test_rotary_bad_rotary_dim_is_a_clear_error() -> None:
    inputs = {"x": rand(1, 2, 3, 8), "cos": rand(1, 3, 5), "sin": rand(1, 3, 5)}
    node = helper.make_node("RotaryEmbedding", list(inputs), ["y"], name="rope", rotary_embedding_dim=10)
    model = make_model([node], inputs, ["y"], opset=23)
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="RotaryEmbedding node 'rope'.*10"):
        run_ours(model, inputs)


# ------------------------------------------------------------------ SwiGLU, CausalConvWithState, LinearAttention


def test_swiglu_matches_reference() -> None:
    inputs = {"a": rand(3, 4, 6), "b": rand(3, 4, 6)}
    node = helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=1.702)
    model = make_model([node], inputs, ["y"], opset=28)
    ref = ReferenceEvaluator(model).run(None, inputs)
    assert_close(run_ours(model, inputs), ref, rtol=1e-5, atol=1e-6)


def test_causal_conv_with_state_bias_past_silu() -> None:
    inputs = {"x": rand(2, 4, 7), "w": rand(4, 1, 3), "bias": rand(4), "past": rand(2, 4, 2)}
    check_node("CausalConvWithState", inputs, n_outputs=2, opset=27, activation="silu")


def test_causal_conv_channel_mismatch_is_a_clear_error() -> None:
    inputs = {"x": rand(2, 4, 7), "w": rand(3, 1, 3)}
    node = helper.make_node("CausalConvWithState", ["x", "w"], ["y", "s"], name="conv")
    model = make_model([node], inputs, ["y", "s"], opset=27)
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="CausalConvWithState node 'conv'.*4 channels"):
        run_ours(model, inputs)


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention_gqa(rule: str) -> None:
    b, t, hq, hkv, dk, dv = 2, 5, 4, 2, 4, 3
    k = rand(b, t, hkv, dk)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    inputs = {"q": rand(b, t, hq * dk), "k": k.reshape(b, t, hkv * dk), "v": rand(b, t, hkv * dv),
              "past": rand(b, hkv, dk, dv)}
    names = ["q", "k", "v", "past"]
    if rule in ("gated", "gated_delta"):
        inputs["decay"] = -rng.random((b, t, hkv * dk if rule == "gated" else hkv)).astype(np.float32)
        names.append("decay")
    if rule in ("delta", "gated_delta"):
        inputs["beta"] = rng.random((b, t, hkv)).astype(np.float32)
        names += [""] * (5 - len(names)) + ["beta"]
    node = helper.make_node("LinearAttention", names, ["y", "state"], update_rule=rule, q_num_heads=hq,
                            kv_num_heads=hkv)
    model = make_model([node], inputs, ["y", "state"], opset=27)
    ours, ref = run_both(model, inputs)
    assert_close(ours, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ FlexAttention


def _flex_model(inputs: dict[str, np.ndarray], with_mod: bool) -> onnx.ModelProto:
    attrs = {}
    if with_mod:
        x = helper.make_tensor_value_info("s", TensorProto.FLOAT, None)
        y = helper.make_tensor_value_info("s2", TensorProto.FLOAT, None)
        cap = helper.make_tensor("cap", TensorProto.FLOAT, [], [1.5])
        nodes = [helper.make_node("Div", ["s", "cap"], ["t"]), helper.make_node("Tanh", ["t"], ["u"]),
                 helper.make_node("Mul", ["u", "cap"], ["s2"])]
        attrs["score_mod"] = helper.make_graph(nodes, "softcap", [x], [y], [cap])
    node = helper.make_node("FlexAttention", list(inputs), ["y"], domain="ai.onnx.preview", **attrs)
    model = make_model([node], inputs, ["y"], opset=26)
    model.opset_import.append(helper.make_opsetid("ai.onnx.preview", 1))
    return model


@pytest.mark.parametrize("with_mod", [False, True])
def test_flex_attention_gqa(with_mod: bool) -> None:
    inputs = {"q": rand(2, 4, 3, 8), "k": rand(2, 2, 5, 8), "v": rand(2, 2, 5, 6)}
    model = _flex_model(inputs, with_mod)
    ref = ReferenceEvaluator(model).run(None, inputs)
    assert_close(run_ours(model, inputs), ref, rtol=1e-5, atol=1e-6)


def test_flex_attention_rank_is_a_clear_error() -> None:
    inputs = {"q": rand(4, 3, 8), "k": rand(4, 5, 8), "v": rand(4, 5, 6)}
    model = _flex_model(inputs, False)
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="FlexAttention node 'y'.*4D"):
        run_ours(model, inputs)
