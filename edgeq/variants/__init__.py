"""``edgeq tune`` over model-file variants: I/O types, weight granularity and recipes, measured here.

``tune_variants`` builds the variants of a float model from one export and one calibration, runs the
runtime search of ``edgeq.tune`` on each, checks the accuracy budget lazily in speed order and keeps the
winner with its runtime configuration. Importing this package does not import TensorFlow.
"""
from __future__ import annotations

from .report import VariantOutcome, VariantTuneResult, format_table
from .search import PRUNE_MARGIN, is_quantized_tflite, tune_variants
from .specs import NEEDS_EVAL, VariantSpec, plan_variants, variant_name

__all__ = ["NEEDS_EVAL", "PRUNE_MARGIN", "VariantOutcome", "VariantSpec", "VariantTuneResult", "format_table",
           "is_quantized_tflite", "plan_variants", "tune_variants", "variant_name"]
