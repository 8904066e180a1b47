"""Batched model execution for evaluation: .tflite through LiteRT, Keras/SavedModel through TensorFlow.

Evaluation runs thousands of images, so models whose batch dimension is dynamic
(``shape_signature[0] == -1``) are resized to a batch once and fed whole batches; others run one
sample at a time. Integer inputs are fed through ``Preprocess.quantize_lut`` (pixel -> quantized
value in one exact table lookup); outputs are always dequantized to float for comparison.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError
from ..metadata import read_metadata
from ..modelinfo import TensorSpec, inspect_model
from ..preprocess import Preprocess
from ..tflite_format import load_model_file

log = logging.getLogger(__name__)


class ModelRunner(Protocol):
    """What the evaluator needs from a model."""

    path: str
    size_bytes: int
    input_shape: tuple[int, ...]      # (1, H, W, C) as the model declares it
    labels: tuple[str, ...]
    preprocess: Preprocess | None     # the embedded contract, if any

    def predict(self, pixels: np.ndarray, pre: Preprocess) -> list[np.ndarray]:
        """uint8 pixels [N,H,W,C] (already resized/colour-converted by ``pre``) -> float outputs [N,...]."""

    def close(self) -> None: ...


@dataclasses.dataclass
class TFLiteRunner:
    """A .tflite model (path or bytes) run by ai-edge-litert's interpreter (XNNPACK by default)."""

    path: str
    size_bytes: int
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    preprocess: Preprocess | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: int
    _interp: Any = None
    _batched_to: int = 0

    @classmethod
    def open(cls, model: str | os.PathLike | bytes, num_threads: int | None = None, batch: int = 256,
             name: str | None = None) -> "TFLiteRunner":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - ai-edge-litert is a core dependency
            raise ModelError("running .tflite models needs ai-edge-litert (pip install ai-edge-litert)") from exc
        data, mf = load_model_file(model)
        report = inspect_model(data)
        if len(report.inputs) != 1:
            raise ModelError(f"{name or model}: evaluation supports single-input image models; this one has "
                             f"{len(report.inputs)} inputs")
        meta = read_metadata(mf)
        try:
            interp = Interpreter(model_content=bytes(data), num_threads=num_threads or os.cpu_count() or 1)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load {name or model}: {exc}") from exc
        spec = report.inputs[0]
        dynamic_batch = bool(spec.shape_signature) and spec.shape_signature[0] == -1
        path = name or (str(model) if not isinstance(model, (bytes, bytearray)) else "<bytes>")
        if not dynamic_batch and batch > 1:
            log.info("%s has a fixed batch of %d: evaluating one sample at a time", path, spec.shape[0])
        runner = cls(path=path, size_bytes=len(data), input_shape=tuple(spec.shape),
                     labels=tuple(meta.labels) if meta else (), preprocess=meta.preprocess if meta else None,
                     inputs=report.inputs, outputs=report.outputs,
                     batch=batch if dynamic_batch else 1, _interp=interp)
        interp.allocate_tensors()
        return runner

    def _resize(self, n: int) -> None:
        if n == self._batched_to:
            return
        idx = self._interp.get_input_details()[0]["index"]
        self._interp.resize_tensor_input(idx, [n, *self.input_shape[1:]], strict=False)
        self._interp.allocate_tensors()
        self._batched_to = n

    def _to_input(self, pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
        spec = self.inputs[0]
        if spec.dtype in ("int8", "uint8", "int16"):
            if spec.scale is None:
                raise ModelError(f"{self.path}: integer input {spec.name!r} has no per-tensor scale")
            lut = pre.quantize_lut(spec.scale, spec.zero_point or 0, np.dtype(spec.dtype))
            return lut[pixels, np.arange(pixels.shape[-1])]
        return np.stack([pre.normalize(p) for p in pixels]).astype(np.float32)

    def predict(self, pixels: np.ndarray, pre: Preprocess) -> list[np.ndarray]:
        x = self._to_input(pixels, pre)
        if self.batch > 1:
            return self._run(x)
        parts = [self._run(x[i:i + 1]) for i in range(len(x))]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        self._resize(len(x))
        interp = self._interp
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outs = []
        for det in interp.get_output_details():
            y = interp.get_tensor(det["index"])
            scale, zp = det["quantization"]
            outs.append((y.astype(np.float32) - zp) * scale if scale else y.astype(np.float32))
        return outs

    def close(self) -> None:
        self._interp = None


@dataclasses.dataclass
class KerasRunner:
    """A float Keras (.keras/.h5) or SavedModel reference, run by TensorFlow in batches."""

    path: str
    size_bytes: int
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    preprocess: Preprocess | None
    _fn: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "KerasRunner":
        from ..converter import _load_keras, describe_source_model, import_tensorflow

        kind, desc = describe_source_model(path)
        tf = import_tensorflow()
        p = pathlib.Path(desc)
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        if kind == "saved_model":
            loaded = tf.saved_model.load(desc)
            sig = loaded.signatures["serving_default"]
            spec = list(sig.structured_input_signature[1].values())[0]
            shape = (1, *[int(d) for d in spec.shape[1:]])

            def fn(x: np.ndarray) -> list[np.ndarray]:
                out = sig(tf.constant(x))
                return [np.asarray(out[k]) for k in sorted(out)]
            return cls(desc, size, shape, (), None, fn)
        model = _load_keras(desc)
        shape = (1, *[int(d) for d in model.inputs[0].shape[1:]])

        def kfn(x: np.ndarray) -> list[np.ndarray]:
            y = model(x, training=False)
            ys = y if isinstance(y, (list, tuple)) else [y]
            return [np.asarray(v) for v in ys]
        return cls(desc, size, shape, (), None, kfn)

    def predict(self, pixels: np.ndarray, pre: Preprocess) -> list[np.ndarray]:
        x = np.stack([pre.normalize(p) for p in pixels]).astype(np.float32)
        return [o.astype(np.float32) for o in self._fn(x)]

    def close(self) -> None:
        self._fn = None


def open_runner(model: str | os.PathLike | bytes, num_threads: int | None = None, batch: int = 256,
                name: str | None = None) -> ModelRunner:
    """A runner for a .tflite file/bytes, or a Keras/SavedModel float reference."""
    if isinstance(model, (bytes, bytearray)) or str(model).lower().endswith(".tflite"):
        return TFLiteRunner.open(model, num_threads=num_threads, batch=batch, name=name)
    return KerasRunner.open(model)
