"""The built-in decoders, one ``register(Decoder(...))`` entry each: classify, ssd, yolo, raw.

Detections are mapped from model-input pixels back to source-image pixels through the
``FrameTransform`` of the preprocessing (stretch, letterbox or centre crop), so boxes land on the
original frame. The ``fits`` checks reproduce edgeq's automatic choice: a 4-output SSD head, then a
single 3-D output (or any single output of a detect model) as YOLO, then a single score vector as
a classifier, else raw.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .boxes import nms, to_source_boxes
from .registry import Decoder, Shapes, register
from .results import Detections, FrameContext, RawOutputs, TopK, label_for, top_k


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------
def _classify_fits(shapes: Shapes, task: str | None) -> str | None:
    if len(shapes) == 1 and int(np.prod(shapes[0])) == shapes[0][-1] and shapes[0][-1] > 1:
        return None
    return "expects one output that is a score vector (1, C) with C > 1"


def _classify(outputs: Sequence[Any], ctx: FrameContext) -> TopK:
    return TopK(top_k(outputs[0], ctx.labels, k=5))


CLASSIFY = register(Decoder("classify", "classify", "top-5 classes of a score vector", _classify_fits, _classify,
                            priority=30))


# --------------------------------------------------------------------------------------------
# ssd: TFLite_Detection_PostProcess
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
    return Detections(to_source_boxes(xyxy, ctx), s, c, tuple(label_for(ctx.labels, int(i)) for i in c))


def _ssd_fits(shapes: Shapes, task: str | None) -> str | None:
    if len(shapes) == 4 and len(shapes[0]) == 3 and shapes[0][-1] == 4:
        return None
    return "expects 4 outputs (boxes (1, N, 4), classes, scores, count)"


def _ssd(outputs: Sequence[Any], ctx: FrameContext) -> Detections:
    if len(outputs) != 4:
        raise ModelError(f"SSD post-processing expects 4 outputs (boxes, classes, scores, count), got {len(outputs)}")
    return decode_ssd(*outputs, ctx)


SSD = register(Decoder("ssd", "detect", "SSD boxes after TFLite_Detection_PostProcess (4 outputs)", _ssd_fits, _ssd,
                       priority=10))


# --------------------------------------------------------------------------------------------
# yolo: raw YOLO head, NMS here
# --------------------------------------------------------------------------------------------
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
                      tuple(label_for(ctx.labels, int(i)) for i in class_ids))


def _yolo_fits(shapes: Shapes, task: str | None) -> str | None:
    if len(shapes) == 1 and (task == "detect" or len(shapes[0]) == 3):
        return None
    return "expects one output, (1, N, 5+C) or (1, 4+C, N), or one output of a detect model"


def _yolo(outputs: Sequence[Any], ctx: FrameContext) -> Detections:
    return decode_yolo(outputs[0], ctx)


YOLO = register(Decoder("yolo", "detect", "raw YOLO head (v5 rows or v8 columns), NMS applied", _yolo_fits, _yolo,
                        priority=20))


# --------------------------------------------------------------------------------------------
# raw: anything else
# --------------------------------------------------------------------------------------------
def _raw_fits(shapes: Shapes, task: str | None) -> str | None:
    return None  # the catch-all


def _raw(outputs: Sequence[Any], ctx: FrameContext) -> RawOutputs:
    return RawOutputs(tuple({"shape": list(np.shape(o)), "min": float(np.min(o)), "max": float(np.max(o))}
                            for o in outputs))


RAW = register(Decoder("raw", "other", "output shapes and value ranges only", _raw_fits, _raw, priority=1000))
