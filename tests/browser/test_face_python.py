"""The face demo's decoding (web/src/face_demo.py), natively: anchors, box decoding, weighted NMS, letterbox.

The anchor reference below follows MediaPipe's SsdAnchorsCalculator loop
cell by cell, written independently of face_demo's vectorised form.
"""

from __future__ import annotations

import numpy as np
import pytest

import webinfer

from .conftest import _import_path, build_wasm, demo_py
from .harness import ROOT

face_py = _import_path("face_demo", ROOT / "web" / "src" / "face_demo.py")


def mediapipe_anchors(strides: list[int], size: int = 128) -> np.ndarray:
    """SsdAnchorsCalculator::GenerateAnchors' centres with fixed_anchor_size (every anchor 1x1)."""
    out = []
    layer = 0
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0, plus the interpolated-scale anchor (interpolated_scale_aspect_ratio 1)
            last += 1
        side = int(np.ceil(size / strides[layer]))
        for y in range(side):
            for x in range(side):
                out.extend([((x + 0.5) / side, (y + 0.5) / side)] * per_cell)
        layer = last
    return np.array(out, dtype=np.float32)


def test_anchors_match_mediapipe_short_range() -> None:
    ref = mediapipe_anchors([8, 16, 16, 16])
    assert face_py.ANCHORS.shape == ref.shape == (896, 2)
    np.testing.assert_array_equal(face_py.ANCHORS, ref)


def test_decode_places_boxes_and_keypoints_relative_to_anchors() -> None:
    rng = np.random.default_rng(0)
    reg = rng.normal(0, 4, (1, 896, 16)).astype(np.float32)
    logits = rng.normal(-6, 1, (1, 896, 1)).astype(np.float32)
    logits[0, [100, 700]] = [[3.0], [150.0]]  # one beyond the +-100 clip
    boxes, kps, scores = face_py.decode(reg, logits)
    assert len(scores) == 2
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([3.0, 100.0]))), rtol=1e-6)
    for row, i in enumerate([100, 700]):
        r, (ax, ay) = reg[0, i] / 128, face_py.ANCHORS[i]
        np.testing.assert_allclose(boxes[row], [r[0] + ax - r[2] / 2, r[1] + ay - r[3] / 2,
                                                r[0] + ax + r[2] / 2, r[1] + ay + r[3] / 2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(kps[row], r[4:].reshape(6, 2) + [ax, ay], rtol=1e-5, atol=1e-6)


def test_weighted_nms_averages_a_cluster_and_keeps_separate_faces() -> None:
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]], dtype=np.float32)
    kps = np.stack([np.full((6, 2), v, dtype=np.float32) for v in (0.2, 0.22, 0.7)])
    scores = np.array([0.9, 0.6, 0.7], dtype=np.float32)
    out = face_py.weighted_nms(boxes, kps, scores)
    assert [round(s, 4) for _, _, s in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0][0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(out[0][1], np.full((6, 2), (0.9 * 0.2 + 0.6 * 0.22) / 1.5), rtol=1e-6)
    np.testing.assert_allclose(out[1][0], boxes[2], rtol=1e-6)


def test_letterbox_keeps_the_aspect_ratio_and_maps_back() -> None:
    img = np.random.default_rng(1).integers(0, 256, (60, 240, 3), dtype=np.uint8)
    x, (scale, px, py) = face_py.letterbox(img)
    assert x.shape == (1, 128, 128, 3) and x.dtype == np.float32
    assert scale == pytest.approx(128 / 240) and px == 0 and py == 48
    assert np.all(x[0, :48] == 0) and np.all(x[0, 80:] == 0)
    assert x[0, 48:80].min() >= -1 and x[0, 48:80].max() <= 1 and x[0, 48:80].std() > 0.3
    # A face covering the whole content area maps back to the whole image.
    reg = np.zeros((1, 896, 16), dtype=np.float32)
    logits = np.full((1, 896, 1), -20.0, dtype=np.float32)
    i = int(np.argmin(np.abs(face_py.ANCHORS - 0.5).sum(1)))
    ax, ay = face_py.ANCHORS[i] * 128
    reg[0, i, :4] = [64 - ax, 64 - ay, 128, 32]
    logits[0, i] = 5.0
    (face,) = face_py.faces(reg, logits, (scale, px, py), img.shape[:2])
    assert [face[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx([0, 0, 240, 60], abs=1e-3)


def test_wrong_outputs_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 896 boxes"):
        face_py.decode(np.zeros((1, 2944, 16), np.float32), np.zeros((1, 2944, 1), np.float32))


def test_photo_faces_match_litert() -> None:
    """The bundled photo, decoded from LiteRT's outputs and from webinfer's: the same one face, to 0.5 pixel
    (the page's faces are checked against webinfer's in test_face_demo.py)."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter",
                                      reason="ai-edge-litert is the reference (the test extra installs it)")
    report = build_wasm.Report()
    img = demo_py.read_png(build_wasm.face_image(build_wasm.cache_root(), None, report))
    model = build_wasm.face_model_file(report)
    x, transform = face_py.letterbox(img)
    it = interpreter.Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}
    want = face_py.faces(ref["regressors"], ref["classificators"], transform, img.shape[:2])
    got, _ = face_py.run_session(webinfer.InferenceSession(str(model), providers=["cpu"]), img)
    assert len(got) == len(want) == 1
    for k in ("x0", "y0", "x1", "y1"):
        assert abs(got[0][k] - want[0][k]) <= 0.5, (k, got[0], want[0])
    np.testing.assert_allclose(got[0]["keypoints"], want[0]["keypoints"], rtol=0, atol=0.5)
    assert abs(got[0]["score"] - want[0]["score"]) <= 1e-3
