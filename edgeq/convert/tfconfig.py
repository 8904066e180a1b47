"""TFLiteConverter settings per recipe (shared by edgeq.convert, the tune variant builder and the accuracy search)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .recipes import Recipe


def configure_converter(tf: Any, converter: Any, recipe: Recipe, rep: Callable | None) -> None:
    """Set the TFLiteConverter's optimizations, op sets and I/O types for the recipe."""
    dtypes = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}
    if recipe.weights == "float32" and recipe.activations == "float32" and not recipe.needs_calibration:
        return  # the float reference: TFLite's plain conversion, no optimization at all
    if recipe.weights == "int4":  # a float .tflite for ai-edge-quantizer (tflite_source.py)
        return
    if recipe.name == "float16" or recipe.weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not recipe.needs_calibration:
        return  # dynamic range
    converter.representative_dataset = rep
    if recipe.activations == "int16":
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe.allow_float_fallback or recipe.float_nodes or recipe.float_ops:
        ops = ops + [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.target_spec.supported_ops = ops
    if not recipe.float_io:
        converter.inference_input_type = dtypes[recipe.io_dtype]
        converter.inference_output_type = dtypes[recipe.io_dtype]
    if not recipe.per_channel:
        converter._experimental_disable_per_channel = True
