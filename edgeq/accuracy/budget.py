"""``convert_to_budget``: a conversion whose recipe is chosen by an accuracy target.

The verb behind ``edgeq convert --max-accuracy-drop POINTS --eval-data SRC``. It runs the convert
wing's named steps (plan, prepared converter, finish) and replaces only the quantize step by the
mixed-precision search (``mixed.search_mixed_precision``): accuracy uses convert, never the reverse.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._native import NativeLog
from ..convert.converter import (
    ConversionResult,
    PreparedConverter,
    Quantized,
    finish_conversion,
    prepared_converter,
    run_quantizer,
)
from ..convert.plan import plan_conversion
from ..convert.quantize import CalibratedModel, check_recipe, input_batches
from ..convert.ranges import AUTO, calibrate
from ..convert.recipes import Recipe
from ..convert.select import select_range_method
from ..errors import UsageError
from ..preprocess import Preprocess
from .data import EvalData, read_eval_data
from .mixed import EDGE_TPU_NOTE, Scorer, search_mixed_precision

log = logging.getLogger(__name__)


def convert_to_budget(model: Any, calibration: Any = None, output: str | os.PathLike | None = None, *,
                      max_accuracy_drop: float | None = None, max_agreement_drop: float | None = None,
                      eval_data: Any = None, recipe: str | Recipe | None = None,
                      preprocess: Preprocess | None = None, num_samples: int = 200, seed: int = 0,
                      labels: Sequence[str] | str | os.PathLike | None = None, task: str = "classify",
                      force: bool = False, preprocess_options: dict[str, Any] | None = None,
                      transform: Callable[[Any], Any] | None = None,
                      progress: Callable[[int, int], None] | None = None, quiet: bool = True,
                      save_recipe: bool = True, target: str | None = None,
                      info: Callable[[str], None] | None = None) -> ConversionResult:
    """Like ``edgeq.convert``, keeping in float only the layers that measurably help, until the model loses at
    most `max_accuracy_drop` top-1 points on labelled `eval_data` (as ``edgeq eval --data`` takes), or at most
    `max_agreement_drop` points of top-1 agreement with the float model (unlabelled data works).

    With the recipe's range method ``auto`` (``make_recipe(range_method="auto")``), the range method is
    chosen on `eval_data` first. The result's ``accuracy`` holds the search log; its recipe is named
    ``mixed`` when float layers were kept. info: receives one line per search step (it can take minutes).
    """
    started = time.perf_counter()
    plan = plan_conversion(model, calibration, output, recipe=recipe, target=target, task=task, labels=labels,
                           force=force, num_samples=num_samples, seed=seed, save_recipe=save_recipe,
                           transform=transform)
    budget, metric = budget_metric(max_accuracy_drop, max_agreement_drop)
    data = budget_data(plan.recipe, budget, eval_data, metric)  # validated before TensorFlow loads
    if plan.kind == "tflite_file":  # ai-edge-quantizer's route: the pre-passed float model is the reference
        from ..convert.tflite_source import CalibratedTflite, prepare_tflite_source

        src, pre, warnings = prepare_tflite_source(plan.source, None, plan.dataset, preprocess, preprocess_options)
        prep = PreparedConverter(None, None, None, pre, None, plan.source, warnings, src.float_weights_bytes)
        quantized = run_quantizer(plan.recipe, quiet, lambda native_log: search_step(
            prep, plan.recipe, data, budget, plan.labels, _relay(info, native_log), metric,
            calibrated=lambda: CalibratedTflite.calibrate_source(src, plan.dataset, plan.recipe)), plan.dataset)
        return finish_conversion(plan, prep, quantized, started)
    with prepared_converter(model, plan.dataset, plan.recipe, preprocess, preprocess_options, quiet=quiet,
                            progress=progress, target=target) as prep:
        quantized = run_quantizer(plan.recipe, quiet, lambda native_log: search_step(
            prep, plan.recipe, data, budget, plan.labels, _relay(info, native_log), metric), plan.dataset)
    return finish_conversion(plan, prep, quantized, started)


def budget_metric(max_accuracy_drop: float | None, max_agreement_drop: float | None) -> tuple[float | None, str]:
    """(budget, metric) from the two budget options: exactly one may be given."""
    if max_accuracy_drop is not None and max_agreement_drop is not None:
        raise UsageError("give --max-accuracy-drop (top-1, labelled data) or --max-agreement-drop (agreement with "
                         "the float model), not both")
    if max_agreement_drop is not None:
        return max_agreement_drop, "agreement"
    return max_accuracy_drop, "top1"


def budget_data(rec: Recipe, max_drop: float | None, eval_data: Any, metric: str = "top1") -> EvalData:
    """Validate the budget and --eval-data up front (no TensorFlow yet); the opened data."""
    flag = "--max-accuracy-drop" if metric == "top1" else "--max-agreement-drop"
    if max_drop is None:
        if eval_data is not None:
            raise UsageError("--eval-data is used with --max-accuracy-drop or --max-agreement-drop; give one of them")
        raise UsageError("convert_to_budget needs max_accuracy_drop or max_agreement_drop "
                         "(--max-accuracy-drop / --max-agreement-drop POINTS)")
    if eval_data is None:
        raise UsageError(f"{flag} needs --eval-data SRC (images to measure the drop on"
                         + (", labelled)" if metric == "top1" else ")"))
    if max_drop < 0:
        raise UsageError(f"{flag} must be >= 0 points, got {max_drop}")
    check_recipe(rec)
    data = read_eval_data(eval_data)
    if metric == "top1" and not data.labelled:
        raise UsageError(f"{data.source} has no labels, so a top-1 drop cannot be measured: use "
                         "--max-agreement-drop POINTS (top-1 agreement with the float model) instead")
    return data


def search_step(prep: PreparedConverter, rec: Recipe, data: EvalData, max_drop: float, labels: Sequence[str],
                progress: Callable[[str], None] | None = None, metric: str = "top1",
                calibrated: Callable[[], CalibratedModel] | None = None) -> Quantized:
    """The quantize step of a budgeted conversion: calibrate once, (choose the range method,) search.

    progress receives one line per search step (the CLI shows them: the search can take minutes).
    calibrated: calibrates another way than TensorFlow's converter (a .tflite source's ai-edge-quantizer)."""
    say = progress or log.info
    warnings = []
    order_warning = data.name_order_warning(labels)
    if order_warning:
        warnings.append(order_warning)
    cal = calibrated() if calibrated is not None else calibrate(prep.tf, prep.converter, rec, prep.representative)
    selection = None
    if rec.range_method == AUTO:
        scorer = Scorer(cal.data, data, prep.preprocess, labels, metric=metric)

        def score(model: bytes) -> tuple[float, float]:
            s = scorer.score(model)
            return s.drop, s.sqnr_db
        cal, selection = select_range_method(cal, input_batches(prep.representative), score, data.source,
                                             len(scorer.pixels))
        say(selection.describe())
    result = search_mixed_precision(cal, data, prep.preprocess, max_drop, labels=labels, metric=metric,
                                    progress=say)
    step = result.steps[result.chosen]
    if step.float_layers:
        warnings.append(f"kept {len(step.float_layers)} activation tensor(s) in float ({len(step.float_nodes)} ops) to "
                        f"meet the accuracy budget; {EDGE_TPU_NOTE}")
    warnings += result.notes
    log_dict = result.to_dict()
    recipe = result.recipe
    if selection is not None:
        log_dict["range_selection"] = selection.to_dict()
        recipe = recipe.replace(notes=f"{selection.describe()}; {recipe.notes}")
    return Quantized(result.model, recipe, tuple(warnings), log_dict)


def _relay(info: Callable[[str], None] | None, native_log: NativeLog) -> Callable[[str], None] | None:
    """`info` made to reach the real stderr while the converter's native logs are silenced."""
    if info is None:
        return None

    def say(msg: str) -> None:
        with native_log.real_stderr():
            info(msg)
    return say
