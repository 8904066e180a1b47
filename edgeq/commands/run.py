"""`edgeq run`: a model behind a real video source, measured like a camera app sees it."""
from __future__ import annotations

import contextlib
import sys

import click

from ..errors import EdgeqError, SourceError, UsageError
from .common import (
    delegate_cli_options,
    emit_json,
    json_option,
    parse_delegate_options,
    parse_postprocess_options,
    postprocess_option,
    preprocess_kwargs,
    preprocess_options,
    report_delegate,
)


class _DecoderChoice(click.Choice):
    """The registered decoders' names, read when the option is parsed (so a decoder registered
    after this module was imported is accepted too)."""

    def __init__(self) -> None:  # no fixed list: ``choices`` asks the registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        from ..postprocess import AUTO, decoder_names

        return (*decoder_names(), AUTO)


class _PostprocessOption(click.Option):
    """``--postprocess``, whose help lists the registered decoders as they are when help is shown."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from ..postprocess import help_text

        self.help = (f"Output decoding (default: the model's declared decoder, else chosen from its task and output "
                     f"shapes; auto: the one decoder that fits, else an error naming why each does not). "
                     f"{help_text()}.")
        return super().get_help_record(ctx)


def _camera_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    from ..preprocess import parse_size

    try:
        return parse_size(text)
    except UsageError:
        raise UsageError(f"--camera-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None


class _ThreadsParam(click.ParamType):
    """``--threads``: a positive integer or ``auto``; the error lists both."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        from ..pipeline import parse_threads

        try:
            return parse_threads(value)
        except UsageError as exc:
            self.fail(f"{value!r}: {str(exc).removeprefix(f'--threads {value!r}: ')}", param, ctx)


def _model_loader(ctx, model: str, delegate: str | None, pre_opts: dict, delegate_options: dict):
    """(``threads -> loaded model``, the metadata's tuned runtime): the embedded contract (or convert-style
    options for foreign models) resolved once, so a --threads auto trial per count does not repeat its warnings."""
    from ..modelinfo import inspect_model
    from ..preprocess import resolve_preprocess
    from ..runtime import load

    info = inspect_model(model)
    _check_image_input(model, info.inputs)
    embedded = info.metadata.preprocess if info.metadata is not None else None
    resolved = resolve_preprocess(info.inputs[0].shape, pre_opts, embedded=embedded, model=str(model))
    for warning in resolved.warnings:
        ctx.warn(warning)
    def loader(threads):
        return load(model, delegate=delegate, num_threads=threads, preprocess=resolved.preprocess, **delegate_options)
    return loader, (info.metadata.runtime if info.metadata is not None else {})


def _layout(ctx, load_model, runtime: dict, delegate: str | None, threads, instances: int | None, new_source,
            options):
    """(threads, instances, auto choice): --threads auto measures; none given takes edgeq tune's pipeline layout."""
    if threads == "auto":
        choice = _choose_threads(ctx, load_model, new_source, options, instances)
        return choice.threads, choice.instances, choice
    if threads is None and instances is None:
        return (*_tuned_layout(ctx, runtime, delegate), None)
    return threads, instances, None


def _choose_threads(ctx, load_model, new_source, options, instances: int | None):
    """--threads auto: a short every-frame trial of each count 1..cores (and of 2..cores single-threaded
    instances, unless --instances fixes their number) on the real source."""
    from ..pipeline import available_cores, choose_pipeline_threads

    cores = available_cores()
    candidates = None if instances is None else [(t, instances) for t in range(1, cores + 1)]
    ctx.info(f"--threads auto: measuring the pipeline with 1..{cores} inference threads"
             + (f" and {'2..' if cores > 2 else ''}{cores} single-threaded instances"
                if instances is None and cores > 1 else "")
             + " on the first frames of the source ...")
    choice = choose_pipeline_threads(load_model, new_source, candidates,
                                     options=options)
    ctx.info(choice.summary())
    return choice


def _tuned_layout(ctx, runtime: dict, delegate: str | None) -> tuple[int | None, int | None]:
    """The pipeline layout ``edgeq tune --pipeline`` stored, when the run uses the tuned delegate."""
    threads = runtime.get("pipeline_threads")
    if not threads or (delegate is not None and delegate != runtime.get("delegate")):
        return None, None
    instances = runtime.get("pipeline_instances") or 1
    ctx.info(f"threads: {threads}" + (f" x {instances} instances" if instances > 1 else "")
             + f", tuned for the pipeline by edgeq tune ({runtime.get('pipeline_fps', '?')} FPS there); "
             "--threads/--instances override it")
    return threads, instances


def _check_image_input(model: str, inputs) -> None:
    """edgeq run feeds one camera frame per inference: refuse other models before loading them."""
    shape = tuple(inputs[0].shape) if inputs else ()
    if len(inputs) != 1 or len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        found = ", ".join(f"{spec.name!r} {list(spec.shape)}" for spec in inputs) or "none"
        raise UsageError(f"{model}: edgeq run needs a model with one image input [1, HEIGHT, WIDTH, 1 or 3]; "
                         f"its inputs are {found}")


def _status_printer(ctx):
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(status) -> None:
        if ctx.quiet:
            return
        if tty:
            click.echo("\r" + status.line() + "  ", err=True, nl=False)
        elif status.elapsed_s - last[0] >= 5.0:
            last[0] = status.elapsed_s
            click.echo(status.line(), err=True)

    return show, tty


@click.command("run")
@click.argument("model", type=click.Path())
@click.option("-s", "--source", required=True, metavar="SRC",
              help="Camera index or /dev/videoN, video file, rtsp:// or http:// URL, image folder/glob, "
                   "or synthetic://640x480@30.")
@click.option("--mode", type=click.Choice(["realtime", "every-frame"]),
              help="realtime: newest frame only, drops counted (default for cameras/streams); "
                   "every-frame: all frames, as fast as possible (default for files/folders).")
@delegate_cli_options(several=False)
@click.option("--threads", type=_ThreadsParam(), metavar="N|auto",
              help="CPU threads for the interpreter (default: the model's tuned count, else the runtime's), or "
                   "'auto': measure the every-frame pipeline on the first frames of the source with 1..cores "
                   "threads and with 2..cores single-threaded --instances, and keep the fastest (decoding and "
                   "preprocessing need cores too, so this is rarely the count that is fastest standalone).")
@click.option("--instances", type=click.IntRange(min=1),
              help="Model instances running consecutive frames at once, each with --threads threads; results "
                   "stay in frame order (default 1; with --threads auto, also measured).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after N processed frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after S seconds.")
@click.option("-o", "--output", type=click.Path(), help="Write the annotated video here (.mp4 or .avi).")
@click.option("--jsonl", type=click.Path(), help="Write per-frame results as JSON lines here.")
@click.option("--show", is_flag=True, help="Preview window (needs a GUI build of OpenCV).")
@click.option("--postprocess", cls=_PostprocessOption, type=_DecoderChoice(),
              help="Output decoding (default: chosen from the model's task and output shapes).")
@postprocess_option
@click.option("--camera-size", help="Capture resolution requested from a camera, WIDTHxHEIGHT.")
@click.option("--fps", "source_fps", type=click.FloatRange(min=0, min_open=True),
              help="Frame rate requested from a camera; pacing rate of an image folder (and of a file in "
                   "realtime mode, instead of its declared rate).")
@click.option("--reconnects", default=5, show_default=True, type=click.IntRange(min=0),
              help="Reconnect attempts when a network stream drops.")
@click.option("--force", is_flag=True, help="Overwrite existing --output/--jsonl files.")
@click.option("--plot", "plot_path", metavar="FILE.png",
              help="FPS over time, per-stage latency, frame age and drops (needs matplotlib).")
@preprocess_options
@json_option
@click.pass_obj
def command(ctx, model, source, mode, delegate, delegate_option, threads, instances, max_frames, duration, output,
            jsonl, show, postprocess, postprocess_option, camera_size, source_fps, reconnects, force, input_size, color,
            value_range, mean, std, resize, json_path, plot_path):
    """Run MODEL on a video SOURCE and measure real-time FPS, drops and per-stage latency.

    Stops at the end of the input, after --max-frames or --duration, or on Ctrl-C; the report
    (--json) is written and the video (--output) finalised in every case.
    """
    from ..fileio import check_outputs
    from ..pipeline import (
        JsonLinesSink,
        Pipeline,
        PreviewSink,
        RunOptions,
        SourceOptions,
        VideoSink,
        open_source,
        stop_on_signals,
    )

    check_outputs([model, source], force=force, created={"--output": output, "--jsonl": jsonl},
                  reports={"--json": json_path, "--plot": plot_path})
    width, height = _camera_size(camera_size)
    source_options = SourceOptions(width=width, height=height, fps=source_fps, max_reconnects=reconnects)
    src = open_source(source, source_options)
    if camera_size and src.kind != "camera":
        ctx.warn(f"--camera-size is requested from cameras only; ignored for {src.description}")
    options = RunOptions(mode=mode, max_frames=max_frames, duration_s=duration, postprocess=postprocess,
                         postprocess_options=tuple(parse_postprocess_options(postprocess_option).items()))
    pre_opts = preprocess_kwargs(input_size, color, value_range, mean, std, resize)
    show_status, tty = _status_printer(ctx)
    # Sinks first: a headless --show or an unsupported --output container fails before the model loads.
    sinks = []
    if show:
        sinks.append(PreviewSink())
    if output:
        sinks.append(VideoSink(output, overwrite=force))
    if jsonl:
        sinks.append(JsonLinesSink(jsonl, overwrite=force))

    load_model, runtime = _model_loader(ctx, model, delegate, pre_opts, parse_delegate_options(delegate_option))
    threads, instances, choice = _layout(ctx, load_model, runtime, delegate, threads, instances,
                                         lambda: open_source(source, source_options), options)
    with contextlib.ExitStack() as stack:
        m, *replicas = [stack.enter_context(load_model(threads)) for _ in range(instances or 1)]
        report_delegate(ctx, m.delegate_report)
        pipeline = Pipeline(m, src, sinks, options, status=show_status, model_name=str(model), threads=threads,
                            thread_choice=choice, replicas=replicas)
        ctx.info(f"running {model} on {src.description} ({pipeline.mode}, delegate "
                 f"{getattr(m.delegate_report, 'delegate', delegate)}, postprocess {pipeline.postprocess_name}); "
                 "Ctrl-C stops")
        try:
            with stop_on_signals(pipeline):
                report = pipeline.run()
        finally:
            if tty and not ctx.quiet:
                click.echo("", err=True)
    _finish(ctx, report, json_path, plot_path)


def _finish(ctx, report, json_path: str | None, plot_path: str | None = None) -> None:
    """Warnings, the summary table, --json and --plot; a run the source or a sink ended is an error."""
    from ..pipeline import StopReason, format_report

    for warning in report.warnings:  # library logs are silenced without -v: the report carries them
        ctx.warn(warning)
    click.echo(format_report(report), err=json_path == "-")
    emit_json(report.to_dict(), json_path)
    if plot_path and report.frames_processed:
        from ..fileio import to_jsonable
        from ..report.plots import run_figure, save_png

        save_png(run_figure(to_jsonable(report.to_dict())), plot_path)
    elif plot_path:
        ctx.warn(f"--plot {plot_path} not written: no frame was processed")
    partial = f"; partial report written to {json_path}" if json_path and json_path != "-" else ""
    if report.stop_reason is StopReason.SOURCE_FAILED:
        raise SourceError(f"the source failed during the run: {report.failure}{partial}")
    if report.stop_reason in (StopReason.SINK_FAILED, StopReason.INFERENCE_STUCK):
        raise EdgeqError(f"{report.failure}{partial}")
    if report.frames_processed == 0 and report.stop_reason is not StopReason.INTERRUPTED:
        unusable = f"; {report.frames_corrupt} frame(s) were corrupt or unusable" if report.frames_corrupt else ""
        raise EdgeqError(f"no frame was processed (stop: {report.stop_reason.value}{unusable}){partial}")
