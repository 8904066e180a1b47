"""edgeq: float vision model -> full-integer TFLite -> measured on the edge device.

Importing edgeq never imports TensorFlow; only conversion and analysis load it, lazily.
The functions ``convert`` and ``tune`` shadow the subpackage attribute ``edgeq.convert`` / ``edgeq.tune`` on purpose:
``edgeq.convert(...)`` converts, and ``from edgeq.convert.calibration import ...`` still finds the
package (the import system looks submodules up in ``sys.modules``).
"""
from __future__ import annotations

from ._version import __version__  # noqa: E402
from .convert.calibration import CalibrationDataset  # noqa: E402
from .convert.converter import ConversionResult, convert  # noqa: E402  (TensorFlow is imported inside convert())
from .convert.plan import make_recipe  # noqa: E402
from .convert.recipes import RECIPES, Recipe  # noqa: E402
from .errors import EdgeqError  # noqa: E402
from .metadata import EdgeqMetadata, read_metadata  # noqa: E402
from .modelinfo import inspect_model  # noqa: E402
from .preprocess import Preprocess  # noqa: E402
from .runtime import EdgeModel, load  # noqa: E402  (the interpreter backend is imported inside load())
from .tune import TuneResult, tune  # noqa: E402  (shadows the submodule like convert; it stays in sys.modules)
from .variants import VariantTuneResult, tune_variants  # noqa: E402  (TensorFlow is imported inside tune_variants())


def qat(model, train_data, val_data, output, **options):  # see edgeq.accuracy.qat.qat for the options
    """Quantization-aware fine-tuning, then a full-integer .tflite: ``edgeq.accuracy.qat.qat`` (Keras loads here)."""
    from .accuracy.qat import qat as run_qat

    return run_qat(model, train_data, val_data, output, **options)


__all__ = ["CalibrationDataset", "ConversionResult", "EdgeModel", "EdgeqError", "EdgeqMetadata", "Preprocess",
           "RECIPES", "Recipe", "TuneResult", "convert", "inspect_model", "load", "make_recipe", "qat",
           "read_metadata", "tune", "tune_variants", "VariantTuneResult", "__version__"]
