"""Postprocess adapters: pure functions from dequantized model outputs to results.

Detections are mapped from model-input pixels back to source-image pixels through the
``FrameTransform`` of the preprocessing (stretch, letterbox or centre crop), so boxes land on
the original frame.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError, UsageError
from ..preprocess import FrameTransform


@dataclasses.dataclass(frozen=True)
class FrameContext:
    """What an adapter needs to know about the frame besides the outputs."""

    transform: FrameTransform
    source_size: tuple[int, int]  # (width, height) of the captured frame
    input_size: tuple[int, int]  # (width, height) of the model input
    labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Classification:
    """Top-k classes, best first."""

    class_ids: tuple[int, ...]
    scores: tuple[float, ...]
    labels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "classification",
                "top": [{"class_id": c, "label": lab, "score": s}
                        for c, s, lab in zip(self.class_ids, self.scores, self.labels)]}

    def caption(self) -> str:
        return f"{self.labels[0]} {self.scores[0]:.2f}" if self.class_ids else ""


@dataclasses.dataclass(frozen=True)
class Detections:
    """Boxes as (x0, y0, x1, y1) in source-image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "detections",
                "detections": [{"box": [round(float(v), 2) for v in b], "score": float(s), "class_id": int(c),
                                "label": lab}
                               for b, s, c, lab in zip(self.boxes, self.scores, self.class_ids, self.labels)]}


@dataclasses.dataclass(frozen=True)
class RawOutputs:
    """For models without a known head: output shapes and value ranges only."""

    summary: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "raw", "outputs": list(self.summary)}


def _label(labels: Sequence[str], i: int) -> str:
    return labels[i] if 0 <= i < len(labels) else str(i)


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------
def classify_topk(scores: np.ndarray, labels: Sequence[str] = (), k: int = 5) -> Classification:
    """Top-k of a (1, C) or (C,) score vector; scores are reported as the model outputs them."""
    flat = np.asarray(scores, np.float32).reshape(-1)
    if flat.size == 0:
        raise ModelError("classification output is empty")
    k = min(k, flat.size)
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    return Classification(tuple(int(i) for i in top), tuple(float(flat[i]) for i in top),
                          tuple(_label(labels, int(i)) for i in top))


# --------------------------------------------------------------------------------------------
# Box utilities
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Detection heads
# --------------------------------------------------------------------------------------------
def decode_ssd(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, count: np.ndarray | float,
               ctx: FrameContext, score_threshold: float = 0.5) -> Detections:
    """TFLite_Detection_PostProcess outputs: boxes (1,N,4) normalised ymin,xmin,ymax,xmax; classes; scores; count."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    c = np.asarray(classes, np.float32).reshape(-1)
    s = np.asarray(scores, np.float32).reshape(-1)
    n = min(int(np.asarray(count).reshape(-1)[0]), len(s), len(b))
    b, c, s = b[:n], c[:n], s[:n]
    keep = s >= score_threshold
    b, c, s = b[keep], c[keep].astype(np.int64), s[keep]
    w, h = ctx.input_size
    xyxy = np.stack([b[:, 1] * w, b[:, 0] * h, b[:, 3] * w, b[:, 2] * h], axis=1)
    return Detections(to_source_boxes(xyxy, ctx), s, c, tuple(_label(ctx.labels, int(i)) for i in c))


def decode_yolo(output: np.ndarray, ctx: FrameContext, score_threshold: float = 0.25,
                iou_threshold: float = 0.45, max_detections: int = 100, objectness: bool | None = None,
                normalized: bool | None = None) -> Detections:
    """Raw YOLO head -> NMS'ed detections.

    Accepts (1, N, 5+C) rows of cx, cy, w, h, objectness, class scores (YOLOv5 style) and the
    transposed (1, 4+C, N) layout without objectness (YOLOv8 style). ``objectness`` and
    ``normalized`` (coordinates in 0..1 of the input rather than input pixels) are detected from
    the layout and values unless given.
    """
    a = np.asarray(output, np.float32)
    if a.ndim == 3:
        a = a[0]
    if a.ndim != 2:
        raise ModelError(f"YOLO output must be (1, N, 5+C) or (1, 4+C, N), got shape {np.shape(output)}")
    transposed = a.shape[0] < a.shape[1]
    if transposed:
        a = a.T
    if objectness is None:
        objectness = not transposed
    first_class = 5 if objectness else 4
    if a.shape[1] <= first_class:
        raise ModelError(f"YOLO output rows have {a.shape[1]} values; expected box(4)"
                         f"{' + objectness' if objectness else ''} + at least one class score")
    cls_scores = a[:, first_class:]
    if objectness:
        cls_scores = cls_scores * a[:, 4:5]
    class_ids = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(a)), class_ids]
    keep = scores >= score_threshold
    a, scores, class_ids = a[keep], scores[keep], class_ids[keep]
    cx, cy, bw, bh = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    if normalized is None:
        normalized = bool(len(xyxy)) and float(np.abs(xyxy).max()) <= 1.5
    if normalized:
        w, h = ctx.input_size
        xyxy = xyxy * np.asarray([w, h, w, h], np.float32)
    idx = nms(xyxy, scores, iou_threshold, max_detections, class_ids)
    xyxy, scores, class_ids = xyxy[idx], scores[idx], class_ids[idx]
    return Detections(to_source_boxes(xyxy, ctx), scores, class_ids.astype(np.int64),
                      tuple(_label(ctx.labels, int(i)) for i in class_ids))


# --------------------------------------------------------------------------------------------
# Registry: which adapter a model gets
# --------------------------------------------------------------------------------------------
Adapter = Callable[[list, FrameContext], Any]


def _classify(outputs: list, ctx: FrameContext) -> Classification:
    return classify_topk(outputs[0], ctx.labels, k=5)


def _ssd(outputs: list, ctx: FrameContext) -> Detections:
    if len(outputs) != 4:
        raise ModelError(f"SSD post-processing expects 4 outputs (boxes, classes, scores, count), got {len(outputs)}")
    return decode_ssd(*outputs, ctx)


def _yolo(outputs: list, ctx: FrameContext) -> Detections:
    return decode_yolo(outputs[0], ctx)


def _raw(outputs: list, ctx: FrameContext) -> RawOutputs:
    return RawOutputs(tuple({"shape": list(np.shape(o)), "min": float(np.min(o)), "max": float(np.max(o))}
                            for o in outputs))


POSTPROCESSORS: dict[str, Adapter] = {"classify": _classify, "ssd": _ssd, "yolo": _yolo, "raw": _raw}


def get_postprocess(name: str) -> Adapter:
    try:
        return POSTPROCESSORS[name]
    except KeyError:
        raise UsageError(f"unknown postprocess {name!r}; expected one of {', '.join(POSTPROCESSORS)}") from None


def infer_postprocess(output_shapes: Sequence[tuple[int, ...]], task: str | None = None) -> str:
    """Pick an adapter from the model's task and output shapes."""
    shapes = [tuple(s) for s in output_shapes]
    if len(shapes) == 4 and len(shapes[0]) == 3 and shapes[0][-1] == 4:
        return "ssd"
    if task == "detect" or (len(shapes) == 1 and len(shapes[0]) == 3):
        return "yolo" if len(shapes) == 1 else "raw"
    if len(shapes) == 1 and int(np.prod(shapes[0])) == shapes[0][-1] and shapes[0][-1] > 1:
        return "classify"
    return "raw"
