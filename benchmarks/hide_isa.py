"""Benchmarks on this CPU's AVX2 code paths: AVX-512, AMX and AVX-VNNI hidden from CPUID (``--hide-isa``).

Issue 13 asks how edgeq compares with its peers on an AVX2-only CPU, where the int8 kernels differ most.
Without such a machine, Linux's CPUID faulting (``cpuid_fault`` in /proc/cpuinfo) lets a preloaded library
(cpuid_mask.c) answer every CPUID the process runs with those features removed, so XNNPACK (through
cpuinfo), ONNX Runtime's MLAS, OpenVINO's oneDNN and NumPy all dispatch their AVX2 kernels, running at this
core's real speed. That is an AVX2-only CPU's choice of kernels, not such a CPU: clock, caches, memory and
the core's execution ports stay this machine's. The process re-executes itself with the library preloaded,
so conversions, children and every stack see the same CPU.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ENV = "EDGEQ_BENCH_HIDE_ISA"
HIDDEN_PREFIXES = ("avx512", "amx", "avx_vnni")
SOURCE = pathlib.Path(__file__).with_name("cpuid_mask.c")
NOTE = "AVX-512, AMX and AVX-VNNI hidden from CPUID"


def cpu_can_fault_cpuid(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        return "cpuid_fault" in pathlib.Path(cpuinfo).read_text().split()
    except OSError:
        return False


def build(out_dir: pathlib.Path) -> pathlib.Path:
    """Compile cpuid_mask.c into ``out_dir`` (once per source change) with $CC or cc."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--hide-isa needs a C compiler (cc or $CC) to build benchmarks/cpuid_mask.c")
    lib = out_dir / "libcpuid_mask.so"
    if not lib.exists() or lib.stat().st_mtime < SOURCE.stat().st_mtime:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_suffix(".so.tmp")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], check=True)
        tmp.replace(lib)
    return lib


def active() -> bool:
    return os.environ.get(ENV) == "1"


def visible_flags(flags: list[str]) -> list[str]:
    """The ISA flags the libraries see in this process (/proc/cpuinfo still lists the hidden ones)."""
    return [f for f in flags if not (active() and f.startswith(HIDDEN_PREFIXES))]


def check_hidden() -> None:
    """Fail loudly if the preload did not take (a benchmark labelled AVX2 must not run AVX-512)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as seen
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as seen

    if seen.get("AVX512F") or not seen.get("AVX2"):
        raise SystemExit(f"--hide-isa: NumPy still sees AVX512F={seen.get('AVX512F')}, AVX2={seen.get('AVX2')}; "
                         "the CPUID mask is not in effect")


def reexec_hidden(build_dir: pathlib.Path) -> None:
    """Re-run this script with the mask preloaded (returns only once inside the masked process)."""
    if active():
        check_hidden()
        return
    if not cpu_can_fault_cpuid():
        raise SystemExit("--hide-isa needs CPUID faulting (cpuid_fault in /proc/cpuinfo): this CPU or "
                         "hypervisor does not offer it")
    lib = build(build_dir)
    env = dict(os.environ, **{ENV: "1"})
    env["LD_PRELOAD"] = " ".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
