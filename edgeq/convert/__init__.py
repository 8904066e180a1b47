"""The convert wing: float Keras/SavedModel -> quantized .tflite, and the machinery it needs.

``converter`` (the ``convert`` verb and its named steps), ``plan`` (options checked before
TensorFlow loads, ``make_recipe``), ``source`` (loading and describing the source model),
``calibration``, ``recipes``, ``quantize`` and ``ranges`` (calibrate once, quantize with float
layers or other activation ranges), ``targets`` (``--target edgetpu``). Nothing here imports
``edgeq.accuracy``: accuracy sits beside convert and uses it.
"""
from __future__ import annotations

from .calibration import CalibrationDataset
from .converter import ConversionResult, convert
from .plan import make_recipe
from .ranges import RANGE_METHODS
from .recipes import RECIPES, Recipe, get_recipe

__all__ = ["CalibrationDataset", "ConversionResult", "RANGE_METHODS", "RECIPES", "Recipe", "convert", "get_recipe",
           "make_recipe"]
