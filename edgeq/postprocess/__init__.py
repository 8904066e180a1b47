"""Output decoders: pure numpy functions from a model's dequantized outputs to results.

Runtime-side: imports only ``edgeq.errors`` and ``edgeq.preprocess`` (never the runtime, the
pipeline or TensorFlow). The decoders live in one registry (``registry``); the built-in ones are
entries in ``builtin``. ``Classification`` and ``top_k`` are the one ranked-class type and the one
top-k that ``EdgeModel.predict`` and the pipeline's classify decoder share.
"""
from __future__ import annotations

from . import builtin as _builtin  # noqa: F401 - registers classify, ssd, yolo, raw

# isort: split
from . import anchors as _anchors  # noqa: F401 - registers ssd-anchors and the MediaPipe detector presets
from . import landmarks as _landmarks  # noqa: F401 - registers landmarks and the MediaPipe landmark presets
from . import segmentation as _segmentation  # noqa: F401 - registers segment
from .boxes import box_iou, nms, to_source_boxes
from .builtin import decode_ssd, decode_yolo
from .landmarks import Landmarks
from .registry import (
    AUTO,
    Decoder,
    DecoderOption,
    auto_decoder,
    choose_decoder,
    decoder_names,
    decoder_tasks,
    decoders,
    get_decoder,
    help_text,
    register,
    resolve_decoder,
    unregister,
)
from .results import (
    Classification,
    Detections,
    FrameContext,
    RawOutputs,
    Result,
    TopK,
    draw_caption,
    label_for,
    top_k,
)
from .segmentation import SegmentationMask

__all__ = [
    "AUTO", "DecoderOption", "Landmarks", "SegmentationMask", "auto_decoder", "resolve_decoder",
    "Classification", "Decoder", "Detections", "FrameContext", "RawOutputs", "Result", "TopK", "box_iou",
    "choose_decoder", "decode_ssd", "decode_yolo", "decoder_names", "decoder_tasks", "decoders", "draw_caption",
    "get_decoder", "help_text", "label_for", "nms", "register", "to_source_boxes", "top_k", "unregister",
]
