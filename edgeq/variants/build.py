"""Make each variant as ``edgeq convert`` would write it, reusing one export and one calibration.

The convert wing's named steps do the work: ``prepared_converter`` exports the SavedModel once (an
.onnx goes through onnx2tf first) and settles the preprocessing contract; ``CalibratedModel`` runs
the calibration once and every int8-activation variant is ``quantize()`` of it with another recipe
(milliseconds each); ``finish_conversion`` checks, embeds the metadata and writes the file. int16x8
is quantized from the same recorded ranges by TFLite's int16 quantizer (the calibration does not
depend on the activation type: same ranges, same scales; recalibrated, and said so, if that fails).
float16/dynamic/float32 are plain conversions of the same export. A float .tflite source goes through
ai-edge-quantizer (``tflite_source.py``), calibrated once per activation type.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

from ..convert.converter import (
    ConversionResult,
    PreparedConverter,
    Quantized,
    configure_converter,
    finish_conversion,
    prepared_converter,
    run_quantizer,
)
from ..convert.plan import ConversionPlan, make_recipe
from ..convert.quantize import CalibratedModel
from ..convert.recipes import Recipe
from ..preprocess import Preprocess
from .specs import VariantSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuiltVariant:
    """A variant's file in the work folder, what `edgeq convert` reported for it, and its build time."""

    spec: VariantSpec
    path: pathlib.Path
    conversion: ConversionResult
    seconds: float

    @property
    def size_bytes(self) -> int:
        return self.conversion.size_bytes


class VariantBuilder:
    """Builds variants on demand from one prepared source; remembers the calibration and the timings."""

    def __init__(self, plan: ConversionPlan, prep: PreparedConverter, quiet: bool, tflite_source: Any = None):
        self.plan, self.quiet, self.src = plan, quiet, tflite_source
        self.prep = dataclasses.replace(prep, warnings=())   # said once, in notes, not once per variant
        self.notes: list[str] = [*plan.warnings, *prep.warnings]
        self.timings: dict[str, float] = {}
        self._cal: dict[str, CalibratedModel] = {}
        self._plan = dataclasses.replace(plan, warnings=(), recipe_file=None, force=True)

    @property
    def preprocess(self) -> Preprocess | None:
        return self.prep.preprocess

    def calibrated(self, activations: str = "int8") -> CalibratedModel:
        """The calibrated float model (one calibration; a .tflite source: one per activation type)."""
        key = activations if self.src is not None else "int8"
        if key not in self._cal:
            rec = make_recipe("int16x8" if key == "int16" else "int8")
            started = time.perf_counter()
            if self.src is not None:
                from ..convert.tflite_source import CalibratedTflite

                self._cal[key] = run_quantizer(rec, self.quiet, lambda _log: CalibratedTflite.calibrate_source(
                    self.src, self.plan.dataset, rec), self.plan.dataset)
            else:
                self._cal[key] = run_quantizer(rec, self.quiet, lambda _log: CalibratedModel.calibrate(
                    self.prep.tf, self.prep.converter, rec), self.plan.dataset)
            self.timings[f"calibrate_{key}_s"] = round(time.perf_counter() - started, 3)
        return self._cal[key]

    def build(self, spec: VariantSpec) -> BuiltVariant:
        """The variant's complete edgeq model (metadata, preprocessing contract) in the work folder."""
        started = time.perf_counter()
        rec = spec.recipe
        data = run_quantizer(rec, self.quiet, lambda _log: self._model_bytes(rec),
                             self.plan.dataset if rec.needs_calibration else None)
        out = self.plan.output.parent / f"{_slug(spec.name)}.tflite"
        plan = dataclasses.replace(self._plan, recipe=rec, output=out,
                                   dataset=self.plan.dataset if rec.needs_calibration else None)
        result = finish_conversion(plan, self.prep, Quantized(data, rec), started)
        seconds = time.perf_counter() - started
        self.timings[f"build {spec.name}_s"] = round(seconds, 3)
        return BuiltVariant(spec, pathlib.Path(result.output), result, seconds)

    def _model_bytes(self, rec: Recipe) -> bytes:
        if rec.activations == "int8" and rec.needs_calibration:
            return self.calibrated("int8").with_recipe(rec).quantize()
        if rec.activations == "int16":
            if self.src is not None:
                return self.calibrated("int16").with_recipe(rec).quantize()
            return self._int16(rec)
        if self.src is not None:  # float32 (float16/dynamic are refused before: specs.unavailable)
            return self.src.model
        return self._convert(rec)

    def _convert(self, rec: Recipe) -> bytes:
        """A plain conversion of the prepared export (float32, float16, dynamic; int16x8 as a fallback)."""
        tf = self.prep.tf
        converter = tf.lite.TFLiteConverter.from_saved_model(self.prep.saved_dir)
        configure_converter(tf, converter, rec, self.prep.representative)
        return bytes(converter.convert())

    def _int16(self, rec: Recipe) -> bytes:
        """int16x8 from the int8 calibration's recorded ranges: TFLite's int16 quantizer (the one its
        converter calls after calibrating) run on the already calibrated model, without a second pass."""
        import numpy as np
        from tensorflow.lite.python.optimize import calibrator

        cal = self.calibrated("int8")
        i16, i64 = np.dtype(np.int16).num, np.dtype(np.int64).num
        io = np.dtype(np.float32).num if rec.float_io else i16
        try:
            quantizer = calibrator.Calibrator(cal.data)._calibrator  # noqa: SLF001 - the converter's own quantizer
            return bytes(quantizer.QuantizeModel(io, io, rec.allow_float_fallback, i16, i64, not rec.per_channel,
                                                 False))
        except Exception as exc:  # noqa: BLE001 - a private API: any failure means "calibrate again"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.notes.append(f"int16x8: quantizing the int8 calibration's ranges failed ({first}); calibrated "
                              "again for it")
            started = time.perf_counter()
            data = self._convert(rec)
            self.timings["calibrate_int16_s"] = round(time.perf_counter() - started, 3)
            return data


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@contextlib.contextmanager
def variant_builder(model: Any, plan: ConversionPlan, preprocess: Preprocess | None,
                    preprocess_options: dict[str, Any] | None, quiet: bool = True) -> Iterator[VariantBuilder]:
    """Prepare the source once (export / pre-pass, preprocessing contract); the export lives until exit."""
    started = time.perf_counter()
    if plan.kind == "tflite_file":
        from ..convert.tflite_source import prepare_tflite_source

        src, pre, warnings = prepare_tflite_source(plan.source, None, plan.dataset, preprocess, preprocess_options)
        prep = PreparedConverter(None, None, None, pre, None, plan.source, warnings, src.float_weights_bytes)
        builder = VariantBuilder(plan, prep, quiet, src)
        builder.timings["prepare_s"] = round(time.perf_counter() - started, 3)
        yield builder
        return
    with prepared_converter(model, plan.dataset, plan.recipe, preprocess, preprocess_options, quiet=quiet) as prep:
        builder = VariantBuilder(plan, prep, quiet)
        builder.timings["export_s"] = round(time.perf_counter() - started, 3)
        yield builder
