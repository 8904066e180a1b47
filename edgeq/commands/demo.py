"""`edgeq demo`: convert, evaluate, benchmark and run the bundled model, then write the report."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import click


class _Steps:
    """One line per step on stderr, and a progress bar for the long ones (none with --quiet)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.bar = None

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def info(self, msg: str) -> None:
        self.close_bar()
        self.ctx.info(msg)

    def progress(self, label: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            if self.ctx.quiet:
                return
            if self.bar is None:
                self.bar = click.progressbar(length=total, label="    " + label, file=sys.stderr)
                self.bar.__enter__()
            self.bar.update(done - self.bar.pos)
        return update


def _threads(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated thread counts, e.g. 1,2",
                                 param_hint="--threads") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{text!r}: thread counts must be >= 1", param_hint="--threads")
    return out


@click.command("demo")
@click.option("--out", "out_dir", default="edgeq-demo", show_default=True, type=click.Path(),
              help="Folder for the models, the annotated video, report.html and report.json.")
@click.option("--eval-samples", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Held-out Fashion-MNIST test images to evaluate on (of 10,000; fewer: a seeded subset).")
@click.option("--calibration-samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="Calibration images for the int8 model (of the 300 bundled).")
@click.option("--runs", "bench_runs", default=100, show_default=True, type=click.IntRange(min=1),
              help="Timed inferences per benchmark combination.")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts for the CPU delegates.")
@click.option("--delegates", help="Comma-separated delegates to benchmark (default: every registered one).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Frames of the video to run (default: all).")
@click.option("--video", metavar="SRC", help="Pipeline source (default: .data/vtest.avi, else a synthetic one).")
@click.option("--no-detector", is_flag=True, help="Skip the detector step (MediaPipe's face detector, quantized "
              "to int8 and run on real photos).")
@click.option("--force", is_flag=True, help="Overwrite the outputs of an earlier demo in --out.")
@click.pass_obj
def command(ctx, out_dir, eval_samples, calibration_samples, bench_runs, threads, delegates, max_frames, video,
            no_detector, force):
    """The whole story on the bundled defaults, in a few minutes: convert the bundled model to int8
    (and the float32 reference), evaluate both on real held-out images, benchmark every delegate
    available here, run the camera pipeline on real footage, and write OUT/report.html.
    """
    from ..demo import DemoOptions, run_demo

    opts = DemoOptions(out_dir=out_dir, calibration_samples=calibration_samples, eval_samples=eval_samples,
                       bench_runs=bench_runs, threads=_threads(threads), max_frames=max_frames, video=video,
                       delegates=tuple(d.strip() for d in delegates.split(",") if d.strip()) if delegates else None,
                       detector=not no_detector, force=force)
    steps = _Steps(ctx)
    try:
        result = run_demo(opts, info=steps.info, progress=steps.progress)
    finally:
        with contextlib.suppress(Exception):
            steps.close_bar()
    for w in result.warnings:
        ctx.warn(w)
    click.echo(f"demo done in {result.seconds:.0f} s; open {result.report_html} in a browser")
    for what, path in result.outputs.items():
        click.echo(f"  {what:<16} {path}")
