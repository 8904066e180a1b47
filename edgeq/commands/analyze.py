"""`edgeq analyze`: per-layer quantization sensitivity (TensorFlow's QuantizationDebugger)."""
from __future__ import annotations

import click

from .common import emit_json, json_option, preprocess_kwargs, preprocess_options


@click.command("analyze")
@click.argument("model", type=click.Path())
@click.option("-c", "--calibration", "calib", required=True, metavar="SRC",
              help="Representative data: image folder, glob, video or .npy/.npz.")
@click.option("--recipe", default="int8", show_default=True, type=click.Choice(["int8", "uint8"]),
              help="Quantization recipe to analyse.")
@click.option("--num-samples", default=200, show_default=True, type=int, help="Calibration samples.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sampling calibration data.")
@click.option("--top", default=15, show_default=True, type=int, help="Rows in the printed table.")
@click.option("--plot", "plot_path", type=click.Path(), help="Write a bar chart PNG of the ranking (matplotlib).")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, model, calib, recipe, num_samples, seed, top, plot_path, input_size, color, value_range, mean,
            std, resize, json_path):
    """Rank MODEL's layers (.keras, .h5 or SavedModel dir) by how much int8 quantization hurts them.

    Per activation tensor: RMSE relative to its int8 scale, SQNR, max abs error, and the model's
    output SQNR / top-1 agreement when that tensor alone is kept float.
    """
    from ..accuracy.sensitivity import analyze, format_analysis, plot_analysis
    from ..fileio import check_outputs

    check_outputs([model, calib], reports={"--json": json_path, "--plot": plot_path})

    opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    report = analyze(model, calib, recipe=recipe, preprocess_options=opts, num_samples=num_samples, seed=seed,
                     quiet=not ctx.verbose, progress=None if ctx.quiet else ctx.info)
    click.echo(format_analysis(report, top=top), err=json_path == "-")
    if plot_path:
        plot_analysis(report, plot_path)
        ctx.info(f"wrote {plot_path}")
    emit_json(report.to_dict(), json_path)
