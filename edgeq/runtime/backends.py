"""Which TFLite interpreter package runs the model: ai-edge-litert, tflite-runtime, or tensorflow.lite.

The first importable one wins (``EDGEQ_BACKEND`` forces one). TensorFlow is imported only when
neither of the two runtime packages is installed: a device install never pays for it.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from ..errors import DelegateUnavailableError, UsageError

log = logging.getLogger(__name__)

BACKENDS = ("ai-edge-litert", "tflite-runtime", "tensorflow")
BACKEND_ENV = "EDGEQ_BACKEND"
_INSTALL_HINT = {
    "ai-edge-litert": "pip install ai-edge-litert",
    "tflite-runtime": "pip install tflite-runtime 'numpy<2'",
    "tensorflow": "pip install 'edgeq[convert]'",
}


@dataclasses.dataclass(frozen=True)
class Backend:
    """The pieces of one interpreter package that edgeq uses."""

    name: str
    version: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any]
    op_resolver_type: Any  # the OpResolverType enum, or None where the package has none
    module: Any

    @property
    def has_compiled_model(self) -> bool:
        """LiteRT's CompiledModel API (the GPU accelerator) exists only in ai-edge-litert."""
        return self.name == "ai-edge-litert"


def _import_backend(name: str) -> Backend:
    if name == "ai-edge-litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        version = _dist_version("ai-edge-litert")
        return Backend(name, version, mod.Interpreter, mod.load_delegate, getattr(mod, "OpResolverType", None), mod)
    if name == "tflite-runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        version = _dist_version("tflite-runtime")
        return Backend(name, version, mod.Interpreter, mod.load_delegate, getattr(mod, "OpResolverType", None), mod)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = importlib.import_module("tensorflow")
    lite = tf.lite
    return Backend(name, tf.__version__, lite.Interpreter, lite.experimental.load_delegate,
                   getattr(lite.experimental, "OpResolverType", None), lite)


def _dist_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - version is informational only
        return "unknown"


_cache: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """The backend named (or by ``EDGEQ_BACKEND``), else the first importable in BACKENDS order."""
    requested = name or os.environ.get(BACKEND_ENV) or None
    if requested is not None:
        if requested not in BACKENDS:
            raise UsageError(f"unknown backend {requested!r} (from {BACKEND_ENV} or backend=); "
                             f"valid backends: {', '.join(BACKENDS)}")
        if requested not in _cache:
            try:
                _cache[requested] = _import_backend(requested)
            except ImportError as exc:
                raise DelegateUnavailableError(
                    f"backend {requested!r} was requested but cannot be imported ({exc}); "
                    f"install it: {_INSTALL_HINT[requested]}") from exc
        return _cache[requested]
    errors = []
    for candidate in BACKENDS:
        if candidate in _cache:
            return _cache[candidate]
        try:
            backend = _import_backend(candidate)
        except ImportError as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        if candidate == "tensorflow":
            log.warning("running models through tensorflow.lite (deprecated): install ai-edge-litert "
                        "for the supported, smaller runtime")
        _cache[candidate] = backend
        return backend
    raise DelegateUnavailableError("no TFLite interpreter is installed: pip install ai-edge-litert "
                                   f"(tried {'; '.join(errors)})")
