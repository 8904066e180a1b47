"""Vulkan adapters: GPU availability found without LiteRT's opaque errors, probed safely.

Creating a Vulkan instance loads the drivers into the process. Mesa's lavapipe links LLVM, which
clashes with TensorFlow's and aborts the process; a broken driver may abort or hang on its own.
So ``auto`` probes in a child process (once per process, see ``probe_vulkan_adapters``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import json
import subprocess
import sys

from ..errors import DelegateUnavailableError
from .child import child_python, describe_exit

NO_VULKAN_HINT = ("LiteRT's GPU accelerator runs on WebGPU over Vulkan: install the GPU's Vulkan driver and "
                  "libvulkan1 (on CPU-only Debian machines, Mesa's lavapipe from bookworm-backports: "
                  ".ci/install-vulkan.sh)")


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


def vulkan_adapters_in_child(timeout: float = 60.0) -> tuple[VulkanAdapter, ...] | None:
    """``vulkan_adapters()`` run in a child process: safe where TensorFlow is (or will be) imported.

    A probe that crashes (a broken Vulkan driver aborts while loading) or hangs raises
    ``DelegateUnavailableError`` saying so: it is not reported as "no adapter".
    """
    code = ("import json; from edgeq.runtime.vulkan import vulkan_adapters as v; a = v(); "
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


@functools.lru_cache(maxsize=1)
def probe_vulkan_adapters() -> tuple[tuple[VulkanAdapter, ...] | None, str | None]:
    """(adapters, None), or (None, why the probe failed); cached, failures too (a probe can take a minute)."""
    try:
        return vulkan_adapters_in_child(), None
    except DelegateUnavailableError as exc:
        return None, str(exc)
