"""Delegate libraries opened by path: TFLite plugin-ABI delegates (external .so) and libedgetpu."""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

from ..errors import DelegateError, DelegateUnavailableError

EDGETPU_LIBRARY_ENV = "EDGEQ_EDGETPU_LIBRARY"
EDGETPU_INSTALL_HINT = ("install the Edge TPU runtime: on Debian/Ubuntu add Coral's apt repository and "
                        "'apt-get install libedgetpu1-std' (macOS/Windows: the edgetpu_runtime package from "
                        "coral.ai/software), or point library=/$EDGEQ_EDGETPU_LIBRARY at libedgetpu")


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


def edgetpu_library_name() -> str:
    """The platform's libedgetpu file name, as Coral's runtime installs it."""
    if sys.platform == "darwin":
        return "libedgetpu.1.dylib"
    if sys.platform.startswith("win"):
        return "edgetpu.dll"
    return "libedgetpu.so.1"


def find_edgetpu_library(explicit: str | None) -> str:
    """Path or soname of libedgetpu: option library=, then $EDGEQ_EDGETPU_LIBRARY, then the platform name."""
    if explicit:
        return explicit
    env = os.environ.get(EDGETPU_LIBRARY_ENV)
    if env:
        return env
    return edgetpu_library_name()


def load_edgetpu(backend: Any, options: dict[str, Any]) -> Any:
    """The libedgetpu delegate for options device= and library=, with errors that say what to install."""
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
