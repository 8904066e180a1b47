"""Segmentation heads: a (1, H, W, C) map, per-pixel class scores (C > 1) or a foreground probability (C = 1).

The mask is brought back onto the frame through the preprocessing's transform (the inverse of the
letterbox/crop, by an affine warp), so it overlays the frame it came from; the JSON lines carry the
foreground area and each class's share of the frame's pixels rather than the mask itself.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .registry import Decoder, DecoderOption, Shapes, register
from .results import FrameContext, draw_caption, label_for

OPTIONS = (
    DecoderOption("activation", "str", "none (probabilities / class scores), sigmoid (C=1 logits) or argmax", "none"),
    DecoderOption("threshold", "float", "foreground probability threshold (C=1)", 0.5),
    DecoderOption("output", "int", "index of the mask output (-1: the model's only output)", -1),
)
_PALETTE = np.asarray([[0, 0, 0], [255, 0, 255], [0, 200, 255], [255, 128, 0], [0, 255, 0], [255, 0, 0],
                       [0, 0, 255], [128, 255, 128]], np.uint8)


@dataclasses.dataclass(frozen=True)
class SegmentationMask:
    """Per-pixel class ids (H, W) uint8 at the source frame's size (0 = background for C = 1 heads)."""

    mask: np.ndarray
    labels: tuple[str, ...]

    def shares(self) -> dict[str, float]:
        """Each class's share of the frame's pixels (classes with no pixel left out)."""
        counts = np.bincount(self.mask.reshape(-1), minlength=1)
        total = max(1, self.mask.size)
        return {label_for(self.labels, i): round(float(c) / total, 5) for i, c in enumerate(counts) if c}

    def to_dict(self) -> dict[str, Any]:
        return {"type": "segmentation", "height": int(self.mask.shape[0]), "width": int(self.mask.shape[1]),
                "area": round(float(np.count_nonzero(self.mask)) / max(1, self.mask.size), 5),
                "class_share": self.shares()}

    def draw(self, image: np.ndarray) -> int:
        """Non-background pixels tinted by class; the foreground share as one caption line."""
        fg = self.mask > 0
        if fg.any():
            colour = _PALETTE[1 + (self.mask[fg].astype(np.int64) - 1) % (len(_PALETTE) - 1)]
            image[fg] = (0.5 * image[fg] + 0.5 * colour).astype(np.uint8)
        draw_caption(image, f"mask {100.0 * fg.mean():.1f}%", 0)
        return 1


def to_source_mask(mask: np.ndarray, ctx: FrameContext, nearest: bool) -> np.ndarray:
    """A model-input-sized map (h, w) -> the source frame's size, inverting the letterbox/crop transform."""
    import cv2

    t = ctx.transform
    h_in, w_in = mask.shape
    sx, sy = ctx.input_size[0] / w_in, ctx.input_size[1] / h_in  # a mask smaller than the input scales up
    ax, ay = t.scale_x / sx, t.scale_y / sy
    # pixel centres: x_mask + 0.5 = (x_src + 0.5) * ax + offset / sx
    m = np.asarray([[ax, 0.0, t.offset_x / sx + 0.5 * ax - 0.5], [0.0, ay, t.offset_y / sy + 0.5 * ay - 0.5]],
                   np.float64)
    w, h = ctx.source_size
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(mask, m, (int(w), int(h)), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _why_not(shapes: Shapes, o: Mapping[str, Any]) -> str | None:
    if o["activation"] not in ("none", "sigmoid", "argmax"):
        return "option activation must be none, sigmoid or argmax"
    k = o["output"]
    if k < 0 and len(shapes) != 1:
        return f"expects one output (1, H, W, C), got {len(shapes)} (name the mask output with output=N)"
    if k >= len(shapes):
        return f"output {k} does not exist ({len(shapes)} outputs)"
    s = shapes[max(k, 0)]
    if len(s) != 4 or s[0] != 1 or s[1] < 8 or s[2] < 8 or not 1 <= s[3] <= 256:
        return f"expects a mask output (1, H, W, C) with H, W >= 8 and 1 <= C <= 256, got {list(s)}"
    return None


def decode_mask(outputs: Sequence[Any], o: Mapping[str, Any], ctx: FrameContext) -> SegmentationMask:
    """Mask output -> SegmentationMask at the frame's size; C=1 probabilities outside [0, 1] are an error."""
    why = _why_not([tuple(np.shape(x)) for x in outputs], o)
    if why:
        raise ModelError(f"segmentation decoder: {why}")
    a = np.asarray(outputs[max(o["output"], 0)], np.float32)[0]
    if a.shape[-1] == 1:
        p = a[..., 0]
        if o["activation"] == "sigmoid":
            p = (1.0 / (1.0 + np.exp(-np.clip(p, -100, 100)))).astype(np.float32)
        if not np.isfinite(p).all() or p.min() < -1e-4 or p.max() > 1 + 1e-4:
            raise ModelError(f"segmentation probabilities span [{float(np.nanmin(p)):.4g}, {float(np.nanmax(p)):.4g}], "
                             "outside [0, 1]: pass --postprocess-option activation=sigmoid for logits")
        prob = to_source_mask(np.ascontiguousarray(p), ctx, nearest=False)
        return SegmentationMask((prob >= o["threshold"]).astype(np.uint8), ctx.labels or ("background", "foreground"))
    ids = np.argmax(a, axis=-1).astype(np.uint8)
    return SegmentationMask(to_source_mask(ids, ctx, nearest=True), ctx.labels)


def _bind(o: Mapping[str, Any]) -> tuple[Any, Any]:
    def fits(shapes: Shapes, task: str | None) -> str | None:
        return _why_not(shapes, o)

    def decode(outputs: Sequence[Any], ctx: FrameContext) -> SegmentationMask:
        return decode_mask(outputs, o, ctx)

    return fits, decode


_DEFAULTS = {d.name: d.default for d in OPTIONS}
_fits, _decode = _bind(_DEFAULTS)
SEGMENT = register(Decoder("segment", "segment", "segmentation mask (1, H, W, C): class argmax, or a C=1 "
                           "probability thresholded; overlaid, area and class shares in the JSON", _fits, _decode,
                           priority=50, options=OPTIONS, bind=_bind, settings=tuple(_DEFAULTS.items()),
                           automatic=False))
