"""`edgeq inspect`: what is inside a .tflite file."""
from __future__ import annotations

import click

from .common import emit_json, json_option


@click.command("inspect")
@click.argument("model", type=click.Path())
@json_option
@click.pass_obj
def command(ctx, model, json_path):
    """Inputs/outputs (shape, dtype, scale, zero point), op histogram, full-integer verdict and
    embedded edgeq metadata of MODEL (any .tflite, ours or foreign)."""
    from ..fileio import check_outputs
    from ..modelinfo import format_report, inspect_model

    check_outputs([model], reports={"--json": json_path})
    report = inspect_model(model)
    click.echo(format_report(report), err=json_path == "-")
    emit_json(report.to_dict(), json_path)
