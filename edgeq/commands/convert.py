"""`edgeq convert`: quantize a float model with calibration data."""
from __future__ import annotations

import click

from ..convert.ranges import RANGE_METHODS
from ..convert.recipes import RECIPES, Recipe
from ..errors import UsageError
from .common import (
    emit_json,
    json_option,
    parse_postprocess_options,
    postprocess_option,
    preprocess_kwargs,
    preprocess_options,
    progress_bar,
)


def format_result(r) -> str:
    rep = r.report
    lines = [f"wrote {r.output}  [{r.recipe.name}: {r.recipe.description}]",
             f"  size: {rep.size_bytes / 1024:.1f} KiB quantized vs {r.float_weights_bytes / 1024:.1f} KiB float "
             f"weights ({r.compression:.2f}x smaller)",
             "  ops: " + ", ".join(f"{k}×{v}" for k, v in rep.ops.items())]
    if r.recipe.full_integer:
        lines.append("  full integer: " + ("yes" if rep.full_integer else
                                           f"NO, float ops: {', '.join(rep.float_ops)}"))
    if rep.float_tensors:
        lines.append(f"  tensors left in float: {len(rep.float_tensors)} ({', '.join(rep.float_tensors[:5])}"
                     + (" …)" if len(rep.float_tensors) > 5 else ")"))
    for title, specs in (("input", rep.inputs), ("output", rep.outputs)):
        for t in specs:
            q = f", scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale else ""
            lines.append(f"  {title} {t.name}: {list(t.shape)} {t.dtype}{q}")
    if r.preprocess:
        lines.append(f"  preprocessing (embedded): {r.preprocess.describe()}")
    if r.calibration:
        c = r.calibration
        lines.append(f"  calibration: {c['used']} samples used, {c['skipped']} skipped, from {c['source']}")
    if getattr(r, "edgetpu", None) is not None:  # --target edgetpu
        from ..edgetpu import format_report

        lines.append("  " + format_report(r.edgetpu, show_ops=False).replace("\n", "\n  "))
    if getattr(r, "accuracy", None) and "steps" in r.accuracy:  # --max-accuracy-drop / --max-agreement-drop
        from ..accuracy.mixed import format_search

        lines.append("  " + format_search(r.accuracy).replace("\n", "\n  "))
    if getattr(r, "accuracy", None) and "range_selection" in r.accuracy:  # --range-method auto
        sel = r.accuracy["range_selection"]
        lines.append(f"  range method: {sel['chosen']} (measured on {sel['samples']} samples of {sel['measured_on']}: "
                     + ", ".join(f"{c['method']} drop {c['drop']:.2f} / SQNR {c['sqnr_db']} dB"
                                 for c in sel["candidates"]) + ")")
    lines.append(f"  time: {r.seconds:.1f} s")
    return "\n".join(lines)


@click.command("convert")
@click.argument("model", type=click.Path())
@click.option("-c", "--calibration", "calib", metavar="SRC",
              help="Representative data: image folder, glob, video or .npy/.npz.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output .tflite path.")
@click.option("--recipe", default=None, type=click.Choice(list(RECIPES)),
              help="Quantization recipe (default int8; uint8 with --target edgetpu).")
@click.option("--recipe-file", type=click.Path(), help="Reproduce a saved recipe (JSON).")
@click.option("--num-samples", default=200, show_default=True, type=int, help="Calibration samples.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sampling calibration data.")
@click.option("--labels", type=click.Path(), help="Class names, one per line (embedded in the model).")
@click.option("--task", default=None, help="Model task: classify (default), detect, other, or the task of a "
              "registered decoder (default with --postprocess: the decoder's).")
@click.option("--postprocess", metavar="NAME", help="Declare the decoder of the outputs in the metadata "
              "(e.g. mediapipe-face-short, ssd-anchors, yolo), so `edgeq run` decodes by itself.")
@postprocess_option
@click.option("--per-tensor", is_flag=True, help="Per-tensor instead of per-channel weight scales.")
@click.option("--float-io", is_flag=True, help="Keep float inputs/outputs around the integer body.")
@click.option("--allow-float-fallback", is_flag=True, help="Accept ops that cannot be quantized (kept float).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--max-accuracy-drop", type=float, metavar="POINTS",
              help="Accuracy budget: keep the most sensitive layers in float until the top-1 drop on "
                   "--eval-data is at most POINTS (float layers do not run on the Edge TPU).")
@click.option("--max-agreement-drop", type=float, metavar="POINTS",
              help="Budget for unlabelled --eval-data: top-1 agreement with the float model may drop at most POINTS.")
@click.option("--eval-data", metavar="SRC", help="Data for the budget (as in `edgeq eval --data`; labelled for "
                                                  "--max-accuracy-drop).")
@click.option("--range-method", type=click.Choice([*RANGE_METHODS, "auto"]), default=None,
              help="Activation ranges: minmax (TFLite's, the default), percentile (99.99%), mse (MSE-optimal) or auto "
                   "(each measured on --eval-data, else on calibration items beyond --num-samples; best kept). "
                   "With --max-accuracy-drop/--max-agreement-drop the default is auto.")
@click.option("--target", type=click.Choice(["edgetpu"]), default=None,
              help="Shape the model for an accelerator. edgetpu: 8-bit full integer, uint8 I/O (default recipe "
                   "uint8), per-channel, batch 1 and static shapes, then the Edge TPU pre-flight check.")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, model, calib, output, recipe, recipe_file, num_samples, seed, labels, task, postprocess,
            postprocess_option, per_tensor, float_io, allow_float_fallback, force, target, max_accuracy_drop,
            max_agreement_drop, eval_data, range_method,
            input_size, color, value_range, mean, std, resize,
            json_path):
    """Quantize MODEL (.keras, .h5, SavedModel dir, float .tflite or .onnx) into a .tflite file.

    The preprocessing contract (size, colour, value range), labels, recipe and a calibration
    summary are embedded in the output, so `edgeq run`/`bench`/`eval` apply them by themselves.
    """
    from ..convert.converter import convert
    from ..convert.plan import make_recipe
    from ..fileio import check_outputs

    if recipe and recipe_file:
        raise click.UsageError("give --recipe or --recipe-file, not both")
    check_outputs([model, calib, labels, recipe_file, eval_data], force=force, created={"-o/--output": output},
                  reports={"--json": json_path})
    budgeted = max_accuracy_drop is not None or max_agreement_drop is not None or eval_data is not None
    if budgeted and range_method is None and not recipe_file and not str(model).lower().endswith(".tflite"):
        range_method = "auto"  # evaluation data is given: the range method is chosen by measurement on it
    base = Recipe.load(recipe_file) if recipe_file else (recipe or ("uint8" if target == "edgetpu" else "int8"))
    rec = make_recipe(base, per_tensor=per_tensor, float_io=float_io, allow_float_fallback=allow_float_fallback,
                      range_method=range_method)  # the target's own check runs in convert
    opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    options = dict(recipe=rec, num_samples=num_samples, seed=seed, labels=labels, task=task, force=force,
                   preprocess_options=opts, quiet=not ctx.verbose, target=target)
    if postprocess or postprocess_option:
        if budgeted:
            raise UsageError("--postprocess with --max-accuracy-drop is not supported yet: convert to the budget, "
                             "then convert again with --recipe-file OUT.recipe.json --postprocess NAME")
        options.update(postprocess=postprocess, postprocess_options=parse_postprocess_options(postprocess_option))
    with progress_bar(ctx, "calibrating") as progress:
        if budgeted:
            from ..accuracy.budget import convert_to_budget

            result = convert_to_budget(model, calib, output, max_accuracy_drop=max_accuracy_drop,
                                       max_agreement_drop=max_agreement_drop, eval_data=eval_data,
                                       progress=progress, info=ctx.info, **options)
        else:
            result = convert(model, calib, output, progress=progress, **options)
    for w in result.warnings:
        ctx.warn(w)
    click.echo(format_result(result), err=json_path == "-")
    emit_json(result.to_dict(), json_path)
