"""``edgeq tune``: measure the runtime configurations of a .tflite model here and keep the fastest.

This slice tunes what changes speed without reconverting: the CPU path (the Interpreter's XNNPACK,
LiteRT's CompiledModel on the CPU, or the builtin kernels, which is XNNPACK on/off), XNNPACK's
switches (each delegate's ``tune_variants``: latest operators, weight cache, YNNPACK), the thread
count, and any other registered delegate that loads on this machine. Each candidate runs in its
own child process (``edgeq.bench``), ranked by median latency; the winner can be embedded in the
model's metadata so ``edgeq.load`` (and ``run``/``bench``) use it.

The search is pruned so it stays short: threads are searched on the first CPU path only; every
other delegate and option set is measured once at that path's best thread count; then only the
winner's thread count is searched again around it (``prune=False``: every combination).
"""
from __future__ import annotations

import dataclasses
import logging
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
from .sysload import BUSY_WARNING, LoadWatch
from .tflite_format import load_model_file

log = logging.getLogger(__name__)

CPU_PATHS = ("xnnpack", "cpu")  # always measured; other delegates first load once (a trial)
# Registered delegates the default search leaves out, and why (the others are tried if they load here).
NOT_SEARCHED = {"auto": "a selector, not a configuration: tune measures what it would choose among",
                "cpu-ref": "reference kernels (slow ground truth), never the fast path"}
PRUNE_GAIN = 0.03  # another thread must cut p50 by more than 3 % to keep adding threads
PRUNE_SLOW = 2.0   # a delegate whose trial inferences take > 2x the best p50 so far is not measured further
TRIAL_RUNS = 3
Options = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class TuneCandidate:
    """One delegate x options x threads configuration as measured (``error`` set when it failed).

    ``options``: the delegate options it ran with, as (name, value) pairs (() = the delegate's defaults).
    ``measurements``: how many child runs measured it (the leaders are measured again, see ``tune``);
    the numbers are those of the run with the lowest p50, the least disturbed on a shared machine.
    """

    delegate: str
    threads: int | None
    p50_ms: float | None = None
    p99_ms: float | None = None
    init_ms: float | None = None
    size_bytes: int = 0
    error: str | None = None
    options: Options = ()
    measurements: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        """The delegate and its options, e.g. ``litert-cpu latest=1``."""
        return " ".join([self.delegate] + [f"{k}={v}" for k, v in self.options])

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "options": dict(self.options)}


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The ranked measurements (fastest first), what was not measured and why, and the winner's config."""

    model: str
    ranked: tuple[TuneCandidate, ...]
    failed: tuple[TuneCandidate, ...]
    skipped: tuple[tuple[str, str], ...]   # (what, why): delegates that do not load here, pruned thread counts
    runtime: dict[str, Any]                # what is (with output) or would be embedded: delegate, num_threads,
    #                                        options (if any), p50_ms, tuned_on
    output: str | None = None
    pipeline: Any = None                   # the pipeline layout trial (pipeline.ThreadChoice) when a source was given
    others_load: float | None = None       # cores other processes used on average while tuning (sysload)
    warnings: tuple[str, ...] = ()

    @property
    def winner(self) -> TuneCandidate:
        return self.ranked[0]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "winner": self.winner.to_dict(), "runtime": self.runtime,
                "output": self.output, "ranked": [c.to_dict() for c in self.ranked],
                "failed": [c.to_dict() for c in self.failed],
                "skipped": [{"what": w, "why": y} for w, y in self.skipped],
                "pipeline": None if self.pipeline is None else self.pipeline.to_dict(),
                "others_load": self.others_load, "warnings": list(self.warnings)}


def tune(model: str | os.PathLike, *, threads: Sequence[int] | None = None, delegates: Sequence[str] | None = None,
         runs: int = 50, warmup: int = 5, output: str | os.PathLike | None = None, force: bool = False,
         prune: bool = True, timeout: float = 600.0, progress: Callable[[TuneCandidate], None] | None = None,
         search_options: bool = True, confirm: int = 3, pipeline: str | None = None,
         pipeline_frames: int = 90) -> TuneResult:
    """Measure delegate x options x threads candidates of ``model`` on this machine; rank by p50; embed the winner.

    ``threads``: the counts to try (default 1..cpu_count). ``delegates``: the ones to measure (default:
    xnnpack and cpu, plus other registered delegates that load here, e.g. litert-cpu). ``search_options``:
    also each delegate's option variants (its registered ``tune_variants``). ``prune``: the short search
    (module doc); False measures every combination. ``confirm``: the fastest that many are measured once
    more, interleaved, and keep their better run (other processes on the machine only ever add time),
    so one disturbed run neither crowns nor sinks a leader; 0: no second look. ``pipeline``: a source
    (video, image folder, camera, synthetic://) on which the winner's every-frame pipeline layout
    (threads x instances) is measured too, for ``edgeq run`` (``tune_pipeline``). ``output``: a new
    .tflite with the winner (delegate, threads, options, pipeline layout) in its metadata
    (``edgeq.load`` / ``edgeq run`` then use it); None: report only.
    """
    model = str(model)
    thread_list = _thread_list(threads)
    if runs < 1 or warmup < 0 or confirm < 0:
        raise UsageError(f"runs must be >= 1, warmup and confirm >= 0, got runs={runs}, warmup={warmup}, "
                         f"confirm={confirm}")
    check_outputs([model], force=force, created={"output": output} if output is not None else None)
    data, mf = load_model_file(model)
    if output is not None and read_metadata(mf) is None:
        raise ModelError(f"{model} has no edgeq metadata to hold the tuned configuration (a foreign model): "
                         "convert it with `edgeq convert`, or tune without an output to get the report only")
    given = _given_delegates(delegates)
    watch = LoadWatch.start()
    search = _Search(model, len(data), runs, warmup, timeout, progress)
    if prune:
        search.pruned(given, thread_list, search_options)
    else:
        search.everything(given, thread_list, search_options)
    search.confirm(confirm)
    ranked = tuple(sorted((c for c in search.measured if c.ok), key=lambda c: c.p50_ms))
    failed = tuple(c for c in search.measured if not c.ok)
    if not ranked:
        raise EdgeqError(f"no configuration of {model} could be measured: "
                         + "; ".join(f"{c.label}/{c.threads}: {c.error}" for c in failed[:3]))
    best = ranked[0]
    others = watch.others()
    runtime, warnings = _runtime_of(best, others)
    choice = None
    if pipeline is not None:
        from .tune_pipeline import tune_pipeline

        choice, runtime = tune_pipeline(model, pipeline, runtime, frames=pipeline_frames)
    if output is not None:
        meta = dataclasses.replace(read_metadata(mf), runtime=runtime)
        write_bytes_atomic(output, with_edgeq_metadata(data, meta), exclusive=not force)
    return TuneResult(model=model, ranked=ranked, failed=failed, skipped=tuple(search.skipped), runtime=runtime,
                      output=None if output is None else str(output), pipeline=choice,
                      others_load=None if others is None else round(others, 3), warnings=warnings)


def _runtime_of(best: TuneCandidate, others: float | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The winner's runtime configuration (as embedded), and a warning when other processes loaded the machine."""
    warnings = () if others is None or others <= BUSY_WARNING else (
        f"other processes used {others:.2f} of {os.cpu_count()} cores on average while tuning: the ranking reflects "
        "that load (XNNPACK's threads wait for a peer another process descheduled, so fewer threads can win); "
        "tune again on an idle machine for its own best",)
    for warning in warnings:
        log.warning("%s", warning)
    runtime = {"delegate": best.delegate, "num_threads": best.threads, "p50_ms": round(float(best.p50_ms), 4),
               "tuned_on": f"{platform.machine()} {os.cpu_count()} cores"
                           + ("" if others is None else f", others' load {others:.2f} cores"),
               **({"options": dict(best.options)} if best.options else {})}
    return runtime, warnings


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


def _given_delegates(delegates: Sequence[str] | None) -> list[str] | None:
    """The delegates named by the caller, checked before anything is measured (None: the default search)."""
    if delegates is None:
        return None
    given = list(dict.fromkeys(delegates))
    if not given:
        raise UsageError("give at least one delegate (e.g. xnnpack,cpu)")
    for d in given:
        check_delegate_name(d)
        if d == "auto":
            raise UsageError(f"delegate 'auto' {NOT_SEARCHED['auto']}; name concrete ones, e.g. "
                             f"{','.join(CPU_PATHS)}")
    return given


def _configs(delegate: str, search_options: bool) -> list[Options]:
    """The option sets to measure for a delegate: its defaults, then its registered tune variants."""
    spec = DELEGATES.get(delegate)
    return [()] + (list(spec.tune_variants) if search_options and spec is not None else [])


class _Search:
    """The measurements of one tune run, and what was not measured and why."""

    def __init__(self, model: str, size: int, runs: int, warmup: int, timeout: float,
                 progress: Callable[[TuneCandidate], None] | None):
        self.model, self.size, self.runs, self.warmup, self.timeout = model, size, runs, warmup, timeout
        self.progress = progress
        self.measured: list[TuneCandidate] = []
        self.skipped: list[tuple[str, str]] = []
        self._primed: set[tuple[str, Options]] = set()

    def measure(self, delegate: str, options: Options, n: int | None) -> TuneCandidate:
        opts = dict(options)
        if "weight_cache" in opts and (delegate, options) not in self._primed:
            # the first load writes the cache file: measure the loads that map it (what users get)
            run_benchmark([self.model], [delegate], [n], runs=1, warmup=0, delegate_options=opts,
                          timeout=self.timeout)
            self._primed.add((delegate, options))
        r = run_benchmark([self.model], [delegate], [n], runs=self.runs, warmup=self.warmup,
                          delegate_options=opts, timeout=self.timeout)[0]
        c = _candidate(r, delegate, self.size, options)
        self.measured.append(c)
        if self.progress:
            self.progress(c)
        return c

    def confirm(self, top: int) -> None:
        """Measure the ``top`` fastest again (slowest of them first) and keep each one's better run."""
        leaders = sorted((c for c in self.measured if c.ok), key=lambda c: c.p50_ms)[:top]
        for c in reversed(leaders):
            again = self.measure(c.delegate, c.options, c.threads)
            self.measured.pop()  # ``again`` itself: it is merged into ``c``
            better = again if again.ok and again.p50_ms < c.p50_ms else c
            self.measured[self.measured.index(c)] = dataclasses.replace(better, measurements=c.measurements + 1)

    def best(self, pred: Callable[[TuneCandidate], bool] = lambda c: True) -> TuneCandidate | None:
        ok = [c for c in self.measured if c.ok and pred(c)]
        return min(ok, key=lambda c: c.p50_ms) if ok else None

    def everything(self, given: list[str] | None, threads: list[int], search_options: bool) -> None:
        """Every delegate x options x threads (no pruning)."""
        for delegate in given if given is not None else self.loadable(CPU_PATHS, None):
            for options in _configs(delegate, search_options):
                for n in threads:
                    self.measure(delegate, options, n)

    def pruned(self, given: list[str] | None, threads: list[int], search_options: bool) -> None:
        """Threads on the first delegate; the rest once at its best count; then the winner's threads around it."""
        first = given[0] if given else CPU_PATHS[0]
        self.thread_search(first, (), threads)
        base = self.best()
        # the fewest threads within PRUNE_GAIN of the best: more threads that do not pay only take cores
        at = min((c.threads for c in self.measured if c.ok and c.p50_ms <= base.p50_ms * (1.0 + PRUNE_GAIN)),
                 default=threads[0]) if base is not None else threads[0]
        others = given[1:] if given else self.loadable(CPU_PATHS[1:], base)
        for delegate in [first] + list(others):
            for options in _configs(delegate, search_options):
                if (delegate, options) != (first, ()):
                    self.measure(delegate, options, at)
        winner = self.best()
        if winner is not None and (winner.delegate, winner.options) != (first, ()):
            self.climb(winner, threads)

    def thread_search(self, delegate: str, options: Options, threads: list[int]) -> None:
        """Ascending thread counts; stop once a count is not > PRUNE_GAIN faster than the best so far."""
        best: float | None = None
        for i, n in enumerate(threads):
            c = self.measure(delegate, options, n)
            if not c.ok:
                continue
            if best is not None and c.p50_ms > best * (1.0 - PRUNE_GAIN) and i + 1 < len(threads):
                rest = ",".join(str(t) for t in threads[i + 1:])
                self.skipped.append((f"{c.label} threads {rest}", f"pruned: {n} threads gave p50 {c.p50_ms:.3f} ms, "
                                     f"not more than {PRUNE_GAIN:.0%} better than {best:.3f} ms"))
                break
            best = c.p50_ms if best is None else min(best, c.p50_ms)

    def climb(self, winner: TuneCandidate, threads: list[int]) -> None:
        """The winner's neighbouring thread counts, in each direction while they pay by > PRUNE_GAIN."""
        def same(c: TuneCandidate) -> bool:
            return c.delegate == winner.delegate and c.options == winner.options

        i = threads.index(winner.threads) if winner.threads in threads else 0
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(threads):
                best = self.best(same)
                c = self.measure(winner.delegate, winner.options, threads[j])
                if not c.ok or best is None or c.p50_ms > best.p50_ms * (1.0 - PRUNE_GAIN):
                    break
                j += step
        measured = {c.threads for c in self.measured if same(c)}
        rest = [str(n) for n in threads if n not in measured]
        if rest:
            self.skipped.append((f"{winner.label} threads {','.join(rest)}", "pruned: the neighbouring counts of "
                                 f"its best did not pay by more than {PRUNE_GAIN:.0%}"))

    def loadable(self, paths: Sequence[str], base: TuneCandidate | None) -> list[str]:
        """``paths``, plus every other registered delegate whose trial load works here and is not far slower."""
        search = list(paths)
        for name in DELEGATES:
            if name in CPU_PATHS:
                continue
            if name in NOT_SEARCHED:
                self.skipped.append((name, NOT_SEARCHED[name]))
                continue
            # a few warm inferences: the first one of a delegate pays its lazy setup
            trial = run_benchmark([self.model], [name], [None], runs=TRIAL_RUNS, warmup=1, timeout=self.timeout)[0]
            if not trial.ok:
                self.skipped.append((name, f"does not load here: {trial.error}"))
            elif base is not None and trial.latency_ms is not None and \
                    trial.latency_ms.p50 > PRUNE_SLOW * base.p50_ms:
                self.skipped.append((name, f"pruned: its trial inferences took {trial.latency_ms.p50:.3f} ms, more "
                                     f"than {PRUNE_SLOW:g}x the best p50 {base.p50_ms:.3f} ms"))
            else:
                search.append(name)
        return search


def _candidate(r: BenchResult, delegate: str, size: int, options: Options = ()) -> TuneCandidate:
    """Named by the delegate as requested (an external library's path, not its report name)."""
    if not r.ok or r.latency_ms is None:
        return TuneCandidate(delegate, r.threads, size_bytes=size, error=r.error, options=options)
    return TuneCandidate(delegate, r.threads, r.latency_ms.p50, r.latency_ms.p99, r.init_ms, size, options=options)


def format_table(result: TuneResult) -> str:
    """The ranked table (fastest first), the failures, what was skipped and why, and the winner.

    A candidate measured more than once shows its best run, marked ``(best of N)``.
    """
    w = max([20] + [len(c.label) for c in result.ranked + result.failed])
    head = (f"{'rank':>4} {'delegate / options':<{w}} {'thr':>3} {'p50 ms':>9} {'p99 ms':>9} {'init ms':>8} "
            f"{'size KB':>8}")
    lines = [head, "-" * len(head)]
    for i, c in enumerate(result.ranked, 1):
        lines.append(f"{i:>4} {c.label:<{w}} {c.threads or '-':>3} {c.p50_ms:9.3f} {c.p99_ms:9.3f} "
                     f"{c.init_ms:8.1f} {c.size_bytes / 1024:8.1f}"
                     + (f"  (best of {c.measurements})" if c.measurements > 1 else ""))
    lines += [f"   - {c.label:<{w}} {c.threads or '-':>3}  error: {c.error}" for c in result.failed]
    lines += [f"skipped {what}: {why}" for what, why in result.skipped]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.pipeline is not None:
        lines.append("pipeline: " + result.pipeline.summary().replace("--threads auto chose", "edgeq run gets", 1))
    win = result.winner
    lines.append(f"winner: {win.label} with {win.threads or 'default'} thread(s), p50 {win.p50_ms:.3f} ms"
                 + (f" -> written into {pathlib.Path(result.output).name}'s metadata (edgeq.load uses it)"
                    if result.output else " (report only: give an output to embed it)"))
    return "\n".join(lines)
