"""The ``edgeq`` command line: a click group of thin commands over the library.

Commands are imported lazily so ``edgeq --help`` stays fast and never imports TensorFlow.
Each command lives in ``edgeq/commands/<name>.py`` as a click command named ``command``.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from typing import Any

import click

from ._version import __version__
from .errors import EdgeqError

# name -> (module, short help). The module defines `command`.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("edgeq.commands.convert", "Quantize a float Keras/SavedModel into a .tflite model."),
    "inspect": ("edgeq.commands.inspect", "Show inputs, outputs, ops and metadata of a .tflite model."),
    "bench": ("edgeq.commands.bench", "Measure latency of models x delegates x threads."),
    "tune": ("edgeq.commands.tune", "Find the fastest delegate and thread count here; embed it with -o."),
    "run": ("edgeq.commands.run", "Run a model on a camera/video/image source and measure real-time FPS."),
    "eval": ("edgeq.commands.eval", "Compare quantized models with the float reference on labelled data."),
    "analyze": ("edgeq.commands.analyze", "Per-layer quantization sensitivity of a model."),
    "edgetpu": ("edgeq.commands.edgetpu", "Edge TPU pre-flight check and compiler integration."),
    "demo": ("edgeq.commands.demo", "Convert, evaluate, benchmark and run the bundled model; write a report."),
    "report": ("edgeq.commands.report", "One self-contained HTML page from saved --json results."),
    "qat": ("edgeq.commands.qat", "Quantization-aware fine-tuning, then a full-integer .tflite."),
}


@dataclasses.dataclass
class Context:
    """What every command receives: global flags."""

    verbose: bool = False
    quiet: bool = False

    def info(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)

    def warn(self, msg: str) -> None:
        click.secho(f"warning: {msg}", fg="yellow", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _ = COMMANDS[name]
        try:
            return importlib.import_module(module).command
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return _unavailable(name)
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


def _unavailable(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: Any) -> None:
        raise EdgeqError(f"'edgeq {name}' is not available in this build")
    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and library/TensorFlow logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.version_option(__version__, prog_name="edgeq")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """edgeq: quantize vision models to full-integer TFLite, run them on edge delegates, measure them."""
    ctx.obj = Context(verbose=verbose, quiet=quiet)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Library warnings are echoed by the commands themselves (as "warning: ..."), once.
        logging.getLogger("edgeq").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point: EdgeqError -> message + exit code, no traceback unless --verbose."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.main(args=args, prog_name="edgeq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except EdgeqError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.secho(f"error: {exc}", fg="red", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
