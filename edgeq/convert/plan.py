"""Step 1 of a conversion, before TensorFlow loads: the recipe, the output path, labels, calibration.

Everything a user can get wrong is checked here, in milliseconds, so a bad option never costs a
TensorFlow import or a model load.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..fileio import check_outputs
from ..metadata import known_tasks
from ..postprocess import get_decoder
from .calibration import CalibrationDataset
from .ranges import check_range_method
from .recipes import Recipe, get_recipe
from .source import describe_source_model


def make_recipe(base: str | Recipe | None = None, *, per_tensor: bool = False, float_io: bool = False,
                allow_float_fallback: bool = False, range_method: str | None = None,
                target: str | None = None) -> Recipe:
    """A named (or given) recipe adjusted by the convert flags, e.g. ``make_recipe("int8", per_tensor=True)``.

    base: a recipe name or Recipe; None means int8, or uint8 (Coral's uint8 model I/O) with
    target="edgetpu". target checks that the recipe suits the accelerator (8-bit full integer).
    """
    rec = base if isinstance(base, Recipe) else get_recipe(base or ("uint8" if target == "edgetpu" else "int8"))
    if target is not None:  # "edgetpu": 8-bit full integer, then shapes frozen and the result checked
        from .targets import recipe_for_target

        rec = recipe_for_target(rec, target)
    changes: dict[str, Any] = {}
    if per_tensor:
        changes["per_channel"] = False
    if float_io:
        changes["float_io"] = True
    if allow_float_fallback:
        changes["allow_float_fallback"] = True
    if range_method is not None:
        changes["range_method"] = check_range_method(range_method)
    return rec.replace(**changes) if changes else rec


@dataclasses.dataclass(frozen=True)
class ConversionPlan:
    """What a conversion will do, validated: the input of every later step."""

    recipe: Recipe
    kind: str                        # keras_file | keras_model | saved_model
    source: str                      # the model path, or a description of an in-memory model
    output: pathlib.Path
    task: str
    labels: tuple[str, ...]
    dataset: CalibrationDataset | None
    target: str | None
    warnings: tuple[str, ...]
    force: bool = False           # replace existing outputs (else they are created exclusively)
    recipe_file: pathlib.Path | None = None  # OUT.recipe.json, or None when not saved
    postprocess: dict[str, Any] = dataclasses.field(default_factory=dict)  # the declared decoder (metadata)


def plan_conversion(model: Any, calibration: Any, output: str | os.PathLike | None, *,
                    recipe: str | Recipe | None = None, target: str | None = None, task: str = "classify",
                    labels: Sequence[str] | str | os.PathLike | None = None, force: bool = False,
                    num_samples: int = 200, seed: int = 0, save_recipe: bool = True,
                    transform: Callable[[Any], Any] | None = None, postprocess: str | None = None,
                    postprocess_options: dict[str, Any] | None = None) -> ConversionPlan:
    """Validate every option and read the calibration source once (no TensorFlow yet)."""
    rec = make_recipe(recipe, target=target)
    declared = declared_postprocess(postprocess, postprocess_options)
    if task is None:
        task = get_decoder(postprocess).task if postprocess else "classify"
    tasks = known_tasks()
    if task not in tasks:
        raise UsageError(f"unknown task {task!r}; expected one of {', '.join(tasks)}")
    kind, desc = describe_source_model(model)
    if kind == "tflite_file" or rec.weights == "int4":  # ai-edge-quantizer's route: its recipes only
        from .tflite_source import check_tflite_recipe

        check_tflite_recipe(rec)
    if output is None:
        raise UsageError("an output path is required (-o OUT.tflite)")
    out = pathlib.Path(output)
    recipe_file = recipe_path_for(out) if save_recipe else None
    inputs = [model if kind != "keras_model" else None, labels if isinstance(labels, (str, os.PathLike)) else None,
              calibration if isinstance(calibration, (str, os.PathLike)) else None]
    check_outputs(inputs, force=force, created={"output": out, "recipe file": recipe_file})
    label_list = read_labels(labels)
    dataset: CalibrationDataset | None = None
    warnings: tuple[str, ...] = ()
    if rec.needs_calibration:
        if calibration is None:
            raise UsageError(f"recipe {rec.name!r} needs calibration data (-c/--calibration: an image folder, "
                             "glob, video or .npy/.npz)")
        dataset = calibration_dataset(calibration, num_samples=num_samples, seed=seed, transform=transform)
    elif calibration is not None:
        warnings = (f"recipe {rec.name!r} does not use calibration data; ignoring it",)
    return ConversionPlan(rec, kind, desc, out, task, tuple(label_list), dataset, target, warnings, force,
                          recipe_file, declared)


def declared_postprocess(name: str | None, options: dict[str, Any] | None) -> dict[str, Any]:
    """{"name", "options"} to embed for ``--postprocess NAME --postprocess-option k=v`` (values typed and
    checked now, so a bad option fails before calibration); {} without a name."""
    if name is None:
        if options:
            raise UsageError("--postprocess-option needs --postprocess NAME")
        return {}
    if name == "auto":
        raise UsageError("--postprocess auto is a run-time choice; name the decoder to embed (edgeq run "
                         "--postprocess auto says which one fits)")
    decoder = get_decoder(name).configure(options or {})
    given = decoder.settings_dict()
    return {"name": name, "options": {k: v for k, v in given.items() if k in (options or {})}}


def recipe_path_for(model_path: str | os.PathLike) -> pathlib.Path:
    """``OUT.recipe.json`` beside ``OUT.tflite``: the recipe that reproduces the model."""
    p = pathlib.Path(model_path)
    return p.with_name(p.stem + ".recipe.json")


def calibration_dataset(calibration: Any, *, num_samples: int = 200, seed: int = 0,
                        transform: Callable[[Any], Any] | None = None) -> CalibrationDataset:
    """The calibration source as a CalibrationDataset, read once to fail fast (no TensorFlow yet)."""
    dataset = calibration if isinstance(calibration, CalibrationDataset) else CalibrationDataset(
        calibration, None, num_samples=num_samples, seed=seed, transform=transform)
    dataset.check()
    return dataset


def read_labels(labels: Sequence[str] | str | os.PathLike | None) -> list[str]:
    """Class names from a file (one per line) or a sequence."""
    if labels is None:
        return []
    if isinstance(labels, (str, os.PathLike)):
        p = pathlib.Path(labels)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(f"labels file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read labels file {p}: {exc}") from exc
        out = [line.strip() for line in lines if line.strip()]
        if not out:
            raise UsageError(f"labels file {p} is empty; expected one class name per line")
        return out
    return [str(x) for x in labels]
