"""Box arithmetic shared by the detection decoders: IoU, NMS, mapping back to the source frame."""
from __future__ import annotations

import numpy as np

from .results import FrameContext


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with many."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, max_detections: int = 100,
        class_ids: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first. Per class if class_ids given."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if class_ids is not None and len(boxes):
        # Shift each class into its own coordinate range so boxes of different classes never overlap.
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (np.asarray(class_ids, np.float32).reshape(-1, 1) * span)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)


def to_source_boxes(boxes_xyxy: np.ndarray, ctx: FrameContext) -> np.ndarray:
    """Model-input pixel boxes -> source pixel boxes, clipped to the frame."""
    b = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    x0, y0 = ctx.transform.to_source(b[:, 0], b[:, 1])
    x1, y1 = ctx.transform.to_source(b[:, 2], b[:, 3])
    w, h = ctx.source_size
    out = np.stack([x0, y0, x1, y1], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out
