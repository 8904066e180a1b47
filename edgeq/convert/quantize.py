"""Calibrate once, quantize many times: the engine behind range methods and mixed precision.

TensorFlow Lite's converter can stop after calibration (``_experimental_calibrate_only``): the
result is a float .tflite whose activation tensors carry the recorded min/max. Quantizing that
model with ``mlir_quantize`` takes milliseconds, so edgeq can (1) replace the recorded ranges
before quantizing (percentile or MSE-optimal ranges, see ``edgeq.convert.ranges``), and (2) quantize it again
and again with different layers kept in float (``denylisted_nodes``) while searching for a model
that meets an accuracy budget. The calibrated model is also an exact float reference (it runs
the float graph), so the search needs no second float conversion.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import ConversionError, UsageError
from ..tflite_format import FLOAT_TYPES, load_model_file
from .recipes import Recipe

log = logging.getLogger(__name__)

# Ops whose output scale TFLite fixes by itself (ranges there are not ours to change).
FIXED_RANGE_OPS = frozenset({"SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX"})


@dataclasses.dataclass(frozen=True)
class Layer:
    """A quantizable activation tensor and the ops that must run in float to keep it float."""

    name: str                   # the producing op's output tensor name (a debugger node name)
    op: str                     # the producing op type, e.g. CONV_2D
    op_index: int
    float_nodes: tuple[str, ...]  # node names to denylist: the producer and every consumer


def _io_dtype(tf: Any, rec: Recipe) -> Any:
    name = rec.effective_io_dtype
    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}.get(name) or _bad_io(name)


def _bad_io(name: str) -> Any:
    raise UsageError(f"range methods and mixed precision support int8/uint8/float32 model I/O, not {name}")


def check_recipe(rec: Recipe) -> None:
    """Mixed precision and range methods go through the int8 MLIR quantizer only."""
    if rec.activations != "int8" or not rec.needs_calibration:
        raise UsageError(f"recipe {rec.name!r} ({rec.activations} activations): float layers and range methods "
                         "need an int8-activation recipe (int8 or uint8); TFLite cannot mix int16 and int8 "
                         "activations inside one model")


class CalibratedModel:
    """A float .tflite with recorded activation ranges, ready to be quantized any number of times."""

    def __init__(self, tf: Any, data: bytes, recipe: Recipe, notes: tuple[str, ...] = ()):
        self.tf = tf
        self.data = bytes(data)
        self.recipe = recipe
        self.notes = notes   # what calibration had to say (e.g. that it fell back to TFLite's calibrator)
        self._layers: tuple[Layer, ...] | None = None

    @classmethod
    def calibrate(cls, tf: Any, converter: Any, recipe: Recipe, *, calibrator: str | None = None) -> CalibratedModel:
        """Run the converter's calibration only (the converter is configured by edgeq.convert.converter).

        calibrator: 'xnnpack' (``edgeq.convert.fastcal``: TFLite's ranges, recorded ~10x faster) or 'tflite'
        (TensorFlow Lite's own calibrator); default from EDGEQ_CALIBRATOR, else 'xnnpack'.
        """
        from .fastcal import calibrate_fast, calibrator_choice

        check_recipe(recipe)
        converter.experimental_mlir_quantizer = True

        def calibrate_only() -> bytes:
            converter._experimental_calibrate_only = True  # noqa: SLF001 - the documented debugger route
            try:
                with warnings.catch_warnings():  # the frozen-graph route asks for input stats it never uses here:
                    warnings.filterwarnings("ignore", "Statistics for quantized inputs")  # calibration sets them
                    return bytes(converter.convert())
            finally:
                converter._experimental_calibrate_only = False  # noqa: SLF001

        if (calibrator or calibrator_choice()) == "tflite":
            return cls(tf, calibrate_only(), recipe)
        fast = calibrate_fast(converter, calibrate_only)
        return cls(tf, fast.data, recipe, (fast.note,) if fast.note else ())

    def quantize(self, float_nodes: Sequence[str] = (), float_ops: Sequence[str] = ()) -> bytes:
        """int8-quantize, keeping the given nodes (output tensor names) and op types in float."""
        from tensorflow.lite.python import convert as tf_convert

        io = _io_dtype(self.tf, self.recipe)
        unknown = sorted(set(float_nodes) - set(self.node_names()))
        if unknown:
            raise UsageError(f"float_nodes not in this model: {unknown[:3]}; the recipe was made for another model "
                             "or converter version")
        try:
            out = tf_convert.mlir_quantize(self.data, disable_per_channel=not self.recipe.per_channel,
                                           input_data_type=io, output_data_type=io,
                                           denylisted_nodes=list(float_nodes) or None,
                                           denylisted_ops=list(float_ops) or None)
        except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
            raise ConversionError(f"TFLite quantizer failed: {str(exc).strip().splitlines()[0]}") from exc
        return bytes(out)

    def with_data(self, data: bytes) -> CalibratedModel:
        return CalibratedModel(self.tf, data, self.recipe, self.notes)

    def with_recipe(self, recipe: Recipe) -> CalibratedModel:
        return CalibratedModel(self.tf, self.data, recipe, self.notes)

    @property
    def float_size(self) -> int:
        """The float model's size, for the search's cost guard (a .tflite source: its own file)."""
        return len(self.data)

    # ---- graph -----------------------------------------------------------------------------
    def node_names(self) -> list[str]:
        _, mf = load_model_file(self.data)
        return [mf.main.tensors[o].name for op in mf.main.operators for o in op.outputs]

    def layers(self) -> tuple[Layer, ...]:
        """Every op-output activation tensor, with the ops that keep it float if it must be."""
        if self._layers is not None:
            return self._layers
        _, mf = load_model_file(self.data)
        sg = mf.main
        consumers: dict[int, list[int]] = {}
        for op in sg.operators:
            for i in op.inputs:
                if i >= 0:
                    consumers.setdefault(i, []).append(op.index)
        out_name = {op.index: sg.tensors[op.outputs[0]].name for op in sg.operators if op.outputs}
        graph_outputs = set(sg.outputs)
        layers = []
        for op in sg.operators:
            if not op.outputs or op.op in FIXED_RANGE_OPS:
                continue
            t = op.outputs[0]
            if sg.tensors[t].dtype not in FLOAT_TYPES or t in graph_outputs:
                continue
            nodes = [out_name[op.index]] + [out_name[c] for c in consumers.get(t, []) if c in out_name]
            layers.append(Layer(sg.tensors[t].name, op.op, op.index, tuple(dict.fromkeys(nodes))))
        self._layers = tuple(layers)
        return self._layers

    # ---- recorded ranges -------------------------------------------------------------------
    def recorded_ranges(self) -> dict[int, tuple[float, float]]:
        """{tensor index: (min, max)} as calibration recorded them (names are not unique: indices are)."""
        from .fastcal import ranged_tensors

        return ranged_tensors(self.data)

    def with_ranges(self, ranges: dict[int, tuple[float, float]]) -> CalibratedModel:
        """A copy whose recorded min/max are replaced for the given tensor indices."""
        from .fastcal import write_ranges

        return self.with_data(write_ranges(self.data, ranges))


def input_batches(rep: Callable[[], Iterable[Sequence[np.ndarray]]] | None) -> Callable[[], Iterable[np.ndarray]]:
    """The representative dataset as a generator of single float input arrays."""
    if rep is None:
        raise UsageError("range methods need calibration data")

    def gen() -> Iterable[np.ndarray]:
        for sample in rep():
            yield np.asarray(sample[0], np.float32)
    return gen
