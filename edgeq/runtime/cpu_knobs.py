"""The CPU knobs ``edgeq tune`` searches: LiteRT's CompiledModel API on the CPU, and XNNPACK's switches.

``litert-cpu`` runs the model through ``CompiledModel`` with the CPU accelerator (XNNPACK
underneath, like the Interpreter, but a different runtime around it) and takes:

- ``xnnpack_flags=INT``: XNNPACK's delegate flag bits, replacing LiteRT's default (0x1 QS8 int8,
  0x2 QU8 uint8, 0x4 force fp16, 0x20 transient indirection buffer, 0x40 latest operators);
  0 leaves int8 models to the builtin kernels.
- ``latest=0|1``: XNNPACK's not-yet-default operators (flag 0x40, over QS8|QU8 unless flags are given).
- ``weight_cache=on|DIR``: XNNPACK packs the weights once into a cache file and maps it on later
  loads (cuts init, not latency). The file is named by the model's hash, flags and LiteRT version,
  so a changed model never reads another's weights; ``on`` keeps it under edgeq's cache folder.
- ``ynnpack=0|1``: YNNPACK before XNNPACK (only in LiteRT builds that include it).

The ``xnnpack`` delegate (the Interpreter's default XNNPACK) takes ``latest=0|1``
(``experimental_default_delegate_latest_features``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

from .._native import quiet_native_stderr
from ..errors import DelegateError, DelegateUnavailableError, UsageError
from .engines import CompiledModelEngine, Loaded, LoadRequest
from .probe import cache_dir

log = logging.getLogger(__name__)

FLAG_QS8, FLAG_QU8, FLAG_LATEST = 0x1, 0x2, 0x40
BOOLS = ("0", "1")


def check_bool(name: str) -> Callable[[str], None]:
    """A DelegateOption check for a 0|1 switch (Python bools too)."""
    def check(value: str) -> None:
        if _bool_text(value) is None:
            raise UsageError(f"{name}={value!r}: expected one of {', '.join(BOOLS)}")
    return check


def _bool_text(value: Any) -> str | None:
    text = str(value).strip().lower()
    return {"0": "0", "1": "1", "false": "0", "true": "1"}.get(text)


def is_on(options: dict[str, Any], name: str) -> bool:
    return _bool_text(options.get(name, "0")) == "1"


def check_flags(value: str) -> None:
    try:
        flags = int(str(value), 0)
    except ValueError:
        flags = -1
    if not 0 <= flags < 2 ** 32:
        raise UsageError(f"xnnpack_flags={value!r}: expected an integer 0..0xffffffff (decimal or 0x hex), e.g. "
                         "0x43 = QS8|QU8|latest operators")


def check_weight_cache(value: str) -> None:
    if value == "on":
        return
    if not os.path.isdir(value):
        raise UsageError(f"weight_cache={value!r}: expected one of on, or an existing directory (the cache file is "
                         "named inside it by the model's hash)")


def _flags(options: dict[str, Any]) -> int | None:
    """The XNNPACK flags to set, or None for LiteRT's default."""
    flags = int(str(options["xnnpack_flags"]), 0) if options.get("xnnpack_flags") not in (None, "") else None
    if is_on(options, "latest"):
        flags = (FLAG_QS8 | FLAG_QU8 if flags is None else flags) | FLAG_LATEST
    return flags


def weight_cache_file(req: LoadRequest, flags: int | None) -> pathlib.Path:
    """The cache file for this model, backend version and flags, in ``weight_cache``'s directory."""
    where = str(req.options["weight_cache"])
    folder = cache_dir().parent / "xnnpack" if where == "on" else pathlib.Path(where)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DelegateError(f"litert-cpu: cannot create the weight cache folder {folder}: {exc.strerror or exc}; "
                            "give weight_cache=DIR of a writable directory, or leave weight_cache out") from exc
    key = hashlib.sha256(req.data)
    key.update(f"\0{req.backend.version}\0{flags}\0{is_on(req.options, 'ynnpack')}".encode())
    return folder / f"{key.hexdigest()[:32]}.xnnpack_cache"


def load_litert_cpu(req: LoadRequest) -> Loaded:
    """LiteRT's CompiledModel with the CPU accelerator and the knobs above."""
    if not req.backend.has_compiled_model:
        raise DelegateUnavailableError(f"delegate 'litert-cpu' needs ai-edge-litert's CompiledModel API (backend is "
                                       f"{req.backend.name}); pip install ai-edge-litert, or use delegate 'xnnpack'")
    from ai_edge_litert.compiled_model import CpuOptions

    flags = _flags(req.options)
    cache = weight_cache_file(req, flags) if req.options.get("weight_cache") else None
    cpu = CpuOptions(num_threads=req.num_threads or 0, enable_ynnpack=is_on(req.options, "ynnpack"),
                     xnnpack_flags=flags, xnnpack_weight_cache_path=str(cache) if cache else "")
    try:
        compiled, native_log = _compile(req.data, cpu)
    except RuntimeError as exc:
        raise _compile_error(req, cpu, exc) from exc
    warnings = tuple(f"litert-cpu: {line.strip()}" for line in native_log
                     if "weight cache" in line.lower() and "error" in line.lower())
    details = (("api", "CompiledModel, CPU accelerator"),
               ("num_threads", str(req.num_threads) if req.num_threads else "default"),
               ("xnnpack_flags", "default" if flags is None else hex(flags)),
               ("weight_cache", str(cache) if cache else "off"),
               ("ynnpack", "on" if is_on(req.options, "ynnpack") else "off"))
    try:
        engine = CompiledModelEngine(compiled, req.model_file, req.data)
    except Exception:
        compiled.close()
        raise
    # CompiledModel does not expose how the graph was partitioned: the count stays unknown ("?").
    return Loaded(engine=engine, delegate="litert-cpu", delegated_nodes=None, details=details, warnings=warnings)


def _compile(data: bytes, cpu: Any) -> tuple[Any, list[str]]:
    from ai_edge_litert.compiled_model import CompiledModel, HardwareAccelerator, Options

    # LiteRT's accelerator registration chatter: shown with --verbose only
    with quiet_native_stderr(not log.isEnabledFor(logging.DEBUG)) as native_log:
        compiled = CompiledModel.from_buffer(data, options=Options(hardware_accelerators=HardwareAccelerator.CPU,
                                                                   cpu_options=cpu))
    for line in native_log:
        log.debug("%s", line)
    return compiled, native_log


def _compile_error(req: LoadRequest, cpu: Any, exc: RuntimeError) -> Exception:
    """LiteRT's RuntimeError names only its source lines, so a failure with ynnpack=1 is retried without it.

    ai-edge-litert 2.3.0 has no YNNPACK and refuses ``enable_ynnpack`` that way: if the same model
    compiles without it, YNNPACK is what is missing here.
    """
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if cpu.enable_ynnpack:
        try:
            _compile(req.data, dataclasses.replace(cpu, enable_ynnpack=False))[0].close()
        except RuntimeError:
            pass
        else:
            return DelegateUnavailableError(f"litert-cpu: ynnpack=1 is not available in {req.backend.name} "
                                            f"{req.backend.version} (LiteRT refuses it, and compiles the model "
                                            "without it): use ynnpack=0")
    return DelegateError(f"litert-cpu: LiteRT could not compile {req.source} for the CPU: {first}")
