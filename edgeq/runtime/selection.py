"""``auto``: the Edge TPU for models compiled for it, else a hardware GPU that runs the whole model, else XNNPACK.

Every candidate tried and not used is recorded with the reason (``Loaded.attempts``).
"""
from __future__ import annotations

import dataclasses
import sys

from ..errors import DelegateError, DelegateUnavailableError
from ..tflite_format import EDGETPU_CUSTOM_OP
from .backends import Backend
from .engines import Loaded, LoadRequest
from .loaders import load_edgetpu_interpreter, load_gpu_accelerator, load_xnnpack
from .report import DelegateAttempt
from .vulkan import probe_vulkan_adapters


def load_auto(req: LoadRequest) -> Loaded:
    """The first usable of edgetpu, gpu, xnnpack; a TPU-compiled model without a TPU is an error."""
    attempts: list[DelegateAttempt] = []
    if req.compiled_for_tpu:
        try:
            loaded = load_edgetpu_interpreter(_only(req, "device"))
        except (DelegateUnavailableError, DelegateError) as exc:
            raise DelegateUnavailableError(f"{req.source} is compiled for the Edge TPU but the Edge TPU cannot be "
                                           f"used: {exc}") from exc
        attempts.append(DelegateAttempt("edgetpu", True, "model compiled for the Edge TPU and a TPU is present"))
        return dataclasses.replace(loaded, attempts=tuple(attempts))
    attempts.append(DelegateAttempt("edgetpu", False, f"model not compiled for the Edge TPU (no {EDGETPU_CUSTOM_OP})"))

    reason = gpu_unusable_reason(req.backend)
    if reason is None:
        try:
            loaded = load_gpu_accelerator(_only(req, "precision"), require_full=True)
        except (DelegateUnavailableError, DelegateError) as exc:
            reason = str(exc)
        else:
            attempts.append(DelegateAttempt("gpu", True, "hardware GPU adapter runs the whole model"))
            return dataclasses.replace(loaded, attempts=tuple(attempts))
    attempts.append(DelegateAttempt("gpu", False, reason))
    loaded = load_xnnpack(_only(req))
    attempts.append(DelegateAttempt("xnnpack", True, "CPU"))
    return dataclasses.replace(loaded, attempts=tuple(attempts))


def _only(req: LoadRequest, *names: str) -> LoadRequest:
    """The request with only the options one candidate takes."""
    return dataclasses.replace(req, options={k: v for k, v in req.options.items() if k in names})


def gpu_unusable_reason(be: Backend) -> str | None:
    """Why ``auto`` must not try the GPU here, or None; the Vulkan probe runs in a child process, once."""
    if not be.has_compiled_model:
        return f"the GPU accelerator needs ai-edge-litert (backend is {be.name})"
    if "tensorflow" in sys.modules:
        return ("not probed: TensorFlow is imported in this process, and Vulkan drivers built on LLVM (Mesa's "
                "lavapipe) crash next to it; use a process without TensorFlow for the GPU")
    # Probed in a child process (once): a Vulkan driver loaded into this process would crash a
    # later `import tensorflow` here, and `auto` must not make that choice for the user.
    adapters, probe_failure = probe_vulkan_adapters()
    if probe_failure:
        return probe_failure
    if adapters is None:
        return "no Vulkan loader (libvulkan) installed"
    if not adapters:
        return "no Vulkan adapter found"
    if all(a.is_software for a in adapters):
        return (f"only software Vulkan adapters ({', '.join(a.name for a in adapters)}): slower than XNNPACK; "
                "ask for delegate='gpu' explicitly to use them")
    return None
