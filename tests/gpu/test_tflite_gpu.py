"""MediaPipe .tflite models on the webgpu provider against LiteRT (XNNPACK): every node on the GPU.

All 13 models LiteRT runs (conv, depthwise, pad, pools, residual adds,
PRelu, hard-swish, squeeze-excite, bilinear resize, depth-to-space, the
Convolution2DTransposeBias custom op as ConvTranspose); on software Vulkan
each takes 0.5-5 s, mostly pipeline compilation.
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


#: All 13 MediaPipe models LiteRT runs, with the input range their pre-processing produces, and the
#: tolerance (relative to max(|output|, 1)): 1e-4, or 1e-3 on the two whose outputs are pixel-scale
#: segmentation logits/masks (measured on lavapipe: 2.5e-4 and 5.2e-4 against webinfer's cpu).
MODELS = [("face_detection_short_range", -1.0, 1.0, 1e-4), ("selfie_segmentation_landscape", 0.0, 1.0, 1e-4),
          ("face_detection_full_range_sparse", -1.0, 1.0, 1e-4), ("face_landmark", -1.0, 1.0, 1e-4),
          ("hand_landmark_full", -1.0, 1.0, 1e-4), ("hand_landmark_lite", -1.0, 1.0, 1e-4),
          ("hand_recrop", -1.0, 1.0, 1e-4), ("iris_landmark", -1.0, 1.0, 1e-4),
          ("palm_detection_full", -1.0, 1.0, 1e-4), ("palm_detection_lite", -1.0, 1.0, 1e-4),
          ("pose_detection", -1.0, 1.0, 1e-4), ("pose_landmark_full", -1.0, 1.0, 1e-3),
          ("selfie_segmentation", -1.0, 1.0, 1e-3)]


@pytest.mark.parametrize("name,low,high,tol", MODELS)
def test_tflite_model_runs_on_gpu(gpu_device: Any, name: str, low: float, high: float, tol: float) -> None:
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
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(float(np.abs(want).max()), 1.0))
    stats = gpu.device_stats()
    assert stats["nodes_on_gpu"] == stats["nodes_total"], stats["fallback_reasons"]
    assert stats["submits_per_run"] == 1
    assert stats["readbacks_per_run"] == len(ours)


@pytest.mark.parametrize("op,attrs,shape", [("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, (2, 12, 3, 5)),
                                            ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, (1, 8, 4, 3)),
                                            ("SpaceToDepth", {"blocksize": 3}, (2, 2, 6, 9))])
def test_depth_space_on_gpu(gpu_device: Any, op: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    """DepthToSpace (both modes) and SpaceToDepth as one strided copy on the GPU: exactly onnxruntime's."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    gpu = webinfer.InferenceSession(data, providers=["webgpu"])
    got = gpu.run(None, {"x": x})[0]
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    assert gpu.device_stats()["nodes_on_gpu"] == 1
