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
from ..convert.quantize import check_recipe
from ..convert.ranges import calibrate
from ..convert.recipes import Recipe
from ..errors import UsageError
from ..preprocess import Preprocess
from .data import EvalData, read_eval_data
from .mixed import EDGE_TPU_NOTE, search_mixed_precision

log = logging.getLogger(__name__)


def convert_to_budget(model: Any, calibration: Any = None, output: str | os.PathLike | None = None, *,
                      max_accuracy_drop: float, eval_data: Any = None, recipe: str | Recipe | None = None,
                      preprocess: Preprocess | None = None, num_samples: int = 200, seed: int = 0,
                      labels: Sequence[str] | str | os.PathLike | None = None, task: str = "classify",
                      force: bool = False, preprocess_options: dict[str, Any] | None = None,
                      transform: Callable[[Any], Any] | None = None,
                      progress: Callable[[int, int], None] | None = None, quiet: bool = True,
                      save_recipe: bool = True, target: str | None = None,
                      info: Callable[[str], None] | None = None) -> ConversionResult:
    """Like ``edgeq.convert``, keeping the fewest layers in float that lose at most `max_accuracy_drop`
    top-1 points on `eval_data` (labelled images, as ``edgeq eval --data`` takes).

    The result's ``accuracy`` holds the search log; its recipe names the float layers chosen.
    info: receives one line per search step (the search can take minutes), e.g. for a CLI.
    """
    started = time.perf_counter()
    plan = plan_conversion(model, calibration, output, recipe=recipe, target=target, task=task, labels=labels,
                           force=force, num_samples=num_samples, seed=seed, save_recipe=save_recipe,
                           transform=transform)
    data = budget_data(plan.recipe, max_accuracy_drop, eval_data)  # validated before TensorFlow loads
    with prepared_converter(model, plan.dataset, plan.recipe, preprocess, preprocess_options, quiet=quiet,
                            progress=progress, target=target) as prep:
        quantized = run_quantizer(plan.recipe, quiet, lambda native_log: search_step(
            prep, plan.recipe, data, max_accuracy_drop, plan.labels, _relay(info, native_log)), plan.dataset)
    return finish_conversion(plan, prep, quantized, started)


def budget_data(rec: Recipe, max_drop: float | None, eval_data: Any) -> EvalData:
    """Validate --max-accuracy-drop/--eval-data up front (no TensorFlow yet); the opened data."""
    if max_drop is None:
        if eval_data is not None:
            raise UsageError("--eval-data is used with --max-accuracy-drop; give both or neither")
        raise UsageError("convert_to_budget needs max_accuracy_drop (--max-accuracy-drop POINTS)")
    if eval_data is None:
        raise UsageError("--max-accuracy-drop needs --eval-data SRC (labelled images to measure the drop on)")
    if max_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0 points, got {max_drop}")
    check_recipe(rec)
    return read_eval_data(eval_data)


def search_step(prep: PreparedConverter, rec: Recipe, data: EvalData, max_drop: float, labels: Sequence[str],
                progress: Callable[[str], None] | None = None) -> Quantized:
    """The quantize step of a budgeted conversion: calibrate once, search, return the chosen model.

    progress receives one line per search step (the CLI shows them: the search can take minutes)."""
    warnings = []
    order_warning = data.name_order_warning(labels)
    if order_warning:
        warnings.append(order_warning)
    cal = calibrate(prep.tf, prep.converter, rec, prep.representative)
    result = search_mixed_precision(cal, data, prep.preprocess, max_drop, labels=labels,
                                    progress=progress or log.info)
    step = result.steps[result.chosen]
    if step.float_layers:
        warnings.append(f"kept {len(step.float_layers)} activation tensor(s) in float ({len(step.float_nodes)} ops) to "
                        f"meet the accuracy budget; {EDGE_TPU_NOTE}")
    if not result.met:
        warnings.append(f"accuracy target missed: the best reachable model loses {step.score.drop:.2f} points "
                        f"({result.metric}), {result.miss:.2f} over the {max_drop:g}-point budget")
    return Quantized(result.model, result.recipe, tuple(warnings), result.to_dict())


def _relay(info: Callable[[str], None] | None, native_log: NativeLog) -> Callable[[str], None] | None:
    """`info` made to reach the real stderr while the converter's native logs are silenced."""
    if info is None:
        return None

    def say(msg: str) -> None:
        with native_log.real_stderr():
            info(msg)
    return say
