"""`edgeq tune`: the fastest variant of a model here, by measurement; the winner kept with -o.

A converted .tflite: its runtime configurations (delegate x threads). A float source with -c: also the
model-file variants (I/O types; with --eval-data/--max-accuracy-drop per-tensor weights and the
int16x8/float16/dynamic/float32 recipes), each with its runtime search.
"""
from __future__ import annotations

import pathlib

import click

from ..errors import UsageError
from .common import emit_json, json_option, preprocess_kwargs, preprocess_options


def _thread_counts(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--threads {text!r}: expected comma-separated positive integers, e.g. 1,2") from None


def _runtime_only(model: str, calib: str | None, eval_data: str | None, max_drop: float | None) -> bool:
    """A .tflite without -c and budget options: today's runtime search. A converted one with them: an error."""
    if pathlib.Path(model).suffix.lower() != ".tflite":
        return False
    variant_options = [n for n, v in (("-c", calib), ("--eval-data", eval_data), ("--max-accuracy-drop", max_drop))
                       if v is not None]
    if not variant_options:
        return True
    from ..variants import is_quantized_tflite

    if is_quantized_tflite(model):
        raise UsageError(f"{model} is already quantized: only its runtime can be tuned; drop "
                         f"{', '.join(variant_options)}, or tune the float source (.keras/.h5, SavedModel, .onnx, "
                         "float .tflite) to search the recipe variants too")
    return False


@click.command("tune")
@click.argument("model", type=click.Path())
@click.option("-c", "--calibration", "calib", metavar="SRC", help="Calibration data for a float MODEL (image folder, "
              "glob, video or .npy/.npz): its quantized variants are searched too.")
@click.option("--eval-data", metavar="SRC", help="Labelled images (as `edgeq eval --data` takes) to measure each "
              "variant's top-1 drop on; with --max-accuracy-drop, variants that change the arithmetic are searched.")
@click.option("--max-accuracy-drop", type=float, metavar="POINTS", help="Top-1 points a variant may lose against "
              "the float model (with --eval-data).")
@click.option("--eval-limit", type=int, metavar="N", help="Evaluate on a random subset of N samples.")
@click.option("--labels", type=click.Path(), help="Class names, one per line (embedded in the variants).")
@click.option("--num-samples", default=200, show_default=True, type=int, help="Calibration samples.")
@click.option("--threads", help="Comma-separated thread counts to try (default 1..number of CPUs).")
@click.option("--delegate", "delegates", help="Comma-separated delegates to try (default: xnnpack,cpu and every "
              "other registered delegate that loads here).")
@click.option("--runs", default=50, show_default=True, type=int, help="Timed inferences per candidate.")
@click.option("--warmup", default=5, show_default=True, type=int, help="Untimed inferences per candidate.")
@click.option("--no-prune", is_flag=True, help="Measure every thread count, even when more threads stop paying.")
@click.option("--pipeline", metavar="SRC", help="Also measure the winner's every-frame `edgeq run` pipeline on this "
              "source (video, image folder, synthetic://WxH@FPS) for each threads x instances layout, and keep the "
              "fastest for `edgeq run` (decoding and preprocessing need cores too).")
@click.option("-o", "--output", metavar="OUT.tflite", help="Write the winner (a copy of MODEL, or the winning "
              "variant) with its runtime configuration in the metadata (edgeq.load and edgeq run then use it).")
@click.option("--force", is_flag=True, help="Overwrite OUT.tflite if it exists.")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, model, calib, eval_data, max_accuracy_drop, eval_limit, labels, num_samples, threads, delegates,
            runs, warmup, no_prune, pipeline, output, force, input_size, color, value_range, mean, std, resize,
            json_path):
    """Find the fastest variant of MODEL on this machine, by measurement.

    Each delegate x thread-count candidate runs in its own process; tables are ranked by median
    latency. With a float MODEL and -c, its quantized variants are built from one export and one
    calibration and each is measured the same way. Without -o nothing is written.
    """
    from ..fileio import check_outputs

    check_outputs([model, calib, eval_data, labels, pipeline], force=force, created={"-o": output},
                  reports={"--json": json_path})
    delegate_list = None if delegates is None else [d.strip() for d in delegates.split(",") if d.strip()]
    if _runtime_only(model, calib, eval_data, max_accuracy_drop):
        given = [n for n, v in (("--input-size", input_size), ("--color", color), ("--range", value_range),
                                ("--mean", mean), ("--std", std), ("--resize", resize), ("--labels", labels),
                                ("--eval-limit", eval_limit)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: used when variants are built from a float source with -c; "
                             f"tuning the runtime of {model} takes none of them")
        from ..tune import format_table, tune

        def progress(c) -> None:
            state = f"error: {c.error}" if c.error else f"p50 {c.p50_ms:.3f} ms"
            ctx.info(f"{c.label} threads={c.threads or '-'}: {state}")

        result = tune(model, threads=_thread_counts(threads), delegates=delegate_list, runs=runs, warmup=warmup,
                      output=output, force=force, prune=not no_prune, progress=progress, pipeline=pipeline)
        click.echo(format_table(result), err=json_path == "-")
        emit_json(result.to_dict(), json_path)
        return
    from ..variants import format_table as format_variants
    from ..variants import tune_variants

    opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    result = tune_variants(model, calib, output, eval_data=eval_data, max_accuracy_drop=max_accuracy_drop,
                           threads=_thread_counts(threads), delegates=delegate_list, runs=runs, warmup=warmup,
                           num_samples=num_samples, labels=labels, preprocess_options=opts, eval_limit=eval_limit,
                           force=force, prune=not no_prune, quiet=not ctx.verbose, info=ctx.info, pipeline=pipeline)
    click.echo(format_variants(result), err=json_path == "-")
    emit_json(result.to_dict(), json_path)
