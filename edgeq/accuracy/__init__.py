"""Accuracy you can trust: evaluation, per-layer sensitivity, mixed precision, activation ranges.

Evaluation runs without TensorFlow for .tflite models (LiteRT only); sensitivity analysis,
mixed-precision search and range methods need TensorFlow's quantizer and import it lazily.
"""
from __future__ import annotations

from .data import EvalData, read_eval_data
from .evaluate import Comparison, EvalReport, ModelAccuracy, OutputComparison, evaluate, format_report

__all__ = ["Comparison", "EvalData", "EvalReport", "ModelAccuracy", "OutputComparison", "evaluate",
           "format_report", "read_eval_data"]
