"""Detection: NonMaxSuppression.

Greedy NMS per (batch, class): candidates above the score threshold in
decreasing score order (ties: lower box index first); each pick suppresses,
in one vectorised step, every later candidate whose IoU with it is strictly
above the threshold.  The Python loop runs once per *selected* box, at most
`max_output_boxes_per_class` times, never over all pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes
from ..ir import Type
from ..shapes import InferContext, dims_compatible, shape_str, tensor
from .registry import OpContext, op


def _nms_rule(ctx: InferContext) -> list[Type | None]:
    boxes, scores = ctx.shape(0), ctx.shape(1)
    if boxes is not None and (len(boxes) != 3 or not dims_compatible(boxes[2], 4)):
        raise ctx.error(f"boxes must be [num_batches, num_boxes, 4], got shape {shape_str(boxes)}")
    if scores is not None and len(scores) != 3:
        raise ctx.error(f"scores must be [num_batches, num_classes, num_boxes], got shape {shape_str(scores)}")
    if boxes is not None and scores is not None and not (
            dims_compatible(boxes[0], scores[0]) and dims_compatible(boxes[1], scores[2])):
        raise ctx.error(f"boxes {shape_str(boxes)} and scores {shape_str(scores)} disagree on the number of "
                        "batches or boxes")
    if ctx.attr("center_point_box", 0) not in (0, 1):
        raise ctx.error(f"center_point_box must be 0 or 1, got {ctx.attr('center_point_box')}")
    return [tensor(dtypes.INT64, (None, 3))]


def corners(boxes: np.ndarray, center_point_box: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y_min, x_min, y_max, x_max) of boxes given as [y1, x1, y2, x2] (any diagonal) or
    [x_center, y_center, width, height]."""
    if center_point_box:
        xc, yc, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2] / 2, boxes[..., 3] / 2
        return yc - h, xc - w, yc + h, xc + w
    y1, x1, y2, x2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)


def _select(y0: np.ndarray, x0: np.ndarray, y1: np.ndarray, x1: np.ndarray, area: np.ndarray,
            order: np.ndarray, limit: int, iou_threshold: float) -> list[int]:
    """Greedy selection over candidates `order` (best first); returns box indices."""
    alive = np.ones(len(order), dtype=bool)
    picked: list[int] = []
    pos = 0
    while len(picked) < limit:
        rest = np.flatnonzero(alive[pos:])
        if not len(rest):
            break
        pos += int(rest[0])
        i = order[pos]
        picked.append(int(i))
        alive[pos] = False
        later = order[pos + 1:]
        iw = np.minimum(x1[i], x1[later]) - np.maximum(x0[i], x0[later])
        ih = np.minimum(y1[i], y1[later]) - np.maximum(y0[i], y0[later])
        inter = iw * ih
        union = area[i] + area[later] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = (iw > 0) & (ih > 0) & (area[i] > 0) & (area[later] > 0) & (union > 0) & (
                inter / union > iou_threshold)
        alive[pos + 1:] &= ~overlap
    return picked


@op("NonMaxSuppression", since=10, infer=_nms_rule)
def non_max_suppression(ctx: OpContext) -> Any:
    """Selected boxes as rows [batch_index, class_index, box_index] (int64), per class best first."""
    center = ctx.attr("center_point_box", 0)

    def run(boxes: np.ndarray, scores: np.ndarray, max_per_class: np.ndarray | None = None,
            iou_threshold: np.ndarray | None = None, score_threshold: np.ndarray | None = None) -> tuple[np.ndarray]:
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
                or scores.shape[2] != boxes.shape[1]:
            raise ValueError(f"boxes {list(boxes.shape)} must be [num_batches, num_boxes, 4] and scores "
                             f"{list(scores.shape)} [num_batches, num_classes, num_boxes]")
        limit = int(max_per_class.reshape(-1)[0]) if max_per_class is not None and max_per_class.size else 0
        iou = float(iou_threshold.reshape(-1)[0]) if iou_threshold is not None and iou_threshold.size else 0.0
        if not 0.0 <= iou <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou}")
        floor = score_threshold.reshape(-1)[0] if score_threshold is not None and score_threshold.size else None
        rows: list[tuple[int, int, int]] = []
        if limit > 0:
            y0, x0, y1, x1 = corners(boxes, center)
            area = (y1 - y0) * (x1 - x0)
            for b in range(boxes.shape[0]):
                for c in range(scores.shape[1]):
                    s = scores[b, c]
                    cand = np.flatnonzero(s > floor) if floor is not None else np.arange(len(s))
                    order = cand[np.argsort(-s[cand], kind="stable")]
                    picked = _select(y0[b], x0[b], y1[b], x1[b], area[b], order, limit, iou)
                    rows.extend((b, c, i) for i in picked)
        return (np.array(rows, dtype=np.int64).reshape(-1, 3),)

    return run
