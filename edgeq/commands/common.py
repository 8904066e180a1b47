"""Options and helpers shared by the commands (preprocessing options, delegate options, --json output)."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..errors import UsageError
from ..fileio import dump_json
from ..preprocess import parse_floats, parse_size


def preprocess_options(f: Callable) -> Callable:
    """--input-size/--color/--range/--mean/--std/--resize, as in `edgeq convert`."""
    opts = [
        click.option("--input-size", help="Model input as WIDTHxHEIGHT (default: from the model)."),
        click.option("--color", type=click.Choice(["rgb", "bgr", "gray"], case_sensitive=False),
                     help="Colour order the model expects (default: gray for 1 channel, else rgb)."),
        click.option("--range", "value_range", help="Value mapping: 0,1 | -1,1 | 0,255 (raw). Default 0,1."),
        click.option("--mean", help="Per-channel mean(s) subtracted from 0..255 pixels, comma-separated."),
        click.option("--std", help="Per-channel std(s) dividing (pixel - mean), comma-separated."),
        click.option("--resize", type=click.Choice(["stretch", "letterbox", "center-crop"]),
                     help="How images are fitted to the input size (default stretch)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def preprocess_kwargs(input_size: str | None, color: str | None, value_range: str | None,
                      mean: str | None, std: str | None, resize: str | None) -> dict[str, Any]:
    """The CLI strings parsed into the options dict the library takes."""
    return {
        "input_size": parse_size(input_size) if input_size else None,
        "color": color.upper() if color else None,
        "value_range": value_range,
        "mean": parse_floats(mean, "--mean"),
        "std": parse_floats(std, "--std"),
        "resize": resize,
    }


json_option = click.option("--json", "json_path", metavar="FILE",
                           help="Write machine-readable results to FILE ('-' = standard output).")


def emit_json(obj: Any, path: str | None) -> None:
    if path is None:
        return
    text = dump_json(obj, path)
    if path == "-":
        click.echo(text, nl=False)


@contextlib.contextmanager
def progress_bar(ctx: Any, label: str) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a click progress bar on stderr (none with --quiet)."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if ctx.quiet:
            return
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def report_delegate(ctx: Any, report: Any) -> None:
    """Say which delegate runs the model, why the others were skipped, and any delegate warning."""
    for attempt in report.attempts:
        if not attempt.ok:
            ctx.info(f"skipped delegate {attempt.name}: {attempt.reason}")
    tuned = dict(getattr(report, "details", ())).get("tuned")
    if tuned:
        ctx.info(f"tuned: {tuned}")
    for w in getattr(report, "warnings", ()):
        ctx.warn(w)


def parse_key_values(pairs: tuple[str, ...], option: str, example: str) -> dict[str, str]:
    """A repeatable ``OPTION KEY=VALUE`` -> dict (values stay strings: the consumer types them)."""
    opts = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {p!r}: expected KEY=VALUE, e.g. {example}")
        opts[key.strip()] = value.strip()
    return opts


def parse_delegate_options(pairs: tuple[str, ...]) -> dict[str, str]:
    return parse_key_values(pairs, "--delegate-option", "device=usb:0")


def parse_postprocess_options(pairs: tuple[str, ...]) -> dict[str, str]:
    return parse_key_values(pairs, "--postprocess-option", "score_threshold=0.6")


def postprocess_option(f: Callable) -> Callable:
    """``--postprocess-option KEY=VALUE`` (repeatable), the decoder's parameters."""
    return click.option("--postprocess-option", "postprocess_option", multiple=True, metavar="KEY=VALUE",
                        help="A decoder parameter (repeatable), e.g. strides=8,16,16,16 or score_threshold=0.6; "
                             "unknown keys list the decoder's options.")(f)


class _RegistryHelpOption(click.Option):
    """A click option whose help is written when shown, from the delegate registry.

    Computed late: delegates registered after the commands were imported are listed too, and
    the registry (numpy and the runtime) is imported only for --help, not for every command.
    """

    def __init__(self, *args: Any, help_text: Callable[[], str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._help_text = help_text

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self._help_text()
        return super().get_help_record(ctx)


def _delegate_help(lead: str) -> Callable[[], str]:
    def text() -> str:
        from ..runtime.delegates import delegate_help

        return f"{lead}: {delegate_help()}."
    return text


def _delegate_option_help(lead: str) -> Callable[[], str]:
    def text() -> str:
        from ..runtime.delegates import delegate_options_help

        return f"{lead} Options by delegate: {delegate_options_help()}."
    return text


def delegate_cli_options(*, several: bool) -> Callable[[Callable], Callable]:
    """--delegate (one, or with ``several`` a comma-separated list) and --delegate-option, help from the registry."""
    if several:
        name, lead, default = "delegates", ("Comma-separated delegates (default: each model's tuned one from "
                                            "`edgeq tune -o`, else auto)"), "auto"
        option_lead = "Delegate option KEY=VALUE (repeatable); each delegate gets the options it takes."
    else:  # not given: the model's tuned configuration (edgeq tune -o), else auto -- edgeq.load decides
        name, lead, default = "delegate", "Delegate (default: the one `edgeq tune` embedded, else auto)", None
        option_lead = "Delegate option KEY=VALUE (repeatable)."
    opts = [
        click.option("--delegate", name, default=default, cls=_RegistryHelpOption,
                     help_text=_delegate_help(lead)),
        click.option("--delegate-option", "delegate_options" if several else "delegate_option", multiple=True,
                     metavar="KEY=VALUE", cls=_RegistryHelpOption, help_text=_delegate_option_help(option_lead)),
    ]

    def decorate(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return decorate
