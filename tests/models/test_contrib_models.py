"""Real files written by onnxruntime's own tools, run by webinfer and by onnxruntime.

- MiniLM with 4-bit `MatMulNBits` weights (onnxruntime's MatMulNBitsQuantizer, as transformers.js
  q4 files): webinfer's dequantized float32 product agrees with onnxruntime's blocked kernels to
  float rounding, so the test asks for near-exact outputs (atol 1e-4 of the largest magnitude)
  and, as the issue states for embeddings, cosine >= 0.99.
- The same file turned float16 by onnxruntime's converter (keep_io_types: float32 interface), as
  transformers.js q4f16 files: float16 activations round differently in each runtime (~1e-3
  relative), so cosine >= 0.999.
- MiniLM fused by `onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` at
  opt_level 0 (the Python fusions alone: EmbedLayerNormalization, Attention,
  SkipLayerNormalization, BiasGelu) and 1: float32 throughout, atol 1e-4 of the largest magnitude.
- That fused MiniLM quantized by `quantize_dynamic` (QEmbedLayerNormalization, QAttention,
  DynamicQuantizeLinear, MatMulInteger): dynamic quantization magnifies ulp-level differences
  (one activation rounding the other way at a uint8 boundary), so the sentence embeddings are
  compared by cosine >= 0.99 (the issue's tolerance for such files) and every token's hidden
  state by >= 0.98.  For scale: each runtime's output is at cosine ~0.89 per token (0.92 per
  sentence) from the float32 fused model's, ten times farther than from each other.
- MobileNetV3-small quantized statically in QOperator format (QLinearConv, QLinearAdd,
  QLinearMul, QLinearGlobalAveragePool, QGemm): integer kernels, top-1 equal and outputs within
  one output quantum.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import webinfer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import models as model_builder  # noqa: E402

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None or
                                 importlib.util.find_spec("transformers") is None,
                                 reason="exporting MiniLM needs torch and transformers (installed by tools/dev.sh)")


def _both(path: Path, feed: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = path.read_bytes()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feed)
    ours = webinfer.InferenceSession(data, providers=["cpu"]).run(None, feed)
    return ours, ref


def _minilm_feed(seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    mask = np.ones((2, seq), dtype=np.int64)
    mask[1, seq // 2:] = 0  # a padded second sentence exercises the attention mask
    return {"input_ids": rng.integers(1000, 20000, size=(2, seq)).astype(np.int64), "attention_mask": mask}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2, b2 = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a2 * b2).sum(-1) / np.linalg.norm(a2, axis=-1) / np.linalg.norm(b2, axis=-1)


def _assert_near(ours: list[np.ndarray], ref: list[np.ndarray], rel: float) -> None:
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=rel * float(np.abs(b).max()))


@pytest.fixture(scope="module")
def minilm_q4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(model_builder.model_path("minilm"))), block_size=32,
                                     is_symmetric=False)
    quantizer.process()
    out = tmp_path_factory.mktemp("contrib") / "minilm_q4.onnx"
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    assert sum(n.op_type == "MatMulNBits" for n in onnx.load(str(out)).graph.node) == 36
    return out


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("seq", [16, 128])
def test_minilm_matmul_nbits_matches_onnxruntime(minilm_q4: Path, seq: int) -> None:
    ours, ref = _both(minilm_q4, _minilm_feed(seq))
    for a, b in zip(ours, ref):
        assert _cosines(a, b).min() >= 0.99
    _assert_near(ours, ref, 1e-4)


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
def test_minilm_q4f16_matches_onnxruntime(minilm_q4: Path, tmp_path: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = tmp_path / "minilm_q4f16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(minilm_q4)), keep_io_types=True), str(path))
    nbits = [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 36
    ours, ref = _both(path, _minilm_feed(32))
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype == np.float32
        assert _cosines(a, b).min() >= 0.999


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize("opt_level", [0, 1])
def test_minilm_optimized_by_onnxruntime_matches(tmp_path: Path, opt_level: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(model_builder.model_path("minilm")), model_type="bert", num_heads=12,
                           hidden_size=384, opt_level=opt_level, use_gpu=False)
    ops = {n.op_type for n in fused.model.graph.node if n.domain == "com.microsoft"}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops
    path = tmp_path / "minilm_fused.onnx"
    fused.save_model_to_file(str(path))
    for seq in (16, 64):
        ours, ref = _both(path, _minilm_feed(seq))
        _assert_near(ours, ref, 1e-4)


@pytest.mark.slow
@pytest.mark.torch
@needs_torch
def test_minilm_fused_then_dynamic_int8_matches_onnxruntime(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    fused = tmp_path / "minilm_fused.onnx"
    optimize_model(str(model_builder.model_path("minilm")), model_type="bert", num_heads=12, hidden_size=384,
                   opt_level=1, use_gpu=False).save_model_to_file(str(fused))
    quantized = tmp_path / "minilm_fused_int8.onnx"
    quantize_dynamic(str(fused), str(quantized), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    assert "QAttention" in {n.op_type for n in onnx.load(str(quantized)).graph.node}
    for seq in (16, 64):
        ours, ref = _both(quantized, _minilm_feed(seq))
        hidden, sentence = (_cosines(a, b).min() for a, b in zip(ours, ref))
        assert sentence >= 0.99 and hidden >= 0.98, (sentence, hidden)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="exporting MobileNetV3-small needs torch (installed by tools/dev.sh)")
def test_mobilenet_qoperator_matches_onnxruntime(tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = model_builder.model_path("mobilenetv3_small")
    name = onnx.load(str(src)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{name: np.random.default_rng(i).normal(0, 1, (1, 3, 224, 224)).astype(np.float32)}
                               for i in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    out = tmp_path / "mobilenetv3_small_qop.onnx"
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node if n.domain == "com.microsoft"}
    assert {"QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QGemm"} <= ops
    for seed in (9, 10):
        feed = {name: np.random.default_rng(seed).normal(0, 1, (1, 3, 224, 224)).astype(np.float32)}
        ours, ref = _both(out, feed)
        assert ours[0].argmax() == ref[0].argmax()
        quantum = float(np.abs(np.diff(np.unique(ref[0]))).min())  # the output's DequantizeLinear step
        np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=quantum * 1.01)
