"""`edgeq eval`: accuracy of quantized models against the float reference, side by side."""
from __future__ import annotations

import click

from .common import (
    emit_json,
    json_option,
    parse_postprocess_options,
    postprocess_option,
    preprocess_kwargs,
    preprocess_options,
    progress_bar,
)


@click.command("eval")
@click.argument("reference", type=click.Path())
@click.argument("candidates", nargs=-1, required=True, type=click.Path())
@click.option("--data", "data", required=True, metavar="SRC",
              help="Labelled data: class-folder tree, CSV/JSON list of (path,label), IDX files or folder "
                   "(Fashion-MNIST); unlabelled images give agreement only.")
@click.option("--limit", type=int, help="Evaluate a random subset of this many samples (seeded).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for --limit.")
@click.option("--batch", default=256, show_default=True, type=int, help="Batch size where the model allows it.")
@click.option("--threads", "num_threads", type=int, help="Interpreter threads (default: all cores).")
@click.option("--postprocess", metavar="NAME", help="Score decoded results of detectors, landmark and segmentation "
              "models (a registered decoder, or auto) instead of classes: mAP, point error, mIoU.")
@postprocess_option
@click.option("--labels", "box_labels", type=click.Path(), help="With --postprocess: box labels (COCO JSON or a "
              "YOLO txt folder) or a folder of <image stem>.png masks; without them candidates are scored against "
              "the reference's results.")
@click.option("--delegate", "delegates", multiple=True, help="With --postprocess: the delegate for every model, "
              "or one per model (reference first), e.g. --delegate xnnpack --delegate cpu.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Accuracy and agreement bar charts (needs matplotlib).")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, reference, candidates, data, limit, seed, batch, num_threads, postprocess, postprocess_option,
            box_labels, delegates, plot_path, input_size, color, value_range, mean, std, resize, json_path):
    """Compare CANDIDATE .tflite models with the float REFERENCE on labelled data.

    REFERENCE: .keras/.h5, SavedModel dir or float .tflite. Every model gets the same
    preprocessing: the contract embedded in a candidate, else the options below.
    Reports top-1/top-5 per model and, per candidate, top-1 agreement, SQNR (dB) and cosine
    of each output, max abs error, size and the accuracy drop in points.
    """
    from ..accuracy import evaluate, format_report
    from ..fileio import check_outputs

    check_outputs([reference, *candidates, data, box_labels], reports={"--json": json_path, "--plot": plot_path})

    if batch <= 0:
        raise click.BadParameter("must be positive", param_hint="--batch")
    opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    if postprocess or postprocess_option or box_labels or delegates:
        if plot_path:
            raise click.UsageError("--plot draws the classification comparison; it is not available with "
                                   "--postprocess yet (the --json report has every figure)")
        _task_eval(ctx, reference, candidates, data, postprocess or "auto", postprocess_option, box_labels,
                   delegates, opts, num_threads, limit, seed, json_path)
        return
    with progress_bar(ctx, "evaluating") as progress:
        report = evaluate(reference, list(candidates), data, preprocess_options=opts, batch=batch,
                          num_threads=num_threads, limit=limit, seed=seed, progress=progress)
    for w in report.warnings:
        ctx.warn(w)
    click.echo(format_report(report), err=json_path == "-")
    emit_json(report.to_dict(), json_path)
    if plot_path:
        from ..fileio import to_jsonable
        from ..report.plots import accuracy_figure, save_png

        save_png(accuracy_figure(to_jsonable(report.to_dict())), plot_path)


def _task_eval(ctx, reference, candidates, data, postprocess, postprocess_option, box_labels, delegates, opts,
               num_threads, limit, seed, json_path) -> None:
    """Detection/landmark/segmentation comparison (edgeq.accuracy.tasks)."""
    from ..accuracy.tasks import evaluate_task, format_task_report

    with progress_bar(ctx, "evaluating") as progress:
        report = evaluate_task(reference, list(candidates), data, postprocess=postprocess,
                               postprocess_options=parse_postprocess_options(postprocess_option), labels=box_labels,
                               preprocess_options=opts, delegates=tuple(delegates) or ("xnnpack",),
                               num_threads=num_threads, limit=limit, seed=seed, progress=progress)
    for w in report.warnings:
        ctx.warn(w)
    click.echo(format_task_report(report), err=json_path == "-")
    emit_json(report.to_dict(), json_path)
