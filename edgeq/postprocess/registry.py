"""The decoder registry: the one place that knows which output decoders exist.

A ``Decoder`` is one entry: its name (what ``--postprocess`` takes), its task, its help text, how
to tell whether a model's outputs fit it, and how to decode them. ``edgeq run``'s choices and help,
the automatic choice for a model and ``edgeq.metadata.TASKS`` all read this registry, so a new
decoder is one ``register(Decoder(...))`` and nothing else.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ModelError, UsageError
from .results import FrameContext, Result

Shapes = Sequence[tuple[int, ...]]
# (output shapes, the model's task or None) -> None if the decoder fits, else why not.
FitsCheck = Callable[[Shapes, "str | None"], "str | None"]
DecodeFn = Callable[[Sequence[Any], FrameContext], Result]


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

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"decoder name {self.name!r}: use letters, digits, '-' or '_'")
        if not self.task:
            raise UsageError(f"decoder {self.name!r} needs a task (classify, detect, other, ...)")


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
        reason = decoder.fits(shapes, task)
        if reason is None:
            return decoder
        reasons.append(f"{decoder.name}: {reason}")
    raise ModelError(f"no registered decoder fits outputs {shapes} (task {task}): {'; '.join(reasons)}; "
                     "register one for this head or pass --postprocess")


def help_text() -> str:
    """One line per decoder, for ``--postprocess`` help."""
    return "; ".join(f"{d.name}: {d.help}" for d in _DECODERS.values())
