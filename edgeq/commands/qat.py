"""`edgeq qat`: quantization-aware fine-tuning, then conversion to a full-integer .tflite."""
from __future__ import annotations

import click

from .common import emit_json, json_option, preprocess_kwargs, preprocess_options


def format_qat(r) -> str:
    from .convert import format_result

    best = r.history[r.best_epoch]
    lines = [f"QAT {r.stopped} after {len(r.history) - 1} epoch(s); best epoch {r.best_epoch} "
             f"(fake-quant validation top-1 {best.val_top1:.2f}%, before QAT {r.history[0].val_top1:.2f}%)",
             f"  validation top-1: float model {r.float_val_top1:.2f}%, converted int8 {r.int8_val_top1:.2f}%",
             f"  best checkpoint (float, fine-tuned): {r.checkpoint}",
             format_result(r.conversion)]
    return "\n".join(lines)


@click.command("qat")
@click.argument("model", type=click.Path())
@click.option("--train-data", required=True, metavar="SRC",
              help="Labelled training images (class folders, IDX file, CSV/JSON list of path,label).")
@click.option("--val-data", required=True, metavar="SRC", help="Labelled validation images (same formats).")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output .tflite path.")
@click.option("--epochs", default=3, show_default=True, type=int, help="Most epochs (stops early).")
@click.option("--lr", default=1e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--patience", default=2, show_default=True, type=int,
              help="Stop after this many epochs without a better validation top-1.")
@click.option("--recipe", default=None, type=click.Choice(["int8", "uint8"]),
              help="Full-integer recipe (default int8; uint8 with --target edgetpu).")
@click.option("--target", type=click.Choice(["edgetpu"]), default=None,
              help="edgetpu: batch 1, static shapes and the Edge TPU pre-flight check.")
@click.option("--labels", type=click.Path(), help="Class names, one per line (embedded in the model).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT (and its .recipe.json, .qat.keras) if they exist.")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, model, train_data, val_data, output, epochs, lr, batch_size, patience, recipe, target, labels, seed,
            force, input_size, color, value_range, mean, std, resize, json_path):
    """Fine-tune MODEL (.keras/.h5) with simulated int8 quantization, keep the best epoch on --val-data,
    and convert it to a full-integer .tflite with edgeq's converter.

    Ctrl-C stops training and still converts and saves the best model so far.
    """
    from ..accuracy.qat import qat
    from ..fileio import check_outputs

    check_outputs([model, train_data, val_data, labels], force=force, created={"-o/--output": output},
                  reports={"--json": json_path})
    opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    result = qat(model, train_data, val_data, output, epochs=epochs, lr=lr, batch_size=batch_size,
                 patience=patience, recipe=recipe or ("uint8" if target == "edgetpu" else "int8"), labels=labels,
                 preprocess_options=opts, seed=seed, force=force, target=target, progress=ctx.info)
    for w in result.conversion.warnings:
        ctx.warn(w)
    click.echo(format_qat(result), err=json_path == "-")
    emit_json(result.to_dict(), json_path)
