"""Many recipes from one model in one process: one export, one calibration per float graph.

``edgeq.convert`` per recipe pays the model load, the SavedModel export, the float conversion and the
calibration every time. Most of that does not depend on the recipe: the int8-activation recipes (int8,
uint8, per-tensor, float I/O, range methods, float layers) differ only in how the calibrated float
model is quantized, so they share one ``CalibratedModel`` and cost a quantizer run (~0.1-1 s) each;
the others (float16, dynamic, float32, int16x8) reuse the export with a fresh converter. Each result is
written, checked and described exactly as ``edgeq.convert`` does it (``finish_conversion``).
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..preprocess import Preprocess
from .converter import (
    ConversionResult,
    PreparedConverter,
    Quantized,
    configure_converter,
    finish_conversion,
    prepared_converter,
    quantize,
    run_quantizer,
)
from .plan import ConversionPlan, calibration_dataset, plan_conversion
from .quantize import CalibratedModel, input_batches
from .ranges import AUTO, apply_range_method
from .recipes import Recipe


def shares_calibration(rec: Recipe) -> bool:
    """int8 activations, calibrated, range chosen without held-out data: quantized from the shared
    calibration (``auto`` measures on held-out items and goes through ``edgeq.convert``'s own step)."""
    return rec.activations == "int8" and rec.needs_calibration and rec.range_method != AUTO \
        and rec.weights != "int4"


def _graph_key(rec: Recipe) -> bool:
    """Whether the float graph is converted with float builtins allowed (it may then differ)."""
    return bool(rec.allow_float_fallback or rec.float_nodes or rec.float_ops)


def convert_many(model: Any, calibration: Any, outputs: dict[str | Recipe, str | os.PathLike], *,
                 preprocess: Preprocess | None = None, preprocess_options: dict[str, Any] | None = None,
                 num_samples: int = 200, seed: int = 0, labels: Sequence[str] | str | os.PathLike | None = None,
                 task: str | None = "classify", force: bool = False,
                 quiet: bool = True) -> list[ConversionResult]:
    """Convert ``model`` to every recipe in ``outputs`` ({recipe or name: output path}), in that order.

    Same arguments as ``edgeq.convert`` (no target); the int8-activation recipes share one export and
    one calibration, so e.g. int8 + per-tensor int8 + uint8 cost little more than int8 alone.
    """
    if not outputs:
        raise UsageError("convert_many needs at least one {recipe: output path}")
    started = time.perf_counter()
    dataset = calibration_dataset(calibration, num_samples=num_samples, seed=seed) if calibration is not None \
        else None
    plans = [plan_conversion(model, dataset if _needs_data(r) else None, out, recipe=r, task=task, labels=labels,
                             force=force, num_samples=num_samples, seed=seed) for r, out in outputs.items()]
    for p in plans:
        if p.kind in ("tflite_file", "onnx_file") or p.recipe.weights == "int4":
            raise UsageError(f"convert_many takes Keras and SavedModel sources with TFLite-converter recipes; "
                             f"convert {p.source} to {p.recipe.name!r} with edgeq.convert")
    shared = [p for p in plans if shares_calibration(p.recipe)]
    base = shared[0].recipe if shared else plans[0].recipe
    results: dict[int, ConversionResult] = {}
    with prepared_converter(model, dataset, base, preprocess, preprocess_options, quiet=quiet) as prep:
        calibrated: dict[bool, CalibratedModel] = {}
        for i, plan in enumerate(plans):
            t0 = time.perf_counter() if i else started
            quantized = _quantize_one(plan, prep, base, calibrated, quiet)
            results[i] = finish_conversion(plan, prep, quantized, t0)
    return [results[i] for i in range(len(plans))]


def _needs_data(recipe: str | Recipe) -> bool:
    from .plan import make_recipe

    return make_recipe(recipe).needs_calibration


def _quantize_one(plan: ConversionPlan, prep: PreparedConverter, base: Recipe,
                  calibrated: dict[bool, CalibratedModel], quiet: bool) -> Quantized:
    """One recipe: from the shared calibration of its float graph, else through a fresh converter."""
    rec = plan.recipe
    if not shares_calibration(rec):
        fresh = _fresh_converter(prep, rec)
        return run_quantizer(rec, quiet, lambda _log: quantize(fresh, rec, plan.dataset), plan.dataset)
    key = _graph_key(rec)
    if key not in calibrated:
        # prepared_converter configured the converter for the first shared recipe: the same float graph
        src = prep if shares_calibration(base) and key == _graph_key(base) else _fresh_converter(prep, rec)
        calibrated[key] = run_quantizer(rec, quiet, lambda _log: CalibratedModel.calibrate(
            src.tf, src.converter, rec), plan.dataset)
    cal = calibrated[key].with_recipe(rec)
    if rec.range_method != "minmax":
        cal = apply_range_method(cal, rec.range_method, input_batches(prep.representative))
    data = run_quantizer(rec, quiet, lambda _log: cal.quantize(rec.float_nodes, rec.float_ops), plan.dataset)
    return Quantized(data, rec, cal.notes)


def _fresh_converter(prep: PreparedConverter, rec: Recipe) -> PreparedConverter:
    """A converter on the same SavedModel configured for ``rec`` (converter settings never leak between
    recipes)."""
    converter = prep.tf.lite.TFLiteConverter.from_saved_model(prep.saved_dir)
    configure_converter(prep.tf, converter, rec, prep.representative)
    return dataclasses.replace(prep, converter=converter)
