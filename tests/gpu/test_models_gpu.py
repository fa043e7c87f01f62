"""Real models on the webgpu provider against the cpu provider: all-MiniLM-L6-v2 and PP-OCRv4 det.

MiniLM: every MatMul, Softmax, LayerNorm and attention node runs on the GPU,
a run reads back at most one buffer per output, and a new sequence length
compiles no new pipelines.  Models come from tools/models.py (built into the
cache dir by tools/dev.sh); sizes are small because software Vulkan is slow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webinfer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import models as model_builder  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None or
                                 importlib.util.find_spec("transformers") is None,
                                 reason="exporting MiniLM needs torch and transformers (installed by tools/dev.sh)")

#: Ops whose placement on the GPU the issue requires for MiniLM (before and after fusion).
HEAVY = {"MatMul", "FusedMatMul", "Gemm", "Softmax", "LayerNormalization", "MultiHeadAttention", "Attention"}


def assert_close(got: list[np.ndarray], want: list[np.ndarray], rtol: float) -> None:
    """Outputs agree to `rtol` relative to each output's largest magnitude."""
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def minilm_feed(seq: int, batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    ids = rng.integers(1000, 20000, size=(batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[-1, seq // 2:] = 0  # a padded sentence exercises the attention mask
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def minilm(gpu_device: Any) -> tuple[bytes, Any, Any]:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("exporting MiniLM needs torch and transformers (installed by tools/dev.sh)")
    data = model_builder.model_path("minilm").read_bytes()
    return data, webinfer.InferenceSession(data, providers=["webgpu", "cpu"]), webinfer.InferenceSession(data)


@pytest.mark.torch
@needs_torch
def test_minilm_matches_cpu_on_gpu(minilm: tuple[bytes, Any, Any]) -> None:
    _, gpu, cpu = minilm
    feed = minilm_feed(12)
    outs = gpu.run(None, feed)
    assert_close(outs, cpu.run(None, feed), 1e-3)
    placement = gpu.get_placement()
    heavy = [n for n in gpu.graph.nodes if n.op_type in HEAVY]
    assert heavy, "the optimized graph has no matrix products"
    off = [f"{n.op_type} {n.name}" for n in heavy if placement[n.name or n.outputs[0]] != "webgpu"]
    assert not off, f"on the cpu: {off}"
    stats = gpu.device_stats()
    assert stats["readbacks_per_run"] <= len(outs), stats
    assert stats["submits_per_run"] == 1, stats  # one command encoder: no GPU result is needed mid-run
    assert stats["dispatches_per_run"] > 0


@pytest.mark.torch
@needs_torch
def test_minilm_new_sequence_length_compiles_nothing(minilm: tuple[bytes, Any, Any]) -> None:
    _, gpu, cpu = minilm
    gpu.run(None, minilm_feed(8))
    device = next(d for d in gpu._devices if d.name == "webgpu")
    compiled = len(device.programs)
    feed = minilm_feed(20)
    outs = gpu.run(None, feed)
    assert len(device.programs) == compiled
    assert_close(outs, cpu.run(None, feed), 1e-3)


def test_ppocr_det_matches_cpu(gpu_device: Any) -> None:
    """PP-OCRv4 det (Conv/BatchNorm/HardSigmoid/Resize/ConvTranspose) at a small size."""
    path = model_builder.model_path("ppocr_det")
    data = path.read_bytes()
    gpu = webinfer.InferenceSession(data, providers=["webgpu", "cpu"])
    cpu = webinfer.InferenceSession(data)
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 64, 96), dtype=np.float32)
    assert_close(gpu.run(None, {"x": x}), cpu.run(None, {"x": x}), 1e-3)
    stats = gpu.device_stats()
    assert stats["nodes_on_gpu"] == stats["nodes_total"], stats["fallback_reasons"]
    assert stats["readbacks_per_run"] == 1
