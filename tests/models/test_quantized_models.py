"""Quantised and float16 real models (tools/models.py: minilm_int8, resnet50_qdq, mobilenetv3_small_qdq,
minilm_fp16, mobilenetv3_small_fp16) against onnxruntime on the same files.

Dynamic quantisation magnifies ulp-level differences (a value moving across a
rounding boundary of the activations' quantisation), so the int8 MiniLM is
judged by the cosine of its sentence embeddings (>= 0.99), the classifiers by
top-1 agreement; float16 files within float16's tolerance.  The fused
quantised ops are also checked to be in the plan (else the speed is lost
silently).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import webinfer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import models as model_builder  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.torch,
              pytest.mark.skipif(importlib.util.find_spec("torch") is None or
                                 importlib.util.find_spec("transformers") is None,
                                 reason="exporting the float32 originals needs torch and transformers "
                                        "(installed by tools/dev.sh)")]


def _run_both(name: str, feed: dict[str, np.ndarray]) -> tuple[webinfer.InferenceSession, list, list]:
    data = model_builder.model_path(name).read_bytes()
    ours = webinfer.InferenceSession(data, providers=["cpu"])
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return ours, ours.run(None, feed), ref.run(None, feed)


def _ops(sess: webinfer.InferenceSession) -> set[str]:
    return {f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in sess._main.graph.nodes}


def _minilm_feed(seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    mask = np.ones((2, seq), dtype=np.int64)
    mask[1, seq // 2:] = 0
    return {"input_ids": rng.integers(1000, 20000, size=(2, seq)).astype(np.int64), "attention_mask": mask}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("seq", [16, 128])
def test_minilm_int8_embeddings_match_onnxruntime(seq: int) -> None:
    sess, ours, ref = _run_both("minilm_int8", _minilm_feed(seq))
    assert "webinfer.MatMulIntegerScaled" in _ops(sess) and "MatMulInteger" not in _ops(sess)
    assert ours[1].dtype == ref[1].dtype == np.float32
    assert np.min(_cosines(ours[1], ref[1])) >= 0.99


@pytest.mark.parametrize("name", ["resnet50_qdq", "mobilenetv3_small_qdq"])
def test_qdq_classifiers_agree_with_onnxruntime(name: str) -> None:
    rng = np.random.default_rng(5)
    data = model_builder.model_path(name).read_bytes()
    ours = webinfer.InferenceSession(data, providers=["cpu"])
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert any(n.attrs.get("activation") == "QuantizeGrid" for n in ours._main.graph.nodes
               if n.op_type == "FusedConv")
    for _ in range(3):
        x = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
        a, b = ours.run(None, {"input": x})[0], ref.run(None, {"input": x})[0]
        assert np.argmax(a) == np.argmax(b)
        np.testing.assert_allclose(a, b, atol=0.05 * float(np.max(np.abs(b))))


def test_minilm_fp16_matches_onnxruntime() -> None:
    sess, ours, ref = _run_both("minilm_fp16", _minilm_feed(32))
    assert all(t.array.dtype != np.float16 for t in sess._main.graph.initializers.values())
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(ours[0], ref[0], atol=2e-2 * float(np.max(np.abs(ref[0]))))
    assert np.min(_cosines(ours[1], ref[1])) >= 0.999


def test_mobilenetv3_small_fp16_matches_onnxruntime() -> None:
    x = np.random.default_rng(6).standard_normal((1, 3, 224, 224), dtype=np.float32)
    sess, ours, ref = _run_both("mobilenetv3_small_fp16", {"input": x})
    assert ours[0].dtype == ref[0].dtype == np.float32
    assert np.argmax(ours[0]) == np.argmax(ref[0])
    np.testing.assert_allclose(ours[0], ref[0], atol=2e-2 * float(np.max(np.abs(ref[0]))))
