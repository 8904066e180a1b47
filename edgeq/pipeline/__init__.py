"""The camera pipeline behind `edgeq run`: sources, bounded stages, postprocess, sinks, measurement.

Runtime code: never imports TensorFlow.
"""
from __future__ import annotations

from ..errors import SinkError
from .postprocess import (
                          POSTPROCESSORS,
                          Classification,
                          Detections,
                          FrameContext,
                          RawOutputs,
                          classify_topk,
                          decode_ssd,
                          decode_yolo,
                          get_postprocess,
                          infer_postprocess,
                          nms,
)
from .report import FrameResult, LiveStatus, RunReport, format_report
from .runner import MODES, LatestFrameSlot, Pipeline, RunOptions, run_pipeline, stop_on_signals
from .sinks import VIDEO_CODECS, JsonLinesSink, NullSink, PreviewSink, Sink, VideoSink, annotate, gui_available
from .sources import (
                          CameraSource,
                          Frame,
                          ImageFolderSource,
                          Source,
                          SourceOptions,
                          StreamSource,
                          SyntheticSource,
                          VideoFileSource,
                          decode_frame_number,
                          encode_frame_number,
                          open_source,
)
from .stats import STAGES, Distribution, LatencyRecorder, RateMeter, rate

__all__ = [
    "CameraSource", "Classification", "Detections", "Distribution", "Frame", "FrameContext", "FrameResult",
    "ImageFolderSource", "JsonLinesSink", "LatencyRecorder", "LatestFrameSlot", "LiveStatus", "MODES",
    "NullSink", "POSTPROCESSORS", "Pipeline", "PreviewSink", "RateMeter", "RawOutputs", "RunOptions",
    "RunReport", "STAGES", "Sink", "SinkError", "Source", "SourceOptions", "StreamSource", "SyntheticSource",
    "VIDEO_CODECS", "VideoFileSource", "VideoSink", "annotate", "classify_topk", "decode_frame_number",
    "decode_ssd", "decode_yolo", "encode_frame_number", "format_report", "get_postprocess", "gui_available",
    "infer_postprocess", "nms", "open_source", "rate", "run_pipeline", "stop_on_signals",
]
