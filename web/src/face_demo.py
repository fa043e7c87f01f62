"""The demo page's face detection: MediaPipe's BlazeFace short-range TFLite model, decoded in numpy.

The model (`face_detection_short_range.tflite` from the mediapipe wheel)
gives raw SSD outputs: `regressors` [1, 896, 16] (box centre and size, six
keypoints, in 128-pixel input units, relative to an anchor) and
`classificators` [1, 896, 1] (logits).  MediaPipe's graph turns them into
detections with three calculators; this module does the same, with the
options of `mediapipe/modules/face_detection/face_detection.pbtxt` (short
range), so the page shows what MediaPipe would:

- SsdAnchorsCalculator: 4 layers, strides 8, 16, 16, 16, fixed anchor size,
  aspect ratio 1 plus the interpolated one -> 16x16x2 + 8x8x6 = 896 anchors;
- TensorsToDetectionsCalculator: scale 128, sigmoid scores clipped at +-100,
  min score 0.5;
- NonMaxSuppressionCalculator: weighted NMS, IoU 0.3.

Like `webinfer_demo`, it runs both inside Pyodide (the worker imports it
when the face panel is first used) and natively (the browser tests compute
the reference with it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import webinfer_demo as demo

#: The model's input side (pixels) and the SSD decoder's scale (the same 128: offsets are in input pixels).
INPUT_SIZE = 128
#: SsdAnchorsCalculator options of the short-range model: one stride per layer.
ANCHOR_STRIDES = (8, 16, 16, 16)
#: Anchors per feature-map cell and layer: aspect ratio 1.0 plus the interpolated-scale one.
ANCHORS_PER_LAYER = 2
MIN_SCORE = 0.5
SCORE_CLIP = 100.0
NMS_IOU = 0.3
NUM_KEYPOINTS = 6
#: MediaPipe's names of the six keypoints, in output order.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")


def ssd_anchor_centers(size: int = INPUT_SIZE, strides: tuple[int, ...] = ANCHOR_STRIDES) -> np.ndarray:
    """[N, 2] anchor centres (x, y) in [0, 1], in the model's output order.

    Consecutive layers with the same stride share one feature map, so their
    anchors interleave per cell (SsdAnchorsCalculator's loop).  With
    `fixed_anchor_size` every anchor is 1x1, so only the centres matter.
    """
    centers = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = ANCHORS_PER_LAYER * (last - layer)
        side = -(-size // strides[layer])
        ys, xs = np.meshgrid((np.arange(side) + 0.5) / side, (np.arange(side) + 0.5) / side, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centers.append(np.repeat(cells, per_cell, axis=0))
        layer = last
    return np.concatenate(centers).astype(np.float32)


ANCHORS = ssd_anchor_centers()


def letterbox(img: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, tuple[float, float, float]]:
    """HxWx3 uint8 -> [1, size, size, 3] float32 in [-1, 1], aspect ratio kept, zero (grey) padding.

    Bilinear sampling at pixel centres (what MediaPipe's ImageToTensor does
    for a downscale within a factor of a few).  Returns the tensor and
    (scale, pad_x, pad_y): input pixel = image pixel * scale + pad.
    """
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    ys = np.clip((np.arange(nh) + 0.5) / scale - 0.5, 0, h - 1)
    xs = np.clip((np.arange(nw) + 0.5) / scale - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    src = img.astype(np.float32)
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    resized = top * (1 - fy) + bottom * fy
    out = np.zeros((size, size, 3), dtype=np.float32)
    py, px = (size - nh) // 2, (size - nw) // 2
    out[py:py + nh, px:px + nw] = resized / 127.5 - 1.0
    return out[None], (scale, float(px), float(py))


def decode(regressors: np.ndarray, classificators: np.ndarray,
           min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs -> (boxes [K, 4] as x0, y0, x1, y1, keypoints [K, 6, 2], scores [K]) in [0, 1] input units.

    The regressors hold (x, y, w, h) then the keypoints' (x, y), as offsets
    from the anchor centre in input pixels ("reverse_output_order": x first).
    """
    raw = np.asarray(regressors, dtype=np.float32).reshape(-1, 4 + 2 * NUM_KEYPOINTS)
    logits = np.asarray(classificators, dtype=np.float32).reshape(-1)
    if raw.shape[0] != len(ANCHORS) or logits.shape[0] != len(ANCHORS):
        raise ValueError(f"expected {len(ANCHORS)} boxes and scores, got regressors {regressors.shape} and "
                         f"classificators {classificators.shape}")
    scores = (1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))).astype(np.float32)
    keep = scores >= min_score
    raw, anchors, scores = raw[keep] / INPUT_SIZE, ANCHORS[keep], scores[keep]
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return boxes, keypoints, scores


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou: float = NMS_IOU) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: each cluster (IoU > `iou` with its best box) becomes the
    score-weighted mean of its boxes and keypoints, with the best score.  BlazeFace fires on many
    neighbouring anchors per face; averaging them is steadier than keeping one."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        cluster = order[_iou(boxes[best], boxes[order]) > iou]
        cluster = cluster if cluster.size else order[:1]
        w = scores[cluster][:, None]
        out.append(((boxes[cluster] * w).sum(0) / w.sum(), (keypoints[cluster] * w[:, :, None]).sum(0) / w.sum(),
                    float(scores[best])))
        order = np.setdiff1d(order, cluster, assume_unique=True)
        order = order[np.argsort(-scores[order], kind="stable")]
    return out


def faces(regressors: np.ndarray, classificators: np.ndarray, transform: tuple[float, float, float],
          image_hw: tuple[int, int]) -> list[dict[str, Any]]:
    """Detected faces in image pixels: {x0, y0, x1, y1, score, keypoints: [[x, y] x 6]}, best first."""
    scale, pad_x, pad_y = transform
    h, w = image_hw
    out = []
    for box, kps, score in weighted_nms(*decode(regressors, classificators)):
        bx = (box * INPUT_SIZE - [pad_x, pad_y, pad_x, pad_y]) / scale
        kp = (kps * INPUT_SIZE - [pad_x, pad_y]) / scale
        out.append({"x0": float(np.clip(bx[0], 0, w)), "y0": float(np.clip(bx[1], 0, h)),
                    "x1": float(np.clip(bx[2], 0, w)), "y1": float(np.clip(bx[3], 0, h)), "score": score,
                    "keypoints": [[float(x), float(y)] for x, y in kp]})
    return out


def run_session(session: Any, img: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Face detection with a session of the model, synchronously (the native reference)."""
    x, transform = letterbox(img)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    return faces(outputs["regressors"], outputs["classificators"], transform, img.shape[:2]), outputs


async def detect_faces(sid: int, png: bytes, repeats: int) -> dict[str, Any]:
    """Face detection on a PNG with a session the page loaded: faces, latency, providers."""
    loaded = demo.SESSIONS[sid]
    names = [o.name for o in loaded.session.get_outputs()]
    if sorted(names) != ["classificators", "regressors"]:
        raise ValueError(f"{loaded.name} is not BlazeFace short-range: its outputs are {names}, "
                         "expected regressors and classificators")
    img = demo.read_png(png)
    x, transform = letterbox(img)
    outputs, times = await demo.timed_runs(loaded.session, {loaded.session.get_inputs()[0].name: x}, repeats)
    out = dict(zip(names, outputs))
    h, w = img.shape[:2]
    return {"id": sid, "width": w, "height": h,
            "faces": faces(out["regressors"], out["classificators"], transform, (h, w)),
            "keypoint_names": list(KEYPOINT_NAMES), "times_ms": times, "latency": demo._stats(times),
            "input_shape": list(x.shape), "providers": demo.short_names(loaded.session.get_providers()),
            "gpu": demo.gpu_work(loaded.session)}


async def api_face(msg: Any) -> Any:
    m = msg.to_py()
    return demo._to_js(demo._clean(await detect_faces(int(m["id"]), bytes(m["png"]), int(m.get("repeats", 1)))))
