"""Accuracy you can trust: evaluation, per-layer sensitivity, mixed precision to an accuracy budget.

Evaluation runs without TensorFlow for .tflite models (LiteRT only); sensitivity analysis and the
mixed-precision search (``convert_to_budget``) need TensorFlow's quantizer and import it lazily.
Accuracy sits beside the convert wing (``edgeq.convert``) and uses it, never the reverse.
"""
from __future__ import annotations

from .budget import convert_to_budget
from .data import EvalData, read_eval_data
from .evaluate import Comparison, EvalReport, ModelAccuracy, OutputComparison, evaluate, format_report

__all__ = ["Comparison", "EvalData", "EvalReport", "ModelAccuracy", "OutputComparison", "convert_to_budget",
           "evaluate", "format_report", "read_eval_data"]
