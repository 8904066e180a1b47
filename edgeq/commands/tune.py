"""`edgeq tune`: measure delegate x threads here, rank by p50, embed the winner with -o."""
from __future__ import annotations

import click

from ..errors import UsageError
from .common import emit_json, json_option


def _thread_counts(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--threads {text!r}: expected comma-separated positive integers, e.g. 1,2") from None


@click.command("tune")
@click.argument("model", type=click.Path())
@click.option("--threads", help="Comma-separated thread counts to try (default 1..number of CPUs).")
@click.option("--delegate", "delegates", help="Comma-separated delegates to try (default: xnnpack,cpu and every "
              "other registered delegate that loads here).")
@click.option("--runs", default=50, show_default=True, type=int, help="Timed inferences per candidate.")
@click.option("--warmup", default=5, show_default=True, type=int, help="Untimed inferences per candidate.")
@click.option("--no-prune", is_flag=True, help="Measure every thread count, even when more threads stop paying.")
@click.option("-o", "--output", metavar="OUT.tflite", help="Write a copy of MODEL with the winner in its metadata "
              "(edgeq.load and edgeq run then use it unless told otherwise).")
@click.option("--force", is_flag=True, help="Overwrite OUT.tflite if it exists.")
@json_option
@click.pass_obj
def command(ctx, model, threads, delegates, runs, warmup, no_prune, output, force, json_path):
    """Find the fastest runtime configuration of MODEL on this machine, by measurement.

    Each delegate x thread-count candidate runs in its own process; the table is ranked by median
    latency. Without -o nothing is written.
    """
    from ..fileio import check_outputs
    from ..tune import format_table, tune

    check_outputs([model], force=force, created={"-o": output}, reports={"--json": json_path})
    delegate_list = None if delegates is None else [d.strip() for d in delegates.split(",") if d.strip()]

    def progress(c) -> None:
        state = f"error: {c.error}" if c.error else f"p50 {c.p50_ms:.3f} ms"
        ctx.info(f"{c.delegate} threads={c.threads or '-'}: {state}")

    result = tune(model, threads=_thread_counts(threads), delegates=delegate_list, runs=runs, warmup=warmup,
                  output=output, force=force, prune=not no_prune, progress=progress)
    click.echo(format_table(result), err=json_path == "-")
    emit_json(result.to_dict(), json_path)
