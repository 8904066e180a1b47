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
from .registry import Decoder, DecoderOption, Shapes, register
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


def _bind_ssd(o: Any) -> tuple[Any, Any]:
    def decode(outputs: Sequence[Any], ctx: FrameContext) -> Detections:
        if len(outputs) != 4:
            raise ModelError(f"SSD post-processing expects 4 outputs (boxes, classes, scores, count), got "
                             f"{len(outputs)}")
        det = decode_ssd(*outputs, ctx, score_threshold=o["score_threshold"])
        _check_scores("ssd", det.scores)
        return Detections(det.boxes[:o["max_detections"]], det.scores[:o["max_detections"]],
                          det.class_ids[:o["max_detections"]], det.labels[:o["max_detections"]])
    return _ssd_fits, decode


def _check_scores(name: str, scores: np.ndarray) -> None:
    """Scores outside [0, 1] mean the outputs are not what the decoder reads: an error, not boxes."""
    if scores.size and (not np.isfinite(scores).all() or scores.min() < -1e-4 or scores.max() > 1 + 1e-4):
        lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
        raise ModelError(f"{name}: decoded scores span [{lo:.4g}, {hi:.4g}], "
                         "outside [0, 1]; these outputs are not this head (pass --postprocess auto to find one)")


_SSD_OPTIONS = (DecoderOption("score_threshold", "float", "drop boxes scoring below this", 0.5),
                DecoderOption("max_detections", "int", "keep at most this many boxes", 100))
_SSD_DEFAULTS = {d.name: d.default for d in _SSD_OPTIONS}
SSD = register(Decoder("ssd", "detect", "SSD boxes after TFLite_Detection_PostProcess (4 outputs)", _ssd_fits,
                       _bind_ssd(_SSD_DEFAULTS)[1], priority=10, options=_SSD_OPTIONS, bind=_bind_ssd,
                       settings=tuple(_SSD_DEFAULTS.items())))


# --------------------------------------------------------------------------------------------
# yolo: raw YOLO head, NMS here
# --------------------------------------------------------------------------------------------
def decode_yolo(output: np.ndarray, ctx: FrameContext, score_threshold: float = 0.25,
                iou_threshold: float = 0.45, max_detections: int = 100, objectness: bool | None = None,
                normalized: bool | None = None, class_agnostic: bool = False) -> Detections:
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
    _check_scores("yolo", scores)
    keep = scores >= score_threshold
    a, scores, class_ids = a[keep], scores[keep], class_ids[keep]
    cx, cy, bw, bh = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    if normalized is None:
        normalized = bool(len(xyxy)) and float(np.abs(xyxy).max()) <= 1.5
    if normalized:
        w, h = ctx.input_size
        xyxy = xyxy * np.asarray([w, h, w, h], np.float32)
    idx = nms(xyxy, scores, iou_threshold, max_detections, None if class_agnostic else class_ids)
    xyxy, scores, class_ids = xyxy[idx], scores[idx], class_ids[idx]
    return Detections(to_source_boxes(xyxy, ctx), scores, class_ids.astype(np.int64),
                      tuple(label_for(ctx.labels, int(i)) for i in class_ids))


def _yolo_fits(shapes: Shapes, task: str | None) -> str | None:
    if len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][0] == 1 and min(shapes[0][1:]) >= 5:
        return None
    if len(shapes) == 1 and task == "detect" and len(shapes[0]) == 2 and min(shapes[0]) >= 5:
        return None
    return "expects one output, (1, N, 5+C) or (1, 4+C, N)"


def _bind_yolo(o: Any) -> tuple[Any, Any]:
    def decode(outputs: Sequence[Any], ctx: FrameContext) -> Detections:
        return decode_yolo(outputs[0], ctx, o["score_threshold"], o["iou_threshold"], o["max_detections"],
                           class_agnostic=o["class_agnostic"])
    return _yolo_fits, decode


_YOLO_OPTIONS = (DecoderOption("score_threshold", "float", "drop boxes scoring below this", 0.25),
                 DecoderOption("iou_threshold", "float", "NMS IoU", 0.45),
                 DecoderOption("max_detections", "int", "keep at most this many boxes", 100),
                 DecoderOption("class_agnostic", "bool", "NMS across classes", False))
_YOLO_DEFAULTS = {d.name: d.default for d in _YOLO_OPTIONS}
YOLO = register(Decoder("yolo", "detect", "raw YOLO head (v5 rows or v8 columns), NMS applied", _yolo_fits,
                        _bind_yolo(_YOLO_DEFAULTS)[1], priority=20, options=_YOLO_OPTIONS, bind=_bind_yolo,
                        settings=tuple(_YOLO_DEFAULTS.items())))


# --------------------------------------------------------------------------------------------
# raw: anything else
# --------------------------------------------------------------------------------------------
def _raw_fits(shapes: Shapes, task: str | None) -> str | None:
    return None  # the catch-all


def _raw(outputs: Sequence[Any], ctx: FrameContext) -> RawOutputs:
    return RawOutputs(tuple({"shape": list(np.shape(o)), "min": float(np.min(o)), "max": float(np.max(o))}
                            for o in outputs))


RAW = register(Decoder("raw", "other", "output shapes and value ranges only", _raw_fits, _raw, priority=1000))
