"""The source model: what the model argument is, loading it, and what it says about its input.

Describing and validating a path needs no TensorFlow, so a wrong argument fails in milliseconds;
TensorFlow and Keras are imported here lazily, only when a model is really loaded.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any

from .._native import quiet_native_stderr
from ..errors import ConversionError, ModelError
from ..preprocess import Preprocess, resolve_preprocess

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
NORMALIZING_LAYERS = ("Rescaling", "Normalization")


def import_tensorflow() -> Any:
    """Import TensorFlow quietly, or explain how to get it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0"
    try:
        with quiet_native_stderr(quiet):  # absl/oneDNN banners go straight to fd 2 at import
            import tensorflow as tf
    except ImportError as exc:
        raise ConversionError("conversion needs TensorFlow >= 2.21: pip install 'edgeq[convert]' "
                              "(the runtime alone does not include it)") from exc
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    return tf


def describe_source_model(model: Any) -> tuple[str, str]:
    """(kind, description) for a model argument; validates paths without importing TensorFlow."""
    if isinstance(model, (str, os.PathLike)):
        p = pathlib.Path(model)
        if not p.exists():
            raise ModelError(f"model not found: {p}; expected a .keras/.h5/.tflite/.onnx file or a SavedModel "
                             "directory")
        if p.is_dir():
            if not (p / "saved_model.pb").exists():
                raise ModelError(f"{p} is a directory without saved_model.pb; expected a SavedModel directory")
            return "saved_model", str(p)
        if p.suffix.lower() in KERAS_SUFFIXES:
            return "keras_file", str(p)
        if p.suffix.lower() == ".tflite":  # a float .tflite (MediaPipe, model zoos): tflite_source.py
            return "tflite_file", str(p)
        if p.suffix.lower() == ".onnx":  # PyTorch exports: onnx_source.py (onnx2tf -> SavedModel)
            return "onnx_file", str(p)
        raise ModelError(f"{p}: unknown model type {p.suffix!r}; expected .keras, .h5, .tflite, .onnx or a "
                         "SavedModel directory")
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return "keras_model", f"<keras model {getattr(model, 'name', '?')}>"
    raise ModelError(f"unsupported model object {type(model).__name__}; pass a Keras model or a path")


def load_keras(path: str) -> Any:
    """A .keras/.h5 file as an uncompiled Keras model (conversion and evaluation need no optimizer)."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
        raise ModelError(f"cannot load Keras model {path}: {exc}") from exc


def input_shape(model: Any, kind: str) -> tuple[int, ...] | None:
    if kind == "saved_model":
        return None
    return tuple(model.inputs[0].shape)


def saved_model_input_shape(tf: Any, path: str) -> tuple[int, ...] | None:
    """The serving signature's input shape, or None (then --input-size must say it)."""
    try:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures["serving_default"]
        spec = list(fn.structured_input_signature[1].values())[0]
        return tuple(spec.shape)
    except Exception:  # noqa: BLE001 - fall back to --input-size
        return None


def first_layers(model: Any) -> list[str]:
    names = []
    for layer in getattr(model, "layers", [])[:4]:
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        names.append(cls)
    return names


def infer_preprocess(model: Any, kind: str, given: Preprocess | None,
                     options: dict[str, Any]) -> tuple[Preprocess, tuple[str, ...]]:
    """Fill the preprocessing contract from the model's input signature and the user's options.

    Returns the contract and the warnings found (a likely double normalisation)."""
    normalizes = any(n in NORMALIZING_LAYERS for n in first_layers(model)[:2]) if kind != "saved_model" else False
    if given is not None:
        pre = given
    else:
        shape = options.get("_saved_model_shape") if kind == "saved_model" else input_shape(model, kind)
        opts = {k: v for k, v in options.items() if not k.startswith("_")}
        pre = resolve_preprocess(shape, opts, model="the model", default_range="raw" if normalizes else "0,1",
                                 foreign=False).preprocess
    if normalizes and pre.range_name != "raw 0..255":
        return pre, (f"likely double normalisation: the model starts with a "
                     f"{'/'.join(n for n in first_layers(model)[:2] if n in NORMALIZING_LAYERS)} layer "
                     f"but the preprocessing also maps pixels to {pre.range_name}; "
                     "use --range raw if the layer expects 0..255 pixels",)
    return pre, ()


def float_weights_bytes(model: Any, kind: str, saved_dir: str | None) -> int:
    """The float model's weight bytes, the baseline of the reported compression."""
    if kind != "saved_model":
        return int(model.count_params()) * 4
    var_dir = pathlib.Path(saved_dir) / "variables"
    return sum(p.stat().st_size for p in var_dir.glob("*")) if var_dir.exists() else 0


def source_sha256(model: Any, kind: str, desc: str) -> str:
    """The source's fingerprint for the metadata: its files, or an in-memory model's weights."""
    return _hash_path(pathlib.Path(desc)) if kind != "keras_model" else _hash_weights(model)


def _hash_path(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _hash_weights(model: Any) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()
