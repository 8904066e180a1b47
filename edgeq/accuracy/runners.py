"""Batched model execution for evaluation: .tflite through edgeq's runtime, Keras/SavedModel through TensorFlow.

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
from ..modelinfo import TensorSpec
from ..preprocess import Preprocess, quantize_values

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
    """A .tflite model (path or bytes) loaded by the edgeq runtime (``edgeq.runtime.load``, XNNPACK).

    The runtime's ``EdgeModel.run`` takes the model's declared batch-1 shape only, so batches go
    through its ``interpreter`` (resized once to the batch) when the batch dimension is dynamic;
    otherwise samples run one at a time through ``EdgeModel.run``.
    """

    path: str
    size_bytes: int
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    preprocess: Preprocess | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: int
    _model: Any = None
    _batched_to: int = 0

    @classmethod
    def open(cls, model: str | os.PathLike | bytes, num_threads: int | None = None, batch: int = 256,
             name: str | None = None, delegate: str = "xnnpack") -> TFLiteRunner:
        from ..runtime import load

        m = load(model, delegate=delegate, num_threads=num_threads or os.cpu_count() or 1)
        path = name or m.source
        if len(m.inputs) != 1:
            m.close()
            raise ModelError(f"{path}: evaluation supports single-input image models; this one has "
                             f"{len(m.inputs)} inputs")
        spec = m.inputs[0]
        dynamic_batch = bool(spec.shape_signature) and spec.shape_signature[0] == -1 and m.interpreter is not None
        if not dynamic_batch and batch > 1:
            log.info("%s has a fixed batch of %d: evaluating one sample at a time", path, spec.shape[0])
        size = len(model) if isinstance(model, (bytes, bytearray)) else pathlib.Path(model).stat().st_size
        return cls(path=path, size_bytes=size, input_shape=tuple(spec.shape), labels=tuple(m.labels),
                   preprocess=m.preprocess, inputs=m.inputs, outputs=m.outputs,
                   batch=batch if dynamic_batch else 1, _model=m)

    def _to_input(self, pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
        spec = self.inputs[0]
        if spec.dtype in ("int8", "uint8", "int16") and spec.scale is None:
            raise ModelError(f"{self.path}: integer input {spec.name!r} has no per-tensor scale")
        return pre.encode(pixels, spec.dtype, spec.scale, spec.zero_point or 0)

    def predict(self, pixels: np.ndarray, pre: Preprocess) -> list[np.ndarray]:
        return self._feed(self._to_input(pixels, pre))

    def predict_tensors(self, x: np.ndarray) -> list[np.ndarray]:
        """Already-preprocessed float inputs [N,H,W,C] (e.g. calibration samples), quantized here if needed."""
        spec = self.inputs[0]
        if spec.dtype in ("int8", "uint8", "int16"):
            x = quantize_values(x, spec.scale, spec.zero_point or 0, spec.dtype)
        return self._feed(x.astype(np.float32) if x.dtype.kind == "f" else x)

    def _feed(self, x: np.ndarray) -> list[np.ndarray]:
        if self.batch > 1:
            return self._run_batch(x)
        m = self._model
        parts = [m.dequantize(m.run(x[i:i + 1])) for i in range(len(x))]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]

    def _run_batch(self, x: np.ndarray) -> list[np.ndarray]:
        interp = self._model.interpreter
        if len(x) != self._batched_to:
            interp.resize_tensor_input(self.inputs[0].index, [len(x), *self.input_shape[1:]], strict=False)
            interp.allocate_tensors()
            self._batched_to = len(x)
        interp.set_tensor(self.inputs[0].index, x)
        interp.invoke()
        return self._model.dequantize([interp.get_tensor(o.index) for o in self.outputs])

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None


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
    def open(cls, path: Any) -> KerasRunner:
        """path: .keras/.h5 file, SavedModel directory, or an in-memory Keras model."""
        from ..convert.source import describe_source_model, import_tensorflow, load_keras

        kind, desc = describe_source_model(path)
        tf = import_tensorflow()
        if kind == "keras_model":  # in memory: its float32 weights stand in for a file size
            return cls(desc, int(path.count_params()) * 4, (1, *[int(d) for d in path.inputs[0].shape[1:]]), (),
                       None, _keras_fn(path))
        p = pathlib.Path(desc)
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        if kind == "saved_model":
            loaded = tf.saved_model.load(desc)
            sig = loaded.signatures["serving_default"]
            spec = list(sig.structured_input_signature[1].values())[0]
            shape = (1, *[int(d) for d in spec.shape[1:]])

            def fn(x: np.ndarray, _keep: Any = loaded) -> list[np.ndarray]:  # the loaded object owns the weights
                out = sig(tf.constant(x))
                return [np.asarray(out[k]) for k in sorted(out)]
            return cls(desc, size, shape, (), None, fn)
        model = load_keras(desc)
        return cls(desc, size, (1, *[int(d) for d in model.inputs[0].shape[1:]]), (), None, _keras_fn(model))

    @classmethod
    def open_onnx(cls, path: Any) -> KerasRunner:
        """An ONNX float reference (a PyTorch export): onnx2tf makes it an NHWC SavedModel, run by TensorFlow,
        the same route `edgeq convert` takes, so the reference sees what the quantized model was made from."""
        from ..convert.onnx_source import onnx_as_saved_model

        with onnx_as_saved_model(str(path), None) as saved:
            runner = cls.open(saved.saved_dir)  # loaded into memory: the temporary folder may go
        return dataclasses.replace(runner, path=str(path), size_bytes=pathlib.Path(path).stat().st_size)

    def predict(self, pixels: np.ndarray, pre: Preprocess) -> list[np.ndarray]:
        x = np.stack([pre.normalize(p) for p in pixels]).astype(np.float32)
        return [o.astype(np.float32) for o in self._fn(x)]

    def close(self) -> None:
        self._fn = None


def _keras_fn(model: Any) -> Any:
    def run(x: np.ndarray) -> list[np.ndarray]:
        y = model(x, training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return [np.asarray(v) for v in ys]
    return run


def open_runner(model: Any, num_threads: int | None = None, batch: int = 256,
                name: str | None = None) -> ModelRunner:
    """A runner for a .tflite file/bytes, or a Keras/SavedModel/ONNX (path or in-memory model) float reference."""
    if isinstance(model, (bytes, bytearray)) or str(model).lower().endswith(".tflite"):
        return TFLiteRunner.open(model, num_threads=num_threads, batch=batch, name=name)
    if str(model).lower().endswith(".onnx"):
        return KerasRunner.open_onnx(model)
    return KerasRunner.open(model)
