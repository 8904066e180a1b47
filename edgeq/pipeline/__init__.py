"""The camera pipeline behind `edgeq run`: sources, bounded stages, postprocess, sinks, measurement.

Runtime code: never imports TensorFlow. Output decoding lives in ``edgeq.postprocess`` (the
decoder registry); its result types and decoders are re-exported here for convenience.
"""
from __future__ import annotations

from ..errors import SinkError
from ..postprocess import (
    Classification,
    Detections,
    FrameContext,
    RawOutputs,
    TopK,
    choose_decoder,
    decode_ssd,
    decode_yolo,
    get_decoder,
    nms,
    top_k,
)
from .control import LatestFrameSlot, opencv_threads, stop_on_signals
from .report import FrameResult, LiveStatus, RunReport, StopReason, WarningLog, format_report
from .runner import MODES, Pipeline, RunOptions, run_pipeline
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
from .threads import (
    ThreadChoice,
    ThreadTrial,
    available_cores,
    choose_pipeline_threads,
    layout_candidates,
    parse_threads,
    thread_candidates,
)

__all__ = [
    "CameraSource", "Classification", "Detections", "Distribution", "Frame", "FrameContext",
    "FrameResult", "ImageFolderSource", "JsonLinesSink", "LatencyRecorder", "LatestFrameSlot", "LiveStatus",
    "MODES", "NullSink", "Pipeline", "PreviewSink", "RateMeter", "RawOutputs", "RunOptions", "RunReport", "STAGES",
    "Sink", "SinkError", "Source", "SourceOptions", "StopReason", "StreamSource", "SyntheticSource", "ThreadChoice",
    "ThreadTrial", "TopK", "available_cores", "choose_pipeline_threads", "layout_candidates", "opencv_threads",
    "parse_threads", "thread_candidates",
    "VIDEO_CODECS", "VideoFileSource", "VideoSink", "WarningLog", "annotate", "choose_decoder", "decode_frame_number",
    "decode_ssd", "decode_yolo", "encode_frame_number", "format_report", "get_decoder", "gui_available", "nms",
    "open_source", "rate", "run_pipeline", "stop_on_signals", "top_k",
]
