"""`edgeq edgetpu`: Edge TPU pre-flight check, shape freezing and edgetpu_compiler integration."""
from __future__ import annotations

import click

from .common import emit_json, json_option


@click.group("edgetpu")
def command() -> None:
    """Coral Edge TPU readiness: check a .tflite, freeze its shapes, compile it.

    \b
    check       what would run on the Edge TPU and what on the CPU, and why (no compiler needed)
    fix-shapes  freeze dynamic shapes (batch 1, static height/width) so the compiler accepts the model
    compile     run edgetpu_compiler (x86-64 Debian/Ubuntu) and compare with the check
    """


@command.command("check")
@click.argument("model", type=click.Path())
@click.option("--runtime", "runtime_version", type=click.IntRange(10, 99), default=None,
              help="Edge TPU runtime version to check for (default 14, what compiler 16 targets).")
@click.option("--brief", is_flag=True, help="Only the verdict, not the per-op table.")
@json_option
@click.pass_obj
def check_cmd(ctx, model, runtime_version, brief, json_path):
    """Static check of MODEL against Coral's published Edge TPU rules.

    Exit status: 0 when every op would map (an estimate: the compiler decides), 3 when the model
    would not map fully (the first unmapped op and its reason are printed), 1/2 on errors.
    """
    from ..edgetpu import DEFAULT_RUNTIME_VERSION, NotMappedError, check_model, format_report
    from ..fileio import check_outputs

    check_outputs([model], reports={"--json": json_path})

    report = check_model(model, runtime_version or DEFAULT_RUNTIME_VERSION)
    click.echo(format_report(report, show_ops=not brief), err=json_path == "-")
    emit_json(report.to_dict(), json_path)
    if report.refused:
        raise NotMappedError(f"edgetpu_compiler would refuse {model}: {report.refused}; see the suggestions above")
    if not report.compatible:
        first = report.first_unmapped
        where = f"first unmapped op #{first.index} {first.op}" if first else "; ".join(report.issues[:1])
        raise NotMappedError(f"{model} would not map fully to the Edge TPU ({report.cpu_ops} op(s) on the CPU; "
                             f"{where}); see the suggestions above")


@command.command("fix-shapes")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Output .tflite path.")
@click.option("--input-size", help="WIDTHxHEIGHT for a model whose height/width is dynamic.")
@click.option("--sample", type=click.Path(exists=True, dir_okay=False),
              help="A real image to verify that the frozen model gives the same output (default: seeded input).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@json_option
@click.pass_obj
def fix_shapes_cmd(ctx, model, output, input_size, sample, force, json_path):
    """Freeze MODEL's dynamic shapes (shape_signature -1) to batch 1 and static sizes.

    The frozen model is run side by side with the original on the same input and must give the
    same output; the Edge TPU check is then run on it.
    """
    from ..convert.calibration import read_image
    from ..edgetpu import check_model, format_report
    from ..edgetpu.shapes import freeze_shapes
    from ..errors import DataError
    from ..fileio import check_outputs
    from ..preprocess import parse_size

    check_outputs([model, sample], force=force, created={"-o/--output": output}, reports={"--json": json_path})
    image = None
    if sample:
        image = read_image(sample)
        if image is None:
            raise DataError(f"--sample {sample}: not a readable image")
    result = freeze_shapes(model, output, input_size=parse_size(input_size) if input_size else None,
                           image=image, force=force)
    report = check_model(result.output)
    err = json_path == "-"
    if result.already_static:
        click.echo(f"{model} has no dynamic shapes; wrote an unchanged copy to {result.output}", err=err)
    else:
        for i in result.inputs:
            click.echo(f"{i.name}: {list(i.shape_signature)} -> {list(i.frozen_shape)}", err=err)
        click.echo(f"wrote {result.output}: {result.changed_tensors} tensor shapes frozen; same output as the "
                   f"original on {result.verified_on}", err=err)
    click.echo(format_report(report, show_ops=False), err=err)
    emit_json({"freeze": result.to_dict(), "edgetpu": report.to_dict()}, json_path)


@command.command("compile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Folder for <name>_edgetpu.tflite and its log (default: beside MODEL).")
@click.option("--segments", type=click.IntRange(1, 64), default=None,
              help="Split into N segments for pipelining over N Edge TPUs (edgetpu_compiler -n).")
@click.option("--min-runtime", type=click.IntRange(10, 99), default=None,
              help="Lowest Edge TPU runtime version to support (edgetpu_compiler -m).")
@click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True, help="Seconds.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@json_option
@click.pass_obj
def compile_cmd(ctx, model, output_dir, segments, min_runtime, timeout_s, force, json_path):
    """Run edgetpu_compiler on MODEL, parse its operation table, compare with the pre-flight check.

    Needs Coral's edgetpu_compiler on PATH (x86-64 Debian/Ubuntu only); edgeq never installs it.
    """
    from ..edgetpu.compiler import compile_model, format_compile
    from ..fileio import check_outputs

    check_outputs([model], reports={"--json": json_path})

    result = compile_model(model, output_dir, segments=segments, min_runtime_version=min_runtime,
                           timeout_s=timeout_s, force=force)
    click.echo(format_compile(result), err=json_path == "-")
    emit_json(result.to_dict(), json_path)
