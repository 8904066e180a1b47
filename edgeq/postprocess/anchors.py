"""Anchor-based SSD heads without a postprocess op (BlazeFace, MediaPipe's palm detector, raw TF OD heads).

The model outputs, per anchor, box regressors (and keypoints) relative to a fixed anchor grid and one
score logit. Decoding needs the anchor grid the model was trained with, so the options are the usual
SSD anchor options (MediaPipe's ``SsdAnchorsCalculator``) and box layout (its
``TensorsToDetectionsCalculator``); the presets carry the values of MediaPipe's graph configs, so a user
types a name, not fifteen numbers. Suppression is greedy NMS or MediaPipe's weighted NMS (the boxes that
overlap the best one are averaged, weighted by score — steadier boxes on video).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .boxes import box_iou, nms, to_source_boxes
from .registry import Decoder, DecoderOption, Shapes, optioned_decoder, register
from .results import Detections, FrameContext, label_for

OPTIONS = (
    DecoderOption("input_size", "ints", "anchor grid input WIDTH,HEIGHT in pixels (default: the model input)"),
    DecoderOption("strides", "ints", "feature-map stride of each anchor layer, e.g. 8,16,16,16"),
    DecoderOption("min_scale", "float", "anchor scale of the first layer", 0.1484375),
    DecoderOption("max_scale", "float", "anchor scale of the last layer", 0.75),
    DecoderOption("anchor_offset", "floats", "anchor centre offset X,Y within a cell", (0.5, 0.5)),
    DecoderOption("aspect_ratios", "floats", "anchor aspect ratios per layer", (1.0,)),
    DecoderOption("interpolated_scale_aspect_ratio", "float", "extra anchor between layer scales (0: none)", 1.0),
    DecoderOption("fixed_anchor_size", "bool", "anchors of size 1x1 (regressors carry the whole size)", True),
    DecoderOption("num_keypoints", "int", "keypoints per box after the 4 box values", 0),
    DecoderOption("box_scale", "floats", "x,y,w,h scale dividing the regressors (default: the input size)"),
    DecoderOption("yx_order", "bool", "regressors are y,x,h,w (TF OD API) instead of x,y,w,h (MediaPipe)", False),
    DecoderOption("exp_box_size", "bool", "box size is exp(raw / scale) * anchor (TF OD API)", False),
    DecoderOption("score_activation", "str", "sigmoid or none (scores already probabilities)", "sigmoid"),
    DecoderOption("score_clip", "float", "clip logits to +-this before the sigmoid (0: none)", 100.0),
    DecoderOption("score_threshold", "float", "drop boxes scoring below this", 0.5),
    DecoderOption("iou_threshold", "float", "suppression IoU", 0.3),
    DecoderOption("nms", "str", "weighted (MediaPipe) or greedy", "weighted"),
    DecoderOption("max_detections", "int", "keep at most this many boxes", 100),
    DecoderOption("label", "str", "label of the boxes when the model has no labels"),
)


def _scale(min_scale: float, max_scale: float, index: int, layers: int) -> float:
    # SsdAnchorsCalculator::CalculateScale
    if layers == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (layers - 1.0)


def ssd_anchors(input_size: tuple[int, int], strides: Sequence[int], min_scale: float = 0.1484375,
                max_scale: float = 0.75, anchor_offset: Sequence[float] = (0.5, 0.5),
                aspect_ratios: Sequence[float] = (1.0,), interpolated_scale_aspect_ratio: float = 1.0,
                fixed_anchor_size: bool = True) -> np.ndarray:
    """Anchors (N, 4) as normalised x_center, y_center, w, h, in MediaPipe's SsdAnchorsCalculator order.

    Consecutive layers with the same stride share one feature map (their anchors interleave per cell),
    as in ``mediapipe/calculators/tflite/ssd_anchors_calculator.cc``.
    """
    width, height = input_size
    layers = len(strides)
    out: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < layers:
        sizes: list[tuple[float, float]] = []  # (w, h) per anchor of a cell
        last = layer
        while last < layers and strides[last] == strides[layer]:
            scale = _scale(min_scale, max_scale, last, layers)
            for ratio in aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == layers - 1 else _scale(min_scale, max_scale, last + 1, layers)
                s, r = math.sqrt(scale * nxt), interpolated_scale_aspect_ratio
                sizes.append((s * math.sqrt(r), s / math.sqrt(r)))
            last += 1
        fh, fw = math.ceil(height / strides[layer]), math.ceil(width / strides[layer])
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + anchor_offset[0]) / fw, (y + anchor_offset[1]) / fh
                out.extend((cx, cy, 1.0, 1.0) if fixed_anchor_size else (cx, cy, w, h) for w, h in sizes)
        layer = last
    return np.asarray(out, np.float32).reshape(-1, 4)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float,
                 max_detections: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression: each kept box (and its keypoints) is the score-weighted
    mean of the boxes overlapping the best remaining one by more than ``iou_threshold``; its score is the
    best one's (``non_max_suppression_calculator.cc``, WeightedNonMaxSuppression)."""
    order = np.argsort(-scores, kind="stable")
    kb, ks, kk = [], [], []
    while order.size and len(kb) < max_detections:
        top = order[0]
        overlap = box_iou(boxes[top], boxes[order]) > iou_threshold
        group = order[overlap]
        w = scores[group][:, None]
        kb.append((boxes[group] * w).sum(0) / w.sum())
        kk.append((keypoints[group] * w[:, :, None]).sum(0) / w.sum())
        ks.append(scores[top])
        order = order[~overlap]
    k = keypoints.shape[1]
    return (np.asarray(kb, np.float32).reshape(-1, 4), np.asarray(ks, np.float32),
            np.asarray(kk, np.float32).reshape(len(kb), k, 2))


def _layout(shapes: Shapes, o: Mapping[str, Any], anchors: int | None) -> str | None:
    """Why outputs ``shapes`` are not a regressors (1, N, 4+2K) + scores (1, N, 1) pair for options ``o``."""
    if len(shapes) != 2:
        return f"expects 2 outputs (regressors (1, N, 4+2K), scores (1, N, 1)), got {len(shapes)}"
    reg, sc = (shapes[0], shapes[1]) if shapes[0][-1] >= shapes[1][-1] else (shapes[1], shapes[0])
    if len(reg) != 3 or len(sc) != 3 or sc[-1] != 1 or reg[1] != sc[1]:
        return f"expects regressors (1, N, 4+2K) and scores (1, N, 1), got {list(map(list, shapes))}"
    want = 4 + 2 * int(o["num_keypoints"])
    if reg[-1] != want:
        return f"expects {want} values per box (4 + 2 x num_keypoints={o['num_keypoints']}), got {reg[-1]}"
    if anchors is not None and reg[1] != anchors:
        return f"the anchor options give {anchors} anchors but the outputs have {reg[1]} boxes"
    return None


def _check(o: Mapping[str, Any]) -> str | None:
    if not o["strides"]:
        return ("needs anchor options: --postprocess-option strides=8,16,16,16 (and input_size, num_keypoints, "
                "...) or a preset (mediapipe-face-short, mediapipe-face-full, mediapipe-palm)")
    if o["nms"] not in ("weighted", "greedy") or o["score_activation"] not in ("sigmoid", "none"):
        return "option nms must be weighted or greedy, score_activation sigmoid or none"
    if o["input_size"] is not None and len(o["input_size"]) != 2:
        return "option input_size must be WIDTH,HEIGHT"
    return None


def _anchors_for(o: Mapping[str, Any], input_size: tuple[int, int]) -> np.ndarray:
    size = tuple(o["input_size"]) if o["input_size"] else input_size
    return ssd_anchors(size, o["strides"], o["min_scale"], o["max_scale"], o["anchor_offset"],
                       o["aspect_ratios"], o["interpolated_scale_aspect_ratio"], o["fixed_anchor_size"])


def decode_anchor_ssd(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, o: Mapping[str, Any],
                      ctx: FrameContext) -> Detections:
    """Regressors (N, 4+2K) and score logits (N,) against ``anchors`` (N, 4) -> NMS'ed detections in source px.

    Box decoding follows TensorsToDetectionsCalculator::DecodeBoxes (reverse_output_order).
    """
    raw = np.asarray(regressors, np.float32).reshape(len(anchors), -1)
    s = np.asarray(logits, np.float32).reshape(-1)
    if o["score_activation"] == "sigmoid":
        if o["score_clip"]:
            s = np.clip(s, -o["score_clip"], o["score_clip"])
        s = (1.0 / (1.0 + np.exp(-s.astype(np.float64)))).astype(np.float32)
    if s.size and (not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0):
        raise ModelError(f"anchor SSD scores span [{float(np.nanmin(s)):.4g}, {float(np.nanmax(s)):.4g}], outside "
                         "[0, 1]: the scores are logits (use score_activation=sigmoid) or this is not the score output")
    w_in, h_in = ctx.input_size
    size = tuple(o["input_size"]) if o["input_size"] else (w_in, h_in)
    sx, sy, sw, sh = o["box_scale"] if o["box_scale"] else (size[0], size[1], size[0], size[1])
    keep = s >= o["score_threshold"]
    raw, s, a = raw[keep], s[keep], anchors[keep]
    xi, yi, wi, hi = (1, 0, 3, 2) if o["yx_order"] else (0, 1, 2, 3)
    cx = raw[:, xi] / sx * a[:, 2] + a[:, 0]
    cy = raw[:, yi] / sy * a[:, 3] + a[:, 1]
    if o["exp_box_size"]:
        bw, bh = np.exp(raw[:, wi] / sw) * a[:, 2], np.exp(raw[:, hi] / sh) * a[:, 3]
    else:
        bw, bh = raw[:, wi] / sw * a[:, 2], raw[:, hi] / sh * a[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    k = int(o["num_keypoints"])
    kp = raw[:, 4:4 + 2 * k].reshape(len(raw), k, 2)
    kp = np.stack([kp[..., 0] / sx * a[:, None, 2] + a[:, None, 0],
                   kp[..., 1] / sy * a[:, None, 3] + a[:, None, 1]], axis=-1)
    if o["nms"] == "weighted":
        boxes, s, kp = weighted_nms(boxes, s, kp, o["iou_threshold"], o["max_detections"])
    else:
        idx = nms(boxes, s, o["iou_threshold"], o["max_detections"])
        boxes, s, kp = boxes[idx], s[idx], kp[idx]
    # normalised (to the anchor grid's input) -> model-input pixels -> source pixels
    fx, fy = w_in, h_in
    px = boxes * np.asarray([fx, fy, fx, fy], np.float32)
    kx, ky = ctx.transform.to_source(kp[..., 0] * fx, kp[..., 1] * fy)
    ids = np.zeros(len(s), np.int64)
    label = o["label"] if o["label"] and not ctx.labels else label_for(ctx.labels, 0)
    return Detections(to_source_boxes(px, ctx), s.astype(np.float32), ids, tuple(label for _ in ids),
                      np.stack([kx, ky], axis=-1).astype(np.float32))


def _bind(o: Mapping[str, Any]) -> tuple[Any, Any]:
    """fits/decode for option values ``o``; anchors are built once per input size and kept."""
    cache: dict[tuple[int, int], np.ndarray] = {}

    def anchors(size: tuple[int, int]) -> np.ndarray:
        if size not in cache:
            cache[size] = _anchors_for(o, size)
        return cache[size]

    def fits(shapes: Shapes, task: str | None) -> str | None:
        bad = _check(o)
        if bad:
            return bad
        n = len(anchors(tuple(o["input_size"]))) if o["input_size"] else None
        return _layout(shapes, o, n)

    def decode(outputs: Sequence[Any], ctx: FrameContext) -> Detections:
        shapes = [tuple(np.shape(x)) for x in outputs]
        a = anchors(tuple(o["input_size"]) if o["input_size"] else tuple(ctx.input_size))
        why = _check(o) or _layout(shapes, o, len(a))
        if why:
            raise ModelError(f"anchor SSD decoder: {why}")
        reg, sc = (outputs[0], outputs[1]) if shapes[0][-1] >= shapes[1][-1] else (outputs[1], outputs[0])
        return decode_anchor_ssd(reg, sc, a, o, ctx)

    return fits, decode


def anchor_decoder(name: str, help: str, priority: int = 100, **defaults: Any) -> Decoder:
    """A registered anchor-SSD decoder whose option defaults are ``defaults`` (a preset) over OPTIONS'."""
    return register(optioned_decoder(name, "detect", help, OPTIONS, _bind, priority=priority, **defaults))


# Generic: the user gives the anchor options (or embeds them at conversion).
ANCHOR_SSD = anchor_decoder("ssd-anchors", "anchor SSD head (regressors + score logits) decoded with the given "
                            "anchor options (strides=..., num_keypoints=..., ...)", priority=40)
# mediapipe/modules/face_detection/face_detection_short_range.pbtxt (num_layers 4, strides 8,16,16,16,
# interpolated_scale_aspect_ratio 1.0, 896 boxes, x/y/w/h scale 128, min_score_thresh 0.5) with the shared
# options of face_detection.pbtxt (min_scale 0.1484375, max_scale 0.75, anchor_offset 0.5, aspect_ratios
# 1.0, fixed_anchor_size, num_coords 16 = 6 keypoints, sigmoid_score, score_clipping_thresh 100,
# reverse_output_order, WEIGHTED NMS with min_suppression_threshold 0.3).
FACE_SHORT = anchor_decoder("mediapipe-face-short", "MediaPipe BlazeFace short-range (128x128, 896 anchors, "
                            "6 keypoints)", priority=35, input_size=(128, 128), strides=(8, 16, 16, 16),
                            num_keypoints=6, label="face")
# face_detection_full_range.pbtxt: num_layers 1, strides 4, interpolated_scale_aspect_ratio 0.0, 2304 boxes,
# scale 192, min_score_thresh 0.6; the rest as above (face_detection.pbtxt).
FACE_FULL = anchor_decoder("mediapipe-face-full", "MediaPipe BlazeFace full-range (192x192, 2304 anchors, "
                           "6 keypoints)", priority=35, input_size=(192, 192), strides=(4,),
                           interpolated_scale_aspect_ratio=0.0, num_keypoints=6, score_threshold=0.6, label="face")
# mediapipe/modules/palm_detection/palm_detection_cpu.pbtxt: num_layers 4, min_scale 0.1484375, max_scale 0.75,
# input 192x192, offsets 0.5, strides 8,16,16,16, aspect_ratios 1.0, fixed_anchor_size; 2016 boxes, num_coords
# 18 = 7 keypoints, sigmoid_score, score_clipping_thresh 100, scale 192, min_score_thresh 0.5, WEIGHTED NMS 0.3.
PALM = anchor_decoder("mediapipe-palm", "MediaPipe palm detector lite/full (192x192, 2016 anchors, 7 keypoints)",
                      priority=35, input_size=(192, 192), strides=(8, 16, 16, 16), num_keypoints=7, label="palm")
