"""``edgeq tune``: measure the runtime configurations of a .tflite model here and keep the fastest.

This slice tunes what changes speed without reconverting: the CPU path (XNNPACK or the builtin
kernels, which is XNNPACK on/off), the thread count, and any other registered delegate that
loads on this machine. Each candidate runs in its own child process (``edgeq.bench``), ranked
by median latency; the winner can be embedded in the model's metadata so ``edgeq.load`` uses it.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
from collections.abc import Callable, Sequence
from typing import Any

from .bench import BenchResult, run_benchmark
from .errors import EdgeqError, ModelError, UsageError
from .fileio import check_outputs, write_bytes_atomic
from .metadata import read_metadata, with_edgeq_metadata
from .runtime.delegates import DELEGATES, check_delegate_name
from .tflite_format import load_model_file

CPU_PATHS = ("xnnpack", "cpu")
# Registered delegates the default search leaves out, and why (the others are tried if they load here).
NOT_SEARCHED = {"auto": "a selector, not a configuration: tune measures what it would choose among",
                "cpu-ref": "reference kernels (slow ground truth), never the fast path"}
PRUNE_GAIN = 0.03  # another thread must cut p50 by more than 3 % to keep adding threads


@dataclasses.dataclass(frozen=True)
class TuneCandidate:
    """One delegate x threads configuration as measured (``error`` set when it failed)."""

    delegate: str
    threads: int | None
    p50_ms: float | None = None
    p99_ms: float | None = None
    init_ms: float | None = None
    size_bytes: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The ranked measurements (fastest first), what was not measured and why, and the winner's config."""

    model: str
    ranked: tuple[TuneCandidate, ...]
    failed: tuple[TuneCandidate, ...]
    skipped: tuple[tuple[str, str], ...]   # (what, why): delegates that do not load here, pruned thread counts
    runtime: dict[str, Any]                # what is (with output) or would be embedded
    output: str | None = None

    @property
    def winner(self) -> TuneCandidate:
        return self.ranked[0]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "winner": self.winner.to_dict(), "runtime": self.runtime,
                "output": self.output, "ranked": [c.to_dict() for c in self.ranked],
                "failed": [c.to_dict() for c in self.failed],
                "skipped": [{"what": w, "why": y} for w, y in self.skipped]}


def tune(model: str | os.PathLike, *, threads: Sequence[int] | None = None, delegates: Sequence[str] | None = None,
         runs: int = 50, warmup: int = 5, output: str | os.PathLike | None = None, force: bool = False,
         prune: bool = True, timeout: float = 600.0,
         progress: Callable[[TuneCandidate], None] | None = None) -> TuneResult:
    """Measure delegate x threads candidates of ``model`` on this machine; rank by p50; embed the winner.

    ``threads``: the counts to try (default 1..cpu_count); with ``prune``, a delegate's search stops
    at the first count that is not > 3 % faster than its best so far. ``delegates``: the ones to
    measure (default: xnnpack and cpu, plus other registered delegates that load here). ``output``:
    a new .tflite with the winner in its metadata (``edgeq.load`` then uses it); None: report only.
    """
    model = str(model)
    thread_list = _thread_list(threads)
    if runs < 1 or warmup < 0:
        raise UsageError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    check_outputs([model], force=force, created={"output": output} if output is not None else None)
    data, mf = load_model_file(model)
    if output is not None and read_metadata(mf) is None:
        raise ModelError(f"{model} has no edgeq metadata to hold the tuned configuration (a foreign model): "
                         "convert it with `edgeq convert`, or tune without an output to get the report only")
    skipped: list[tuple[str, str]] = []
    search = _delegates(model, delegates, skipped, timeout)
    size = len(data)
    measured: list[TuneCandidate] = []
    for delegate in search:
        measured += _search_threads(model, delegate, thread_list, runs, warmup, size, prune, skipped, timeout,
                                    progress)
    ranked = tuple(sorted((c for c in measured if c.ok), key=lambda c: c.p50_ms))
    failed = tuple(c for c in measured if not c.ok)
    if not ranked:
        raise EdgeqError(f"no configuration of {model} could be measured: "
                         + "; ".join(f"{c.delegate}/{c.threads}: {c.error}" for c in failed[:3]))
    best = ranked[0]
    runtime = {"delegate": best.delegate, "num_threads": best.threads, "p50_ms": round(float(best.p50_ms), 4),
               "tuned_on": f"{platform.machine()} {os.cpu_count()} cores"}
    if output is not None:
        meta = dataclasses.replace(read_metadata(mf), runtime=runtime)
        write_bytes_atomic(output, with_edgeq_metadata(data, meta), exclusive=not force)
    return TuneResult(model=model, ranked=ranked, failed=failed, skipped=tuple(skipped), runtime=runtime,
                      output=None if output is None else str(output))


def _thread_list(threads: Sequence[int] | None) -> list[int]:
    if threads is None:
        return list(range(1, (os.cpu_count() or 1) + 1))
    out = []
    for n in threads:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UsageError(f"thread counts must be positive integers, got {n!r}")
        out.append(n)
    if not out:
        raise UsageError("give at least one thread count (e.g. 1,2)")
    return sorted(set(out))


def _delegates(model: str, delegates: Sequence[str] | None, skipped: list[tuple[str, str]],
               timeout: float) -> list[str]:
    """The delegates to search: the given ones, or the CPU paths plus every other one that loads here."""
    if delegates is not None:
        given = list(dict.fromkeys(delegates))
        if not given:
            raise UsageError("give at least one delegate (e.g. xnnpack,cpu)")
        for d in given:
            check_delegate_name(d)
            if d == "auto":
                raise UsageError(f"delegate 'auto' {NOT_SEARCHED['auto']}; name concrete ones, e.g. "
                                 f"{','.join(CPU_PATHS)}")
        return given
    search = list(CPU_PATHS)
    for name in DELEGATES:
        if name in CPU_PATHS:
            continue
        if name in NOT_SEARCHED:
            skipped.append((name, NOT_SEARCHED[name]))
            continue
        trial = run_benchmark([model], [name], [None], runs=1, warmup=0, timeout=timeout)[0]
        if trial.ok:
            search.append(name)
        else:
            skipped.append((name, f"does not load here: {trial.error}"))
    return search


def _search_threads(model: str, delegate: str, threads: list[int], runs: int, warmup: int, size: int, prune: bool,
                    skipped: list[tuple[str, str]], timeout: float,
                    progress: Callable[[TuneCandidate], None] | None) -> list[TuneCandidate]:
    """Ascending thread counts for one delegate; with ``prune``, stop once a count no longer pays."""
    out: list[TuneCandidate] = []
    best: float | None = None
    for i, n in enumerate(threads):
        c = _candidate(run_benchmark([model], [delegate], [n], runs=runs, warmup=warmup, timeout=timeout)[0],
                       delegate, size)
        out.append(c)
        if progress:
            progress(c)
        if not c.ok:
            continue
        if prune and best is not None and c.p50_ms > best * (1.0 - PRUNE_GAIN) and i + 1 < len(threads):
            rest = ",".join(str(t) for t in threads[i + 1:])
            skipped.append((f"{delegate} threads {rest}", f"pruned: {n} threads gave p50 {c.p50_ms:.3f} ms, not "
                            f"more than {PRUNE_GAIN:.0%} better than {best:.3f} ms"))
            break
        best = c.p50_ms if best is None else min(best, c.p50_ms)
    return out


def _candidate(r: BenchResult, delegate: str, size: int) -> TuneCandidate:
    """Named by the delegate as requested (an external library's path, not its report name)."""
    if not r.ok or r.latency_ms is None:
        return TuneCandidate(delegate, r.threads, size_bytes=size, error=r.error)
    return TuneCandidate(delegate, r.threads, r.latency_ms.p50, r.latency_ms.p99, r.init_ms, size)


def format_table(result: TuneResult) -> str:
    """The ranked table (fastest first), the failures, what was skipped and why, and the winner."""
    head = f"{'rank':>4} {'delegate':<12} {'thr':>3} {'p50 ms':>9} {'p99 ms':>9} {'init ms':>8} {'size KB':>8}"
    lines = [head, "-" * len(head)]
    for i, c in enumerate(result.ranked, 1):
        lines.append(f"{i:>4} {c.delegate:<12} {c.threads or '-':>3} {c.p50_ms:9.3f} {c.p99_ms:9.3f} "
                     f"{c.init_ms:8.1f} {c.size_bytes / 1024:8.1f}")
    lines += [f"   - {c.delegate:<12} {c.threads or '-':>3}  error: {c.error}" for c in result.failed]
    lines += [f"skipped {what}: {why}" for what, why in result.skipped]
    w = result.winner
    lines.append(f"winner: {w.delegate} with {w.threads or 'default'} thread(s), p50 {w.p50_ms:.3f} ms"
                 + (f" -> written into {pathlib.Path(result.output).name}'s metadata (edgeq.load uses it)"
                    if result.output else " (report only: give an output to embed it)"))
    return "\n".join(lines)
