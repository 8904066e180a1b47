"""Run .tflite models through LiteRT delegates (XNNPACK, GPU, Edge TPU, external) with one API.

Runtime code: it never imports TensorFlow when ai-edge-litert or tflite-runtime is installed.

Modules: ``model`` (EdgeModel, load), ``delegates`` (the delegate registry), ``selection``
(``auto``), ``loaders`` (each builtin delegate's loader), ``cpu_knobs`` (``litert-cpu``: LiteRT's
CompiledModel on the CPU, and XNNPACK's switches), ``engines`` (what runs the graph),
``libraries`` (external delegate .so, libedgetpu), ``vulkan`` (GPU adapter probe), ``report``
(DelegateReport), ``backends`` (which interpreter package), ``child`` (child processes).
"""
from __future__ import annotations

from ..postprocess import Classification
from .backends import BACKENDS, Backend, get_backend
from .delegates import DELEGATES, DelegateOption, DelegateSpec, register_delegate
from .engines import Loaded, LoadRequest
from .model import EdgeModel, load
from .report import DelegateAttempt, DelegateReport
from .vulkan import vulkan_adapters

__all__ = ["BACKENDS", "Backend", "Classification", "DELEGATES", "DelegateAttempt", "DelegateOption",
           "DelegateReport", "DelegateSpec", "EdgeModel", "LoadRequest", "Loaded", "get_backend", "load",
           "register_delegate", "vulkan_adapters"]
