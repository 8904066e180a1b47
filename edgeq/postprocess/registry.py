"""The decoder registry: the one place that knows which output decoders exist.

A ``Decoder`` is one entry: its name (what ``--postprocess`` takes), its task, its help text, how
to tell whether a model's outputs fit it, and how to decode them. ``edgeq run``'s choices and help,
the automatic choice for a model and ``edgeq.metadata.TASKS`` all read this registry, so a new
decoder is one ``register(Decoder(...))`` and nothing else.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ModelError, UsageError
from .results import FrameContext, Result

Shapes = Sequence[tuple[int, ...]]
# (output shapes, the model's task or None) -> None if the decoder fits, else why not.
FitsCheck = Callable[[Shapes, "str | None"], "str | None"]
DecodeFn = Callable[[Sequence[Any], FrameContext], Result]
OPTION_KINDS = ("float", "int", "bool", "str", "ints", "floats")
AUTO = "auto"  # --postprocess auto: the one decoder that fits, else an error naming each one's reason


@dataclasses.dataclass(frozen=True)
class DecoderOption:
    """One parameter a decoder takes (``--postprocess-option name=value``); ``default`` None = required."""

    name: str
    kind: str  # one of OPTION_KINDS; "ints"/"floats" are comma-separated lists
    help: str
    default: Any = None

    def parse(self, decoder: str, value: Any) -> Any:
        """A CLI string (or a Python/JSON value) as this option's type; a bad value names the option."""
        try:
            if self.kind in ("ints", "floats"):
                items = value.split(",") if isinstance(value, str) else list(value)
                conv = int if self.kind == "ints" else float
                return tuple(conv(v) for v in items)
            if self.kind == "bool":
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return text in ("true", "1", "yes")
            if isinstance(value, bool):
                raise ValueError(value)
            return {"float": float, "int": int, "str": str}[self.kind](value)
        except (ValueError, TypeError):
            raise UsageError(f"--postprocess-option {self.name}={value!r} for {decoder}: expected {self.kind} "
                             f"({self.help})") from None


# (option values) -> (fits check, decode function) bound to them.
BindFn = Callable[[Mapping[str, Any]], "tuple[FitsCheck, DecodeFn]"]


@dataclasses.dataclass(frozen=True)
class Decoder:
    """One registered output decoder.

    ``priority`` orders the automatic choice: decoders are tried lowest first and the first whose
    ``fits`` returns None is taken, so a catch-all (``raw``) sits last and a specific head goes
    before a general one.
    """

    name: str
    task: str  # the model task it serves: classify, detect, other, ...
    help: str
    fits: FitsCheck
    decode: DecodeFn
    priority: int = 100
    options: tuple[DecoderOption, ...] = ()
    bind: BindFn | None = None  # builds fits/decode for given option values; None = takes no options
    settings: tuple[tuple[str, Any], ...] = ()  # the option values ``fits``/``decode`` are bound to
    # Taken by the default choice (no --postprocess) when it fits; False for generic heads whose shape other
    # models share (a (1, H, W, 1) map may be a depth map): those need a name, ``auto`` or the model's metadata.
    automatic: bool = True

    def configure(self, given: Mapping[str, Any] | None) -> Decoder:
        """This decoder with ``given`` options (strings from the CLI or typed values) over its defaults.

        Unknown names and bad values are usage errors naming the option and listing the valid ones.
        """
        given = dict(given or {})
        if not given and (self.settings or not self.options):
            return self
        if not self.options or self.bind is None:
            raise UsageError(f"--postprocess {self.name} takes no options; got {sorted(given)}")
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UsageError(f"--postprocess {self.name} has no option(s) {unknown}; valid: "
                             + ", ".join(f"{o.name} ({o.kind})" for o in self.options))
        values = dict(self.settings) or {o.name: o.default for o in self.options}
        values.update({k: known[k].parse(self.name, v) for k, v in given.items()})
        fits, decode = self.bind(values)
        return dataclasses.replace(self, fits=fits, decode=decode, settings=tuple(values.items()))

    def settings_dict(self) -> dict[str, Any]:
        """The bound option values as JSON-ready data (for metadata and reports); None values left out."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.settings if v is not None}

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"decoder name {self.name!r}: use letters, digits, '-' or '_'")
        if not self.task:
            raise UsageError(f"decoder {self.name!r} needs a task (classify, detect, other, ...)")


def optioned_decoder(name: str, task: str, help: str, options: Sequence[DecoderOption], bind: BindFn, *,
                     priority: int = 100, **defaults: Any) -> Decoder:
    """A decoder taking ``options``, bound to their defaults with ``defaults`` over them (a preset such as
    ``mediapipe-face-short`` is the generic anchor decoder with MediaPipe's values as its defaults)."""
    opts = tuple(dataclasses.replace(o, default=defaults.get(o.name, o.default)) for o in options)
    values = {o.name: o.default for o in opts}
    fits, decode = bind(values)
    return Decoder(name, task, help, fits, decode, priority=priority, options=opts, bind=bind,
                   settings=tuple(values.items()))


_DECODERS: dict[str, Decoder] = {}


def register(decoder: Decoder, replace: bool = False) -> Decoder:
    """Add ``decoder`` (returned, so it can be kept in a module name); a taken name needs ``replace``."""
    if decoder.name in _DECODERS and not replace:
        raise UsageError(f"a decoder named {decoder.name!r} is already registered; pick another name "
                         "or pass replace=True")
    _DECODERS[decoder.name] = decoder
    return decoder


def unregister(name: str) -> Decoder:
    """Remove and return a registered decoder (tests, plugins replacing a built-in)."""
    decoder = get_decoder(name)
    del _DECODERS[name]
    return decoder


def decoder_names() -> tuple[str, ...]:
    """Registered names in registration order."""
    return tuple(_DECODERS)


def decoders() -> tuple[Decoder, ...]:
    """Registered decoders in registration order."""
    return tuple(_DECODERS.values())


def decoder_tasks() -> tuple[str, ...]:
    """The tasks the registered decoders serve, each once, in registration order."""
    return tuple(dict.fromkeys(d.task for d in _DECODERS.values()))


def get_decoder(name: str) -> Decoder:
    """The decoder registered as ``name``; an unknown name is a usage error listing the valid ones."""
    try:
        return _DECODERS[name]
    except KeyError:
        raise UsageError(f"unknown postprocess {name!r}; expected one of {', '.join(_DECODERS)}") from None


def choose_decoder(output_shapes: Shapes, task: str | None = None) -> Decoder:
    """The decoder for a model: the first (by priority) whose ``fits`` accepts its outputs and task."""
    shapes = [tuple(int(d) for d in s) for s in output_shapes]
    reasons = []
    for decoder in sorted(_DECODERS.values(), key=lambda d: d.priority):  # stable: ties keep registration order
        if not decoder.automatic and decoder.task != task:
            continue
        reason = decoder.fits(shapes, task)
        if reason is None:
            return decoder
        reasons.append(f"{decoder.name}: {reason}")
    raise ModelError(f"no registered decoder fits outputs {shapes} (task {task}): {'; '.join(reasons)}; "
                     "register one for this head or pass --postprocess")


def fitting_decoders(output_shapes: Shapes, task: str | None = None) -> tuple[list[Decoder], list[str]]:
    """(decoders that fit, "name: reason" for those that do not), the catch-all ``raw`` left out."""
    shapes = [tuple(int(d) for d in s) for s in output_shapes]
    fit, reasons = [], []
    for decoder in sorted(_DECODERS.values(), key=lambda d: d.priority):
        if decoder.task == "other" and decoder.name == "raw":
            continue
        reason = decoder.fits(shapes, task)
        if reason is None:
            fit.append(decoder)
        else:
            reasons.append(f"{decoder.name}: {reason}")
    return fit, reasons


def auto_decoder(output_shapes: Shapes, task: str | None = None) -> Decoder:
    """``--postprocess auto``: the one decoder whose ``fits`` accepts these outputs; none or several is an error."""
    shapes = [tuple(int(d) for d in s) for s in output_shapes]
    fit, reasons = fitting_decoders(shapes, task)
    if len(fit) == 1:
        return fit[0]
    if not fit:
        raise ModelError(f"--postprocess auto: no decoder fits outputs {shapes}: {'; '.join(reasons)}; pass "
                         "--postprocess NAME with --postprocess-option key=value, or --postprocess raw")
    raise ModelError(f"--postprocess auto: {len(fit)} decoders fit outputs {shapes} "
                     f"({', '.join(d.name for d in fit)}); pass --postprocess with one of them")


def resolve_decoder(output_shapes: Shapes, task: str | None = None, name: str | None = None,
                    options: Mapping[str, Any] | None = None,
                    embedded: Mapping[str, Any] | None = None) -> Decoder:
    """The decoder a run uses, checked against the model's outputs.

    ``name`` (``auto`` or a registered name, with ``options``) wins; else the decoder declared in the
    model's metadata (``embedded``: {"name", "options"}); else the automatic choice by priority. A named
    or declared decoder whose ``fits`` refuses the outputs is an error, never garbage results.
    """
    shapes = [tuple(int(d) for d in s) for s in output_shapes]
    if name == AUTO:
        if options:
            raise UsageError("--postprocess-option needs a decoder name: --postprocess auto picks one with its "
                             "default options")
        return auto_decoder(shapes, task)
    where = f"--postprocess {name}"
    if name is None and embedded:
        name, options, where = str(embedded.get("name")), embedded.get("options") or {}, "the model's metadata"
    if name is None:
        if options:
            raise UsageError("--postprocess-option needs --postprocess NAME")
        return choose_decoder(shapes, task)
    decoder = get_decoder(name).configure(options)
    reason = decoder.fits(shapes, task)
    if reason is not None:
        raise ModelError(f"{where}: decoder {name!r} does not fit the model's outputs {shapes}: {reason}; "
                         "pass --postprocess auto to see which decoder fits, or --postprocess raw")
    return decoder


def help_text() -> str:
    """One line per decoder, for ``--postprocess`` help."""
    return "; ".join(f"{d.name}: {d.help}" for d in _DECODERS.values())
