"""MediaPipe .tflite models on the webgpu provider against LiteRT (XNNPACK): every node on the GPU.

face_detection_short_range (conv, depthwise, pad, max pool, residual adds)
and selfie_segmentation_landscape (hard-swish, squeeze-excite, bilinear
resize, the Convolution2DTransposeBias custom op as ConvTranspose) are the
two smallest; on software Vulkan a run takes ~0.2 s after ~3 s of pipeline
compilation.  Tolerance: 1e-4 relative to max(|output|, 1), LiteRT's own
XNNPACK-vs-reference spread on these models (tests/models/test_tflite_models.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webinfer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import models as model_builder  # noqa: E402

interpreter = pytest.importorskip("ai_edge_litert.interpreter",
                                  reason="ai-edge-litert is the reference (the test extra installs it)")

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def blocky_image(shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """16x16 blocks of random colour, so the segmentation model's mask is not all zero."""
    rng = np.random.default_rng(0)
    n, h, w, c = shape
    small = rng.uniform(low, high, (n, -(-h // 16), -(-w // 16), c)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 16, 1), 16, 2)[:, :h, :w])


@pytest.mark.parametrize("name,low,high", [("face_detection_short_range", -1.0, 1.0),
                                           ("selfie_segmentation_landscape", 0.0, 1.0)])
def test_tflite_model_runs_on_gpu(gpu_device: Any, name: str, low: float, high: float) -> None:
    path = {p.stem: p for p in model_builder.build_mediapipe(model_builder.cache_dir())}[name]
    gpu = webinfer.InferenceSession(str(path), providers=["webgpu", "cpu"])
    feed = {i.name: blocky_image(tuple(i.shape), low, high) for i in gpu.get_inputs()}
    ours = gpu.run(None, feed)
    it = interpreter.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feed[d["name"]])
    it.invoke()
    ref = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    for out, got in zip(gpu.get_outputs(), ours):
        want = ref[out.name]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(float(np.abs(want).max()), 1.0))
    stats = gpu.device_stats()
    assert stats["nodes_on_gpu"] == stats["nodes_total"], stats["fallback_reasons"]
    assert stats["submits_per_run"] == 1
    assert stats["readbacks_per_run"] == len(ours)
