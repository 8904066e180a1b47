"""The delegate registry: every delegate edgeq knows is one ``DelegateSpec``, registered here.

Name checks, option checks, ``bench``'s per-delegate option filtering and the CLI's ``--delegate``
help all read this registry, so a new delegate is one ``register_delegate(DelegateSpec(...))``::

    register_delegate(DelegateSpec(
        name="mynpu", help="My NPU through its TFLite delegate",
        options=(DelegateOption("device", "N"),),
        loader=lambda req: interpreter_engine(req, "mynpu", delegate=load_external_delegate(
            req.backend, "libmynpu.so", req.options, what="mynpu"))))

A name that is not registered but looks like a path is an external delegate library (.so) that
takes any ``key=value`` options.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError
from .cpu_knobs import check_bool, check_flags, check_weight_cache, load_litert_cpu
from .engines import Loaded, LoadRequest
from .loaders import library_loader, load_cpu, load_cpu_ref, load_edgetpu_interpreter, load_gpu, load_xnnpack
from .selection import load_auto

Loader = Callable[[LoadRequest], Loaded]


@dataclasses.dataclass(frozen=True)
class DelegateOption:
    """One ``key=value`` option a delegate takes; ``values`` shows its form in help (``fp16|fp32``, ``PATH``).

    ``from_model``: the only values a model file's tuned configuration may set (None: any valid value);
    options that name paths allow none or fixed words, so a model never points edgeq at a file.
    """

    name: str
    values: str
    choices: tuple[str, ...] = ()
    check: Callable[[str], None] | None = None  # raises UsageError for a bad value
    from_model: tuple[str, ...] | None = None

    def validate(self, value: Any) -> None:
        if self.choices and value not in self.choices:
            raise UsageError(f"{self.name}={value!r}: expected one of {', '.join(self.choices)}")
        if self.check is not None and value is not None:
            self.check(str(value))

    @property
    def usage(self) -> str:
        return f"{self.name}={self.values}"


@dataclasses.dataclass(frozen=True)
class DelegateSpec:
    """A delegate: its name, what it is, the options it takes, and the loader that builds its engine.

    ``runs_edgetpu_models``: it may be given a model compiled for the Edge TPU (others refuse one).
    ``delegates_nodes``: False for the builtin-kernel paths that by design delegate nothing
    (``bench`` warns when any other delegate took no node).
    ``library_option``: an option whose value is a delegate library: given, every option goes to
    that library (which defines its own) instead of being checked against ``options``.
    ``trial_kernels``: the OpResolverType the crash-containment trial run (``runtime.probe``) uses
    for this delegate's CPU kernels ("" = builtin kernels with XNNPACK).
    ``tune_variants``: option sets ``edgeq tune`` measures besides the defaults (only options that
    change speed or init time, never what the model computes).
    """

    name: str
    help: str
    loader: Loader
    options: tuple[DelegateOption, ...] = ()
    runs_edgetpu_models: bool = False
    library_option: str | None = None
    delegates_nodes: bool = True
    trial_kernels: str = ""
    tune_variants: tuple[tuple[tuple[str, str], ...], ...] = ()

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def takes_any_option(self, options: Mapping[str, Any]) -> bool:
        return self.library_option is not None and bool(options.get(self.library_option))


DELEGATES: dict[str, DelegateSpec] = {}
"""The registered delegates by name, in registration order (the order help and errors list them)."""


def register_delegate(spec: DelegateSpec, *, replace: bool = False) -> DelegateSpec:
    """Make ``spec`` a delegate for ``edgeq.load``, option checks, ``bench`` and the CLI help."""
    if not isinstance(spec, DelegateSpec):
        raise UsageError(f"register_delegate takes a DelegateSpec, got {type(spec).__name__}")
    if not spec.name or _looks_like_path(spec.name):
        raise UsageError(f"delegate name {spec.name!r}: use a plain name (paths mean external delegate libraries)")
    if spec.name in DELEGATES and not replace:
        raise UsageError(f"delegate {spec.name!r} is already registered; pass replace=True to replace it")
    DELEGATES[spec.name] = spec
    return spec


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.endswith((".so", ".dylib", ".dll")) or ".so." in name


def is_delegate_path(name: str) -> bool:
    """Is ``name`` an external delegate library path rather than a registered delegate?"""
    return name not in DELEGATES and _looks_like_path(name)


def check_delegate_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError(f"delegate must be a name or a library path, got {name!r}; valid names: "
                         f"{', '.join(DELEGATES)}")
    if name not in DELEGATES and not is_delegate_path(name):
        raise UsageError(f"unknown delegate {name!r}; valid delegates: {', '.join(DELEGATES)}, "
                         "or a path to an external delegate library (.so) with key=value options")


def delegate_spec(name: str) -> DelegateSpec:
    """The registered spec, or for a library path one that loads that library with any options."""
    check_delegate_name(name)
    if name in DELEGATES:
        return DELEGATES[name]
    return DelegateSpec(name=os.path.basename(name), help=f"external delegate library {name}",
                        loader=library_loader(name), runs_edgetpu_models=True)


def _takes_any_option(name: str, options: Mapping[str, Any]) -> bool:
    """An external library (by path, or through a library option) defines its own options."""
    return name not in DELEGATES or DELEGATES[name].takes_any_option(options)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Builtin delegates take only their documented options (external ones take any)."""
    if _takes_any_option(name, options):
        return
    spec = DELEGATES[name]
    valid = spec.option_names
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(f"delegate {name!r} does not take option(s) {', '.join(unknown)}; valid options: "
                         f"{', '.join(valid) if valid else 'none'}")
    for option in spec.options:
        if option.name in options:
            option.validate(options[option.name])


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Options read from a model file: valid for the delegate, and only the values a model may set."""
    check_options(name, options)
    for option in DELEGATES[name].options:
        if option.name in options and option.from_model is not None and \
                str(options[option.name]) not in option.from_model:
            allowed = ", ".join(option.from_model) or "nothing"
            raise UsageError(f"{option.name}={options[option.name]!r} may not come from a model file (allowed there: "
                             f"{allowed}); pass it explicitly")


def options_for(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a multi-delegate benchmark that this delegate takes (an external library: all)."""
    if _takes_any_option(name, options):
        return dict(options)
    return {k: v for k, v in options.items() if k in DELEGATES[name].option_names}


def delegate_help() -> str:
    """The valid ``--delegate`` values, for CLI help."""
    return f"{', '.join(DELEGATES)}, or the path of an external delegate library (.so)"


def delegate_options_help() -> str:
    """The ``key=value`` options of each delegate that takes any, for CLI help."""
    by_delegate = [f"{s.name}: {', '.join(o.usage for o in s.options)}" for s in DELEGATES.values() if s.options]
    return "; ".join(by_delegate + ["an external library: its own"])


def check_edgetpu_device(device: str) -> None:
    kind, _, index = device.partition(":")
    if kind not in ("usb", "pci") or (index and not index.isdigit()):
        raise UsageError(f"Edge TPU device {device!r}: expected usb, usb:N, pci or pci:N")


# ---- the builtin delegates -------------------------------------------------------------------
_DEVICE = DelegateOption("device", "usb|usb:N|pci|pci:N", check=check_edgetpu_device)
_PRECISION = DelegateOption("precision", "fp16|fp32", choices=("fp16", "fp32"))
_LIBRARY = DelegateOption("library", "PATH", from_model=())
_LATEST = DelegateOption("latest", "0|1", check=check_bool("latest"))
_FLAGS = DelegateOption("xnnpack_flags", "INT", check=check_flags)
_WEIGHT_CACHE = DelegateOption("weight_cache", "on|DIR", check=check_weight_cache, from_model=("on",))
_YNNPACK = DelegateOption("ynnpack", "0|1", check=check_bool("ynnpack"))

register_delegate(DelegateSpec(
    "auto", "Edge TPU if the model is compiled for it and a TPU is present, else a hardware GPU if the whole "
    "model runs on it, else XNNPACK", load_auto, (_DEVICE, _PRECISION), runs_edgetpu_models=True))
register_delegate(DelegateSpec(
    "xnnpack", "optimized CPU kernels through XNNPACK (the default CPU path; num_threads; latest=1: XNNPACK's "
    "not-yet-default operators)", load_xnnpack, (_LATEST,), tune_variants=((("latest", "1"),),)))
register_delegate(DelegateSpec(
    "litert-cpu", "CPU through LiteRT's CompiledModel API (XNNPACK underneath; xnnpack_flags, latest, weight_cache "
    "to cut init, ynnpack where built in)", load_litert_cpu, (_FLAGS, _LATEST, _WEIGHT_CACHE, _YNNPACK),
    tune_variants=((("latest", "1"),), (("weight_cache", "on"),), (("ynnpack", "1"),))))
register_delegate(DelegateSpec("cpu", "builtin CPU kernels without the default XNNPACK delegate", load_cpu,
                               delegates_nodes=False, trial_kernels="BUILTIN_WITHOUT_DEFAULT_DELEGATES"))
register_delegate(DelegateSpec(
    "cpu-ref", "reference CPU kernels (slow ground truth)", load_cpu_ref, delegates_nodes=False,
    trial_kernels="BUILTIN_REF"))
register_delegate(DelegateSpec(
    "edgetpu", "Coral Edge TPU through libedgetpu", load_edgetpu_interpreter, (_DEVICE, _LIBRARY),
    runs_edgetpu_models=True))
register_delegate(DelegateSpec(
    "gpu", "LiteRT GPU accelerator via the CompiledModel API, or with library=PATH a classic TFLite GPU "
    "delegate library (which then takes its own options)", load_gpu, (_PRECISION, _LIBRARY), library_option="library"))
