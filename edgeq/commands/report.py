"""`edgeq report`: one self-contained HTML page from saved JSON results."""
from __future__ import annotations

import click


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), metavar="FILE.html", help="The page to write.")
@click.option("--title", default="edgeq report", show_default=True, help="Page title.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.pass_obj
def command(ctx, results, output, title, force):
    """Build one HTML page from RESULTS: the --json files of convert, bench, run and eval (or a demo's
    report.json). Figures and data are embedded: the page opens offline and can be mailed as one file.

    Shows model size and accuracy float vs int8, latency distributions per delegate and threads,
    pipeline FPS over time, per-stage latency, frame age, drops, and the environment.
    """
    from ..fileio import check_outputs
    from ..report import report_from_files

    check_outputs(results, force=force, created={"-o/--output": output})
    path = report_from_files(list(results), output, title=title)
    ctx.info(f"wrote {path}")
