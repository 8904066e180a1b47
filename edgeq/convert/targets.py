"""``edgeq convert --target edgetpu``: shape the converted model for the Edge TPU, then check it.

Coral's requirements (coral.ai/docs/edgetpu/models-intro/): 8-bit full integer, static sizes,
batch 1. edgeq therefore converts with int8 activations and per-channel int8 weights (supported
by the compiler since 2.x), uint8 model input/output by default (Coral's examples feed uint8
pixels), exports Keras models with a batch-1 signature (no run-time shape arithmetic), freezes
what is still dynamic (``shape_signature [-1, ...]``, e.g. a SavedModel input) and runs the
pre-flight check on the result. The converter imports this lazily; nothing here needs TensorFlow.
Steps return the warnings they find (``(value, warnings)``) for ``ConversionResult.warnings``.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ..edgetpu.check import EdgeTpuReport, check_model
from ..edgetpu.shapes import freeze_shapes_bytes
from ..errors import UsageError
from ..preprocess import quantize_values
from ..tflite_format import load_model_file
from .recipes import Recipe

log = logging.getLogger(__name__)

TARGETS = ("edgetpu",)


def validate_target(target: str | None) -> None:
    if target is not None and target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")


def recipe_for_target(rec: Recipe, target: str | None) -> Recipe:
    """Refuse recipes the Edge TPU cannot run (it needs 8-bit full integer); the default recipe is chosen by
    ``convert``: uint8 model I/O (Coral's convention) unless the caller names another recipe."""
    validate_target(target)
    if target is None:
        return rec
    if not rec.full_integer or rec.activations != "int8":
        raise UsageError(f"--target edgetpu needs an 8-bit full-integer recipe (int8 or uint8), not {rec.name!r}: "
                         "the Edge TPU computes only on 8-bit integer tensors")
    if not rec.per_channel:
        log.info("--target edgetpu with per-tensor weights: allowed, per-channel is usually more accurate")
    return rec


def export_options_for_target(tf: Any, keras_model: Any,
                              target: str | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Keras ``export`` options for the target (a batch-1 input signature), and any warning.

    Why: Keras exports a dynamic batch, and a layer such as Flatten then becomes run-time shape
    arithmetic (SHAPE, STRIDED_SLICE and PACK on int32, then RESHAPE) that the Edge TPU cannot run
    and that freezing shapes afterwards cannot remove; with batch 1 the converter folds it away.
    """
    if target is None:
        return {}, ()
    inputs = getattr(keras_model, "inputs", None)
    if not isinstance(inputs, (list, tuple)) or not inputs or any(len(t.shape) < 1 for t in inputs):
        return {}, (f"--target {target}: cannot read the Keras model's inputs; exported with its own (dynamic) "
                    "batch size, which edgeq then freezes to 1",)
    return {"input_signature": [tf.TensorSpec((1,) + tuple(t.shape[1:]), t.dtype, name=t.name) for t in inputs]}, ()


def _quantized_sample(data: bytes, sample: np.ndarray) -> np.ndarray:
    """A preprocessed float sample (HxWxC) in the model input's dtype, with a batch axis."""
    _, mf = load_model_file(data)
    t = mf.main.tensors[mf.main.inputs[0]]
    x = np.asarray(sample, dtype=np.float32)[None, ...]
    if t.dtype in ("INT8", "UINT8") and t.scale:
        return quantize_values(x, t.scale[0], t.zero_point[0] if t.zero_point else 0, t.dtype.lower())
    return x.astype(t.dtype.lower())


def prepare_for_target(data: bytes, target: str | None, dataset: Any, preprocess: Any) -> bytes:
    """Freeze dynamic shapes (batch 1, H/W from the preprocessing), verified on a real calibration sample."""
    if target is None:
        return data
    size = (preprocess.width, preprocess.height) if preprocess is not None else None
    sample = None
    if dataset is not None:
        first = next(iter(dataset), None)
        if first is not None:
            sample = (_quantized_sample(data, first), "the first calibration sample")
    frozen, result = freeze_shapes_bytes(data, size, sample)
    if not result.already_static:
        shapes = ", ".join(f"{i.name} {list(i.shape_signature)} -> {list(i.frozen_shape)}" for i in result.inputs)
        log.info("froze %d tensor shapes (%s); same output on %s", result.changed_tensors, shapes, result.verified_on)
    return frozen


def check_for_target(path: str | os.PathLike,
                     target: str | None) -> tuple[EdgeTpuReport | None, tuple[str, ...]]:
    """Run the Edge TPU check on the written model; a verdict that is not 'fully mapped' becomes a warning."""
    if target is None:
        return None, ()
    report = check_model(path)
    if report.compatible:
        return report, ()
    first = report.first_unmapped
    what = (f"first unmapped op #{first.index} {first.op}: {first.reason}" if first is not None
            else "; ".join(report.issues))
    return report, (f"Edge TPU check: the model would NOT map fully ({report.tpu_ops} op(s) on the Edge TPU, "
                    f"{report.cpu_ops} on the CPU); {what}",)
