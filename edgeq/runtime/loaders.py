"""The loader of each builtin delegate: ``LoadRequest`` -> ``Loaded`` (an engine and its report).

The registry in ``delegates`` names them; ``selection`` (``auto``) calls them directly.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from collections.abc import Callable

from ..errors import DelegateError, DelegateUnavailableError
from ..tflite_format import EDGETPU_CUSTOM_OP
from .cpu_knobs import is_on
from .engines import CompiledModelEngine, Loaded, LoadRequest, interpreter_engine
from .libraries import load_edgetpu, load_external_delegate
from .vulkan import NO_VULKAN_HINT, vulkan_adapters

LATEST_KWARG = "experimental_default_delegate_latest_features"


def load_xnnpack(req: LoadRequest) -> Loaded:
    """The Interpreter's default XNNPACK delegate; ``latest=1`` enables its flag-protected features."""
    if not is_on(req.options, "latest"):
        return interpreter_engine(req, "xnnpack")
    try:
        takes = LATEST_KWARG in inspect.signature(req.backend.interpreter_class).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        raise DelegateUnavailableError(f"xnnpack: latest=1 needs an Interpreter with {LATEST_KWARG}, which "
                                       f"{req.backend.name} {req.backend.version} lacks; use latest=0")
    loaded = interpreter_engine(req, "xnnpack", interpreter_kwargs={LATEST_KWARG: True})
    return dataclasses.replace(loaded, details=loaded.details + (("latest_features", "on"),))


def load_cpu(req: LoadRequest) -> Loaded:
    return interpreter_engine(req, "cpu", resolver="BUILTIN_WITHOUT_DEFAULT_DELEGATES")


def load_cpu_ref(req: LoadRequest) -> Loaded:
    return interpreter_engine(req, "cpu-ref", resolver="BUILTIN_REF")


def load_edgetpu_interpreter(req: LoadRequest) -> Loaded:
    """libedgetpu as an external delegate; on a model not compiled for it, a warning says nothing offloads."""
    loaded = interpreter_engine(req, "edgetpu", delegate=load_edgetpu(req.backend, req.options))
    if req.compiled_for_tpu:
        return loaded
    return dataclasses.replace(loaded, warnings=(
        f"{req.source} has no {EDGETPU_CUSTOM_OP}: it was not compiled with edgetpu_compiler, so nothing "
        "will be offloaded to the Edge TPU (everything runs on the CPU)",))


def load_gpu(req: LoadRequest) -> Loaded:
    """library=PATH: a classic TFLite GPU delegate library; else LiteRT's GPU accelerator."""
    library = req.options.get("library")
    if library:
        lib_options = {k: v for k, v in req.options.items() if k != "library"}
        return interpreter_engine(req, "gpu", delegate=load_external_delegate(req.backend, str(library), lib_options,
                                                                             what="gpu"))
    return load_gpu_accelerator(req, require_full=False)


def library_loader(path: str) -> Callable[[LoadRequest], Loaded]:
    """The loader of an external delegate library given by path: every option goes to the library."""
    name = os.path.basename(path)

    def load(req: LoadRequest) -> Loaded:
        return interpreter_engine(req, name, delegate=load_external_delegate(req.backend, path, req.options,
                                                                            what=name))
    return load


def load_gpu_accelerator(req: LoadRequest, *, require_full: bool) -> Loaded:
    """LiteRT's CompiledModel on the GPU; num_threads goes to the CPU kernels of what the GPU leaves."""
    be, mf, source, num_threads = req.backend, req.model_file, req.source, req.num_threads
    if not be.has_compiled_model:
        raise DelegateUnavailableError(f"delegate 'gpu' needs ai-edge-litert's CompiledModel API (backend is "
                                       f"{be.name}); pip install ai-edge-litert, or give library=PATH of a "
                                       "classic TFLite GPU delegate")
    if "tensorflow" in sys.modules:
        raise DelegateUnavailableError(
            "gpu: TensorFlow is imported in this process; Vulkan drivers built on LLVM (Mesa's lavapipe) and "
            "LiteRT's GPU accelerator crash the process next to it (SIGSEGV/abort seen with TensorFlow 2.21 + "
            "ai-edge-litert 2.3), so edgeq does not even probe Vulkan here: run GPU inference in a process that "
            "does not import TensorFlow (convert in one process, infer in another)")
    adapters = vulkan_adapters()
    if not adapters:
        raise DelegateUnavailableError(f"gpu: {'no Vulkan loader' if adapters is None else 'no Vulkan adapter'} "
                                       f"found; {NO_VULKAN_HINT}")
    from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, GpuOptions, HardwareAccelerator, Options

    precision = req.options.get("precision") or "fp16"
    accel = HardwareAccelerator.GPU if require_full else HardwareAccelerator.GPU | HardwareAccelerator.CPU
    opts = Options(hardware_accelerators=accel, gpu_options=GpuOptions(enforce_f32=precision == "fp32"),
                   cpu_options=CpuOptions(num_threads=num_threads) if num_threads else None)
    try:
        compiled = CompiledModel.from_buffer(req.data, options=opts)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DelegateError(f"gpu: LiteRT could not compile {source} for the GPU "
                            f"({', '.join(a.name for a in adapters)}): {first}") from exc
    full = compiled.is_fully_accelerated()
    if require_full and not full:
        compiled.close()
        raise DelegateUnavailableError("the GPU accelerator supports only part of the model")
    engine = CompiledModelEngine(compiled, mf, req.data)
    adapter = next((a for a in adapters if not a.is_software), adapters[0])  # Dawn prefers hardware
    details = (("precision", precision), ("adapter", adapter.name), ("adapter_type", adapter.device_type),
               ("num_threads", f"{num_threads or 'default'} (CPU kernels of nodes the GPU does not take)"))
    warnings = () if full else (f"{source}: the GPU runs only part of the model; the rest runs on the CPU",)
    return Loaded(engine=engine, delegate="gpu", delegated_nodes=len(mf.main.operators) if full else None,
                  details=details, warnings=warnings)
