"""Where results were measured: CPU model and the flags that decide int8 speed, OS, backend versions.

Read from /proc/cpuinfo and package metadata only: collecting it never imports TensorFlow or loads
a model, so it is cheap enough to attach to every report.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

# CPU features that change what int8/float kernels can do (x86 SIMD, VNNI/AMX dot products, Arm NEON/dot).
INTERESTING_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                     "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "neon", "asimd",
                     "asimddp", "i8mm", "sve", "fphp", "asimdhp")
PACKAGES = ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "numpy", "opencv-python-headless",
            "opencv-python", "pillow", "matplotlib", "jinja2")


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, flags


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def collect_environment() -> dict[str, Any]:
    """A JSON-ready description of this machine and edgeq's runtime stack."""
    from .._version import __version__

    model, flags = _cpuinfo()
    return {
        "cpu_model": model, "machine": platform.machine(), "cores": os.cpu_count(),
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags], "os": platform.platform(),
        "python": sys.version.split()[0], "edgeq": __version__, "packages": _versions(),
        "backend_forced": os.environ.get("EDGEQ_BACKEND") or None,
    }
