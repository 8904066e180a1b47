"""edgeq: float vision model -> full-integer TFLite -> measured on the edge device.

Importing edgeq never imports TensorFlow; only conversion and analysis load it, lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .calibration import CalibrationDataset  # noqa: E402
from .errors import EdgeqError  # noqa: E402
from .metadata import EdgeqMetadata, read_metadata  # noqa: E402
from .modelinfo import inspect_model  # noqa: E402
from .preprocess import Preprocess  # noqa: E402
from .recipes import RECIPES, Recipe  # noqa: E402


def convert(*args, **kwargs):
    """Quantize a float model; see :func:`edgeq.converter.convert`."""
    from .converter import convert as _convert

    return _convert(*args, **kwargs)


def load(*args, **kwargs):
    """Load a .tflite model for inference; see :func:`edgeq.runtime.load`."""
    from .runtime import load as _load

    return _load(*args, **kwargs)


__all__ = ["CalibrationDataset", "EdgeqError", "EdgeqMetadata", "Preprocess", "RECIPES", "Recipe",
           "convert", "inspect_model", "load", "read_metadata", "__version__"]
