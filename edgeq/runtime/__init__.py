"""Run .tflite models through LiteRT delegates (XNNPACK, GPU, Edge TPU, external) with one API.

Runtime code: it never imports TensorFlow when ai-edge-litert or tflite-runtime is installed.
"""
from __future__ import annotations

from .backends import BACKENDS, Backend, get_backend
from .delegates import DELEGATES, DelegateAttempt, DelegateReport, vulkan_adapters
from .model import Classification, EdgeModel, load

__all__ = ["BACKENDS", "Backend", "Classification", "DELEGATES", "DelegateAttempt", "DelegateReport",
           "EdgeModel", "get_backend", "load", "vulkan_adapters"]
