"""One exception hierarchy. Every message says what was wrong and what to do about it."""
from __future__ import annotations


class EdgeqError(Exception):
    """Base class of all errors edgeq raises on purpose (the CLI prints them without traceback)."""

    exit_code = 1


class UsageError(EdgeqError):
    """A bad option or argument value."""

    exit_code = 2


class DataError(EdgeqError):
    """Input data (images, datasets, labels) missing or malformed."""


class CalibrationError(DataError):
    """The calibration source is empty, unreadable or does not fit the model."""


class PreprocessError(EdgeqError):
    """An image cannot be brought to the model's preprocessing contract."""


class ModelError(EdgeqError):
    """A model file is missing, corrupt, or not what the operation expects."""


class ConversionError(EdgeqError):
    """TensorFlow Lite conversion failed or produced a model that breaks the recipe."""


class OutputError(EdgeqError):
    """An output cannot be written (read-only location, disk full, no permission)."""


class OutputExistsError(OutputError):
    """Refusing to overwrite an existing file (without --force), or an input (ever)."""


class DelegateUnavailableError(EdgeqError):
    """A delegate/accelerator was requested but cannot be used here."""


class DelegateError(EdgeqError):
    """A delegate loaded but failed (bad options, rejected the model)."""


class SourceError(EdgeqError):
    """A video/camera/image source cannot be opened or read."""


class ToolNotFoundError(EdgeqError):
    """An external tool (e.g. edgetpu_compiler) is not installed."""


class CompilerError(ConversionError):
    """edgetpu_compiler ran but failed, timed out, or produced no usable model."""


class NotMappedError(EdgeqError):
    """The model would not run fully on the Edge TPU (``edgeq edgetpu check`` exits with 3)."""

    exit_code = 3


class SinkError(EdgeqError):
    """A sink cannot be created or written (unsupported container, no GUI, disk full)."""
