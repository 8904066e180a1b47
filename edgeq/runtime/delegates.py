"""Delegate registry, delegate loading and the report of what ran where.

Every delegate that is tried and not used is recorded with the reason in ``DelegateReport``:
edgeq never falls back silently.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import pathlib
import sys
from typing import Any, NamedTuple

from ..errors import DelegateError, DelegateUnavailableError, UsageError

DELEGATES: dict[str, str] = {
    "auto": "Edge TPU if the model is compiled for it and a TPU is present, else a hardware GPU if the "
            "whole model runs on it, else XNNPACK",
    "xnnpack": "optimized CPU kernels through XNNPACK (the default CPU path; num_threads)",
    "cpu": "builtin CPU kernels without the default XNNPACK delegate",
    "cpu-ref": "reference CPU kernels (slow ground truth; may abort the process on odd models)",
    "edgetpu": "Coral Edge TPU through libedgetpu (options: device=usb|usb:N|pci|pci:N, library=PATH)",
    "gpu": "LiteRT GPU accelerator via the CompiledModel API (options: precision=fp16|fp32), or a "
           "classic TFLite GPU delegate library (option library=PATH)",
}
EDGETPU_LIBRARY_ENV = "EDGEQ_EDGETPU_LIBRARY"
DELEGATE_OPTIONS: dict[str, tuple[str, ...]] = {
    "auto": ("device", "precision"), "xnnpack": (), "cpu": (), "cpu-ref": (),
    "edgetpu": ("device", "library"), "gpu": ("precision", "library"),
}
GPU_PRECISIONS = ("fp16", "fp32")


def edgetpu_library_name() -> str:
    """The platform's libedgetpu file name, as Coral's runtime installs it."""
    if sys.platform == "darwin":
        return "libedgetpu.1.dylib"
    if sys.platform.startswith("win"):
        return "edgetpu.dll"
    return "libedgetpu.so.1"


class DelegateAttempt(NamedTuple):
    """One delegate tried while loading: did it take the model, and if not, why."""

    name: str
    ok: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class DelegateReport:
    """What ran the model: backend, delegate, nodes it took, and each delegate tried before it.

    ``delegated_nodes`` counts nodes of the main subgraph taken by ``delegate`` (for "cpu" and
    "cpu-ref": 0; None where the runtime does not expose the count: a partially accelerated GPU
    model). ``cpu_delegated_nodes`` are the nodes XNNPACK took from what the delegate left.
    ``warnings``: what the user should know about this choice (also logged), e.g. an Edge TPU
    delegate on a model not compiled for it; commands print them.
    """

    backend: str
    backend_version: str
    delegate: str
    delegated_nodes: int | None
    total_nodes: int
    attempts: tuple[DelegateAttempt, ...]
    cpu_delegated_nodes: int = 0
    details: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fully_delegated(self) -> bool:
        return self.delegated_nodes == self.total_nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "backend_version": self.backend_version, "delegate": self.delegate,
            "delegated_nodes": self.delegated_nodes, "total_nodes": self.total_nodes,
            "cpu_delegated_nodes": self.cpu_delegated_nodes,
            "attempts": [a._asdict() for a in self.attempts], "details": dict(self.details),
            "warnings": list(self.warnings),
        }

    def describe(self) -> str:
        taken = "?" if self.delegated_nodes is None else str(self.delegated_nodes)
        lines = [f"{self.delegate} on {self.backend} {self.backend_version}: {taken}/{self.total_nodes} nodes delegated"
                 + (f" (+{self.cpu_delegated_nodes} by XNNPACK)" if self.cpu_delegated_nodes else "")]
        for a in self.attempts:
            if not a.ok:
                lines.append(f"  skipped {a.name}: {a.reason}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def is_delegate_path(name: str) -> bool:
    return name not in DELEGATES and (os.sep in name or "/" in name or name.endswith((".so", ".dylib", ".dll"))
                                      or ".so." in name)


def check_delegate_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError(f"delegate must be a name or a library path, got {name!r}; valid names: "
                         f"{', '.join(DELEGATES)}")
    if name not in DELEGATES and not is_delegate_path(name):
        raise UsageError(f"unknown delegate {name!r}; valid delegates: {', '.join(DELEGATES)}, "
                         "or a path to an external delegate library (.so) with key=value options")


def check_options(name: str, options: dict[str, Any]) -> None:
    """Builtin delegates take only their documented options (external ones take any)."""
    if name not in DELEGATE_OPTIONS or (name == "gpu" and options.get("library")):
        return  # an external library (also a classic GPU delegate .so) defines its own options
    valid = DELEGATE_OPTIONS[name]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(f"delegate {name!r} does not take option(s) {', '.join(unknown)}; valid options: "
                         f"{', '.join(valid) if valid else 'none'}")
    if "precision" in options and options["precision"] not in GPU_PRECISIONS:
        raise UsageError(f"precision={options['precision']!r}: expected one of {', '.join(GPU_PRECISIONS)}")
    if "device" in options and options["device"] is not None:
        check_edgetpu_device(str(options["device"]))


def check_edgetpu_device(device: str) -> None:
    kind, _, index = device.partition(":")
    if kind not in ("usb", "pci") or (index and not index.isdigit()):
        raise UsageError(f"Edge TPU device {device!r}: expected usb, usb:N, pci or pci:N")


def load_external_delegate(backend: Any, library: str, options: dict[str, Any], *, what: str) -> Any:
    """Load a TFLite plugin-ABI delegate library with options, with errors that say what to do.

    The library is opened with ctypes first: ai-edge-litert raises OSError (not the documented
    ValueError) for a missing library and then prints an ignored AttributeError from its
    ``Delegate.__del__``; checking first keeps that noise out and the message clear.
    """
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        raise DelegateUnavailableError(f"{what}: cannot load delegate library {library!r}: {exc}") from exc
    for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(lib, symbol):
            raise DelegateError(f"{what}: {library} is not a TFLite external delegate (it has no {symbol})")
    str_options = {str(k): str(v) for k, v in options.items() if v is not None}
    try:
        return backend.load_delegate(library, str_options)
    except (ValueError, OSError) as exc:
        detail = str(exc).strip().replace("\n", " ") or "no message"
        raise DelegateError(f"{what}: delegate library {library} refused to start with options "
                            f"{str_options or '{}'}: {detail}") from exc


def find_edgetpu_library(explicit: str | None) -> str:
    """Path or soname of libedgetpu: option library=, then $EDGEQ_EDGETPU_LIBRARY, then the platform name."""
    if explicit:
        return explicit
    env = os.environ.get(EDGETPU_LIBRARY_ENV)
    if env:
        return env
    return edgetpu_library_name()


EDGETPU_INSTALL_HINT = ("install the Edge TPU runtime: on Debian/Ubuntu add Coral's apt repository and "
                        "'apt-get install libedgetpu1-std' (macOS/Windows: the edgetpu_runtime package from "
                        "coral.ai/software), or point library=/$EDGEQ_EDGETPU_LIBRARY at libedgetpu")


def load_edgetpu(backend: Any, options: dict[str, Any]) -> Any:
    library = find_edgetpu_library(options.get("library"))
    device = options.get("device")
    delegate_options = {"device": device} if device else {}
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        raise DelegateUnavailableError(f"edgetpu: {library} not found ({exc}); {EDGETPU_INSTALL_HINT}") from exc
    try:
        return load_external_delegate(backend, library, delegate_options, what="edgetpu")
    except DelegateError as exc:
        raise DelegateUnavailableError(f"{exc} (is an Edge TPU{' ' + device if device else ''} attached? "
                                       "`lsusb` shows 'Global Unichip' or 'Google Inc.' for USB Accelerators)") from exc


# ---- counting delegated nodes --------------------------------------------------------------
def delegated_node_counts(ops: list[dict[str, Any]], n_original: int) -> list[int]:
    """For each DELEGATE node (after the model's own nodes), how many original nodes it replaced.

    The Python API exposes no execution plan, so the partition is recovered from the graph:
    the nodes on the paths from a delegate node's inputs to its outputs are the ones it runs.
    """
    producer: dict[int, int] = {}
    for op in ops[:n_original]:
        for t in op["outputs"]:
            producer[int(t)] = int(op["index"])
    counts = []
    for op in ops[n_original:]:
        if op.get("op_name") != "DELEGATE":
            continue
        boundary = {int(t) for t in op["inputs"]}
        covered: set[int] = set()
        stack = [int(t) for t in op["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or node in covered:
                continue
            covered.add(node)
            stack.extend(int(i) for i in ops[node]["inputs"] if int(i) >= 0)
        counts.append(len(covered))
    return counts


# ---- Vulkan adapters (GPU availability without LiteRT's opaque errors) ----------------------
@dataclasses.dataclass(frozen=True)
class VulkanAdapter:
    name: str
    device_type: str  # integrated, discrete, virtual, cpu, other

    @property
    def is_software(self) -> bool:
        return self.device_type == "cpu"


_VK_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}


class _VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


def vulkan_adapters() -> tuple[VulkanAdapter, ...] | None:
    """The Vulkan physical devices the loader finds; None when no Vulkan loader is installed.

    Creating a Vulkan instance loads the drivers: never call this in a process that has imported
    TensorFlow (Mesa's lavapipe links LLVM, which clashes with TensorFlow's and aborts the process).
    """
    name = "vulkan-1.dll" if sys.platform.startswith("win") else (
        "libvulkan.1.dylib" if sys.platform == "darwin" else "libvulkan.so.1")
    try:
        vk = ctypes.CDLL(ctypes.util.find_library("vulkan") or name)
    except OSError:
        try:
            vk = ctypes.CDLL(name)
        except OSError:
            return None
    instance = ctypes.c_void_p()
    info = _VkInstanceCreateInfo(sType=1)
    if vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
        return ()
    try:
        count = ctypes.c_uint32(0)
        vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
        devices = (ctypes.c_void_p * count.value)()
        if count.value:
            vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), devices)
        adapters = []
        props = ctypes.create_string_buffer(2048)  # VkPhysicalDeviceProperties is ~824 bytes
        for dev in devices[:count.value]:
            vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(dev), props)
            dev_type = int.from_bytes(props.raw[16:20], "little")
            dev_name = props.raw[20:276].split(b"\0", 1)[0].decode("utf-8", "replace")
            adapters.append(VulkanAdapter(dev_name, _VK_TYPES.get(dev_type, "other")))
        return tuple(adapters)
    finally:
        vk.vkDestroyInstance(instance, None)


def child_python(code: str) -> list[str]:
    """argv running ``code`` in a child Python that imports this very edgeq package.

    Its directory goes first on the child's sys.path: ahead of the working directory and of an
    installed edgeq, so a source checkout and an installed copy never get mixed up.
    """
    root = str(pathlib.Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r})\n{code}"]


def describe_exit(returncode: int) -> str:
    """'exited with code N' or 'was killed by SIGSEGV' for a child process's return code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    import signal

    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def vulkan_adapters_in_child(timeout: float = 60.0) -> tuple[VulkanAdapter, ...] | None:
    """``vulkan_adapters()`` run in a child process: safe where TensorFlow is (or will be) imported.

    A probe that crashes (a broken Vulkan driver aborts while loading) or hangs raises
    ``DelegateUnavailableError`` saying so: it is not reported as "no adapter".
    """
    import json
    import subprocess

    code = ("import json; from edgeq.runtime.delegates import vulkan_adapters as v; a = v(); "
            "print('@@' + json.dumps(None if a is None else [[x.name, x.device_type] for x in a]))")
    try:
        out = subprocess.run(child_python(code), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DelegateUnavailableError(f"the Vulkan adapter probe did not finish in {timeout:.0f} s (a hanging "
                                       "Vulkan driver?); check `vulkaninfo --summary`") from None
    lines = [line for line in out.stdout.splitlines() if line.startswith("@@")]
    if out.returncode != 0 or not lines:
        tail = out.stderr.strip().splitlines()
        raise DelegateUnavailableError(f"the Vulkan adapter probe (a child process) {describe_exit(out.returncode)}"
                                       f"{' (' + tail[-1] + ')' if tail else ''}: a Vulkan driver is broken here, "
                                       "check `vulkaninfo --summary`")
    found = json.loads(lines[-1][2:])
    return None if found is None else tuple(VulkanAdapter(n, t) for n, t in found)


NO_VULKAN_HINT = ("LiteRT's GPU accelerator runs on WebGPU over Vulkan: install the GPU's Vulkan driver and "
                  "libvulkan1 (on CPU-only Debian machines, Mesa's lavapipe from bookworm-backports: "
                  ".ci/install-vulkan.sh)")
