"""`edgeq bench`: latency of models x delegates x threads."""
from __future__ import annotations

import click
from click.core import ParameterSource

from ..errors import EdgeqError, UsageError
from .common import delegate_cli_options, emit_json, json_option, parse_delegate_options


def _ints(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part in ("", "default"):
            out.append(None)
            continue
        try:
            n = int(part)
        except ValueError:
            raise UsageError(f"--threads {text!r}: expected comma-separated positive integers, e.g. 1,2,4") from None
        if n < 1:
            raise UsageError(f"--threads {text!r}: thread counts must be >= 1")
        out.append(n)
    return out


@click.command("bench")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@delegate_cli_options(several=True)
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts, e.g. 1,2,4 "
              "(a model tuned by `edgeq tune -o`: its tuned count unless given).")
@click.option("--runs", default=100, show_default=True, type=int, help="Timed inferences per combination.")
@click.option("--warmup", default=10, show_default=True, type=int, help="Untimed inferences after the first.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the results as CSV.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Box plot of latency distributions (needs matplotlib).")
@click.option("--in-process", is_flag=True, help="Measure in this process instead of one child process per "
              "combination (peak RSS then accumulates).")
@json_option
@click.pass_obj
def command(ctx, models, delegates, threads, runs, warmup, delegate_options, csv_path, plot_path, in_process,
            json_path):
    """Measure MODELS under every delegate x thread combination, each in a fresh interpreter.

    Reports load/init time, first inference, min/mean/p50/p90/p99/max/std latency, throughput,
    peak RSS and delegated/total nodes, and warns about suspicious results. A model tuned by
    `edgeq tune -o` runs with its tuned delegate, options and threads (marked * and "tuned:")
    unless --delegate / --threads say otherwise.
    """
    from ..bench import format_table, plot, run_benchmark, write_csv
    from ..fileio import check_outputs

    check_outputs(models, reports={"--json": json_path, "--csv": csv_path, "--plot": plot_path})

    given = click.get_current_context().get_parameter_source
    # not given on the command line: each model's tuned configuration (edgeq tune -o), else auto / 1 thread
    delegate_list = None if given("delegates") == ParameterSource.DEFAULT else \
        [d.strip() for d in delegates.split(",") if d.strip()]
    if delegate_list == []:
        raise UsageError("--delegate: give at least one delegate")
    thread_list = None if given("threads") == ParameterSource.DEFAULT else _ints(threads)
    opts = parse_delegate_options(delegate_options)
    total = len(models) * len(delegate_list or [None]) * len(thread_list or [None])
    done = 0

    def progress(r) -> None:
        nonlocal done
        done += 1
        state = "error" if r.error else f"p50 {r.latency_ms.p50:.3f} ms"
        ctx.info(f"[{done}/{total}] {r.model} {r.delegate} threads={r.threads or '-'}: {state}")
        if r.tuned:
            ctx.info(f"    tuned: {r.tuned}")
        for reason in r.skipped:
            ctx.info(f"    skipped {reason}")

    results = run_benchmark(list(models), delegate_list, thread_list, runs=runs, warmup=warmup,
                            delegate_options=opts, isolate=not in_process, progress=progress)
    click.echo(format_table(results), err=json_path == "-")
    for r in results:
        for w in r.warnings:
            ctx.warn(f"{r.model} {r.delegate} threads={r.threads or '-'}: {w}")
    if csv_path:
        write_csv(results, csv_path)
    if plot_path and any(r.ok for r in results):
        plot(results, plot_path)
    elif plot_path:
        ctx.warn(f"--plot {plot_path} not written: no combination was measured")
    emit_json([r.to_dict() for r in results], json_path)
    failed = [r for r in results if not r.ok]
    if failed:
        raise EdgeqError(f"{len(failed)} of {len(results)} combination(s) failed: "
                         + "; ".join(f"{r.delegate}/{r.threads or '-'}: {r.error}" for r in failed[:3]))
