"""The GPU path for real: LiteRT's GPU accelerator (WebGPU on Vulkan).

On CPU-only machines it runs on Mesa's lavapipe (.ci/install-vulkan.sh installs it), which
executes the GPU kernels on the CPU; outputs are compared with XNNPACK's. Every check runs in
a child process: LiteRT 2.3's GPU accelerator crashes (SIGSEGV) in a process that has imported
TensorFlow, which other test modules do.
"""
from __future__ import annotations

import ctypes.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from edgeq.errors import DelegateUnavailableError
from edgeq.runtime import get_backend
from edgeq.runtime.vulkan import vulkan_adapters_in_child

ROOT = pathlib.Path(__file__).resolve().parent.parent

CHILD = r"""
import glob, json, sys
import cv2, numpy as np
from edgeq.errors import EdgeqError
from edgeq.runtime import load, vulkan_adapters

mode, data = sys.argv[1], sys.argv[2]
out = {}
if mode == "float":
    precision = sys.argv[3]
    images = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in sorted(glob.glob(sys.argv[4] + "/*/*.png"))[::19][:16]]
    with load(data + "/fashion_float.tflite", delegate="gpu", precision=precision, num_threads=2) as gpu, \
            load(data + "/fashion_float.tflite", delegate="xnnpack") as cpu:
        out["report"] = gpu.delegate_report.to_dict()
        diffs, same_top = [], 0
        for img in images:
            x = gpu.prepare(img)
            g, c = gpu.run(x)[0], cpu.run(x)[0]
            out["dtype"], out["shape"] = str(g.dtype), list(g.shape)
            diffs.append(float(np.abs(g - c).max()))
            same_top += int(np.argmax(g) == np.argmax(c))
        out["max_diff"], out["same_top"], out["n"] = max(diffs), same_top, len(images)
elif mode == "add":
    x = np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32)
    with load(data + "/add_float.tflite", delegate="gpu", precision="fp32") as gpu, \
            load(data + "/add_float.tflite", delegate="cpu") as cpu:
        out["max_diff"] = float(np.abs(gpu.run(x)[0] - cpu.run(x)[0]).max())
        out["max_abs"] = float(np.abs(cpu.run(x)[0]).max())
elif mode == "auto":
    with load(data + "/fashion_float.tflite") as m:
        out["report"] = m.delegate_report.to_dict()
    out["software_only"] = all(a.is_software for a in vulkan_adapters())
elif mode == "error":  # with the environment the test sets (no driver, or TensorFlow imported)
    if len(sys.argv) > 3 and sys.argv[3] == "import-tf":
        import tensorflow  # noqa: F401  (then Vulkan must not even be probed: lavapipe + TF abort)
    else:
        out["adapters"] = [a.name for a in (vulkan_adapters() or ())]
    try:
        load(data + "/add_float.tflite", delegate="gpu").close()
        out["error"] = None
    except EdgeqError as exc:
        out["error"], out["type"] = str(exc), type(exc).__name__
    with load(data + "/add_float.tflite") as m:
        out["auto"] = m.delegate_report.to_dict()
print("@@" + json.dumps(out))
"""


_ADAPTERS: list = []


def _adapters():
    """Probed once, in a child: creating a Vulkan instance next to TensorFlow (which other test
    modules import into this process) aborts with Mesa's lavapipe."""
    if not _ADAPTERS:
        _ADAPTERS.append(vulkan_adapters_in_child())
    return _ADAPTERS[0]


def _require_gpu():
    if not get_backend().has_compiled_model:
        pytest.skip(f"GPU accelerator needs ai-edge-litert (backend here: {get_backend().name})")
    adapters = _adapters()
    if not adapters:
        pytest.skip("no Vulkan adapter found (" + ("no libvulkan loader" if adapters is None else "no driver") +
                    "): run .ci/install-vulkan.sh for Mesa's lavapipe")
    return adapters


def _child(*args: str, env: dict[str, str] | None = None) -> dict:
    full_env = dict(os.environ, **(env or {}))
    out = subprocess.run([sys.executable, "-c", CHILD, args[0], str(ROOT / "tests" / "data"), *args[1:]],
                         capture_output=True, text=True, timeout=600, env=full_env)
    assert out.returncode == 0, f"child failed (rc {out.returncode}): {out.stderr[-3000:]}"
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("@@")][-1][2:])


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_gpu_float_model_matches_cpu_on_real_images(precision, atol):
    adapters = _require_gpu()
    r = _child("float", precision, str(ROOT / "calibration_data"))
    rep = r["report"]
    assert rep["delegate"] == "gpu" and rep["backend"] == "ai-edge-litert"
    assert rep["delegated_nodes"] == rep["total_nodes"] == 12
    assert rep["details"]["precision"] == precision and rep["details"]["num_threads"].startswith("2 ")
    assert rep["warnings"] == []  # fully on the GPU
    assert rep["details"]["adapter"] in {a.name for a in adapters}
    assert r["dtype"] == "float32" and r["shape"] == [1, 10] and r["n"] == 16
    assert r["max_diff"] <= atol
    assert r["same_top"] == r["n"]


def test_gpu_add_model_fp32_matches_cpu():
    _require_gpu()
    r = _child("add")
    assert r["max_abs"] > 0.5 and r["max_diff"] <= 1e-5 * r["max_abs"] + 1e-6


def test_auto_skips_software_gpu_and_says_why():
    _require_gpu()
    r = _child("auto")
    gpu_attempt = [a for a in r["report"]["attempts"] if a["name"] == "gpu"][0]
    if r["software_only"]:
        assert r["report"]["delegate"] == "xnnpack"
        assert not gpu_attempt["ok"] and "software Vulkan" in gpu_attempt["reason"]
    else:
        assert r["report"]["delegate"] == "gpu" and gpu_attempt["ok"]


def test_no_vulkan_adapter_is_delegate_unavailable():
    """With the loader pointed at no driver, 'gpu' fails with a clear error, not LiteRT's RuntimeError."""
    if not get_backend().has_compiled_model:
        pytest.skip(f"GPU accelerator needs ai-edge-litert (backend here: {get_backend().name})")
    r = _child("error", env={"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"})
    assert r["adapters"] == []
    assert r["type"] == "DelegateUnavailableError"
    assert "no Vulkan" in r["error"] and "install-vulkan.sh" in r["error"]
    gpu_attempt = [a for a in r["auto"]["attempts"] if a["name"] == "gpu"][0]
    assert not gpu_attempt["ok"] and "no Vulkan" in gpu_attempt["reason"]
    assert r["auto"]["delegate"] == "xnnpack"


@pytest.mark.convert
def test_gpu_refused_once_tensorflow_is_imported():
    """lavapipe/LiteRT's GPU crash next to TensorFlow: edgeq refuses clearly and auto does not probe."""
    _require_gpu()
    r = _child("error", "import-tf")
    assert r["type"] == "DelegateUnavailableError" and "TensorFlow is imported" in r["error"]
    gpu_attempt = [a for a in r["auto"]["attempts"] if a["name"] == "gpu"][0]
    assert not gpu_attempt["ok"] and "TensorFlow is imported" in gpu_attempt["reason"]
    assert r["auto"]["delegate"] == "xnnpack"  # and the child exited cleanly (checked in _child)


CRASHING_DRIVER = "#include <stdlib.h>\n__attribute__((constructor)) static void crash(void) { abort(); }\n"
AUTO_GPU_REASON = ("import sys, edgeq; m = edgeq.load(sys.argv[1]); "
                   "print('@@', m.delegate_report.delegate, [a.reason for a in m.delegate_report.attempts "
                   "if a.name == 'gpu'][0])")


def test_crashing_vulkan_driver_is_reported_not_taken_for_no_adapter(tmp_path, monkeypatch):
    """A driver that aborts while the Vulkan loader opens it: the probe says so, and auto records it."""
    if ctypes.util.find_library("vulkan") is None:
        pytest.skip("no Vulkan loader (libvulkan1): nothing would load the crashing driver")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) to build the crashing stand-in driver")
    (tmp_path / "crash.c").write_text(CRASHING_DRIVER)
    lib = tmp_path / "libedgeq_crash_icd.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "crash.c")], check=True)
    icd = tmp_path / "crash_icd.json"
    icd.write_text(json.dumps({"file_format_version": "1.0.0",
                               "ICD": {"library_path": str(lib), "api_version": "1.3.0"}}))
    monkeypatch.setenv("VK_ICD_FILENAMES", str(icd))
    monkeypatch.setenv("VK_DRIVER_FILES", str(icd))
    with pytest.raises(DelegateUnavailableError, match="probe .* was killed by SIGABRT.*vulkaninfo"):
        vulkan_adapters_in_child()
    if not get_backend().has_compiled_model:
        return  # auto does not probe Vulkan without ai-edge-litert
    out = subprocess.run([sys.executable, "-c", AUTO_GPU_REASON, str(ROOT / "tests" / "data" / "add_float.tflite")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("@@ ")][-1]
    assert line.startswith("@@ xnnpack ") and "killed by SIGABRT" in line and "no Vulkan adapter" not in line
