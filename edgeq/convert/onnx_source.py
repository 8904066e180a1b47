"""An ONNX source (PyTorch exports) -> a TensorFlow SavedModel through onnx2tf -> edgeq's normal path.

onnx2tf (what Ultralytics uses for its TFLite export) rewrites the NCHW graph as NHWC, so the
SavedModel, and therefore the quantized model and its embedded contract, take NHWC images like every
other edgeq model. Batch is fixed to 1; height/width must be static or given with --input-size.
onnx2tf fetches sample images from the network for its own self-check when an input looks like an
image; edgeq never downloads at run time, so it hands onnx2tf local seeded samples instead (they
are not used for calibration, which is edgeq's own).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._native import quiet_native_stderr
from ..errors import ConversionError, ModelError
from ..fileio import private_tempdir

log = logging.getLogger(__name__)
INSTALL = "pip install 'edgeq[onnx]' (and, as TensorFlow-CPU users, pip install --no-deps 'tf_keras~=2.21.0')"


@dataclasses.dataclass(frozen=True)
class OnnxSaved:
    """The ONNX model as a SavedModel edgeq converts, and what it found on the way."""

    saved_dir: str
    onnx_shape: tuple[int, ...]      # the ONNX input (NCHW for PyTorch exports)
    float_bytes: int                 # the float initializers' bytes (the compression baseline)
    warnings: tuple[str, ...]


def _import_converters() -> tuple[Any, Any]:
    try:
        import onnx
        import onnx2tf
    except ImportError as exc:
        raise ConversionError(f"converting an ONNX model needs onnx and onnx2tf ({exc.name} is missing): "
                              f"{INSTALL}") from exc
    return onnx, onnx2tf


def read_onnx_input(onnx: Any, path: str, input_size: tuple[int, int] | None) -> tuple[Any, list[int], int]:
    """The loaded model, its single image input's shape (batch set to 1, H/W from --input-size when
    dynamic) and its float initializer bytes; refusals say what to do."""
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf errors are many types
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise ConversionError(f"{os.path.basename(path)} has {len(inputs)} inputs; edgeq quantizes single-input "
                              "image models")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ConversionError(f"{os.path.basename(path)}: input {inputs[0].name!r} has shape {dims}, not an image "
                              "batch (N, C, H, W)")
    dims[0] = 1
    channels_first = dims[1] in (1, 3, 4) or dims[3] not in (1, 3, 4)
    hw = (2, 3) if channels_first else (1, 2)
    if any(dims[i] <= 0 for i in hw):
        if input_size is None:
            raise ModelError(f"{os.path.basename(path)} has a dynamic input height/width {dims}; pass "
                             "--input-size WIDTHxHEIGHT to fix it for conversion")
        dims[hw[0]], dims[hw[1]] = input_size[1], input_size[0]
    size = sum(int(np.prod(i.dims)) * 4 for i in model.graph.initializer if i.data_type == 1)
    return model, dims, size


@contextlib.contextmanager
def onnx_as_saved_model(path: str, options: dict[str, Any] | None, *, quiet: bool = True) -> Iterator[OnnxSaved]:
    """Convert with onnx2tf into a temporary SavedModel (NHWC, batch 1) that lives until the context exits."""
    onnx, onnx2tf = _import_converters()
    size = (options or {}).get("input_size")
    model, dims, float_bytes = read_onnx_input(onnx, path, tuple(size) if size else None)
    name = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}][0].name
    with private_tempdir("onnx") as tmp:
        saved = os.path.join(tmp, "saved_model")
        try:
            with _no_download(onnx2tf), quiet_native_stderr(quiet), \
                    contextlib.redirect_stdout(_Sink()):
                onnx2tf.convert(input_onnx_file_path=path, output_folder_path=saved, non_verbose=True,
                                output_signaturedefs=True, overwrite_input_shape=[f"{name}:{','.join(map(str, dims))}"],
                                disable_strict_mode=False)
        except (ConversionError, ModelError):
            raise
        except Exception as exc:  # noqa: BLE001 - onnx2tf raises many types (and SystemExit on some ops)
            raise ConversionError(f"onnx2tf could not convert {os.path.basename(path)}: {exc}. Unsupported ONNX "
                                  "ops are named above; try another opset in the export (opset 13-17)") from exc
        except SystemExit as exc:
            raise ConversionError(f"onnx2tf stopped converting {os.path.basename(path)} (exit {exc.code}); run "
                                  "with -v to see its log") from exc
        if not os.path.isfile(os.path.join(saved, "saved_model.pb")):
            raise ConversionError(f"onnx2tf produced no SavedModel for {os.path.basename(path)}")
        yield OnnxSaved(saved, tuple(dims), float_bytes, ())


class _Sink:
    """A stdout that drops onnx2tf's progress tables (edgeq reports its own)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def _no_download(onnx2tf: Any) -> Iterator[None]:
    """onnx2tf's self-check fetches sample images from the network; give it local seeded ones instead."""
    import importlib

    module = importlib.import_module("onnx2tf.onnx2tf")
    original = module.download_test_image_data
    module.download_test_image_data = lambda: np.random.default_rng(0).random((20, 128, 128, 3), np.float32)
    try:
        yield
    finally:
        module.download_test_image_data = original
