"""NonMaxSuppression against onnxruntime on random boxes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import check_node, make_model

RNG = np.random.default_rng(11)


def _boxes(batches: int, n: int, center: int) -> np.ndarray:
    xy = RNG.random((batches, n, 2)).astype(np.float32) * 10
    wh = RNG.random((batches, n, 2)).astype(np.float32) * 4 + 0.5
    if center:
        return np.concatenate([xy, wh], axis=-1)
    corner = np.concatenate([xy, xy + wh], axis=-1)
    flip = RNG.random((batches, n, 1)) < 0.3  # any diagonal pair of corners is allowed
    return np.where(flip, corner[..., [2, 3, 0, 1]], corner)


@pytest.mark.parametrize("center", [0, 1])
def test_nms_matches_onnxruntime(center: int) -> None:
    boxes = _boxes(2, 60, center)
    scores = RNG.random((2, 3, 60)).astype(np.float32)
    scores[0, 0, :10] = scores[0, 0, 10]  # ties: lower box index first
    inits = {"max": np.array([8], np.int64), "iou": np.array([0.3], np.float32), "floor": np.array([0.2], np.float32)}
    check_node("NonMaxSuppression", {"boxes": boxes, "scores": scores}, initializers=inits, center_point_box=center)


def test_nms_defaults_and_no_threshold() -> None:
    boxes, scores = _boxes(1, 40, 0), RNG.random((1, 2, 40)).astype(np.float32)
    check_node("NonMaxSuppression", {"boxes": boxes, "scores": scores})
    check_node("NonMaxSuppression", {"boxes": boxes, "scores": scores},
               initializers={"max": np.array([40], np.int64), "iou": np.array([0.0], np.float32)})


def test_nms_mismatched_shapes_name_node() -> None:
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["y"], name="nms")
    model = make_model([node], {"boxes": _boxes(1, 5, 0), "scores": np.zeros((1, 2, 6), np.float32)}, ["y"])
    with pytest.raises(ShapeInferenceError, match=r"NonMaxSuppression node 'nms'.*\[1,5,4\].*\[1,2,6\]"):
        webinfer.InferenceSession(model.SerializeToString())
