"""Latency benchmark of models x delegates x threads, each combination in a fresh interpreter.

Each combination runs in its own child process by default: a fresh interpreter, a clean peak
RSS, and one crashing delegate cannot take the whole benchmark down.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import EdgeqError, UsageError
from .fileio import write_text_atomic

# Thresholds of the suspicious-result warnings.
FIRST_RUN_FACTOR = 10.0   # first inference > 10x the median (and > 50 ms)
FIRST_RUN_MIN_MS = 50.0
SPREAD_FACTOR = 2.0       # p99 > 2x p50


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    min: float
    mean: float
    p50: float
    p90: float
    p99: float
    max: float
    std: float

    @classmethod
    def from_samples(cls, ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(float(a.min()), float(a.mean()), float(p50), float(p90), float(p99), float(a.max()),
                   float(a.std()))

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One model x delegate x threads measurement (or the error that prevented it)."""

    model: str
    delegate: str
    threads: int | None
    init_ms: float | None = None
    first_ms: float | None = None
    latency_ms: LatencyStats | None = None
    throughput_fps: float | None = None
    peak_rss_mb: float | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    runs: int = 0
    warmup: int = 0
    backend: str = ""
    input_dtype: str = ""
    input_shape: tuple[int, ...] = ()
    samples_ms: tuple[float, ...] = ()
    skipped: tuple[str, ...] = ()  # delegates tried before the one used, with the reason
    error: str | None = None
    warnings: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()  # the delegate options it ran with
    tuned: str = ""  # what came from the model's tuned configuration (edgeq tune), "" = nothing

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "delegate": self.delegate, "threads": self.threads,
            "init_ms": _r(self.init_ms), "first_ms": _r(self.first_ms),
            "latency_ms": self.latency_ms.to_dict() if self.latency_ms else None,
            "throughput_fps": _r(self.throughput_fps, 2), "peak_rss_mb": _r(self.peak_rss_mb, 1),
            "delegated_nodes": self.delegated_nodes, "total_nodes": self.total_nodes,
            "runs": self.runs, "warmup": self.warmup, "backend": self.backend, "input_dtype": self.input_dtype,
            "input_shape": list(self.input_shape),
            "skipped": list(self.skipped), "error": self.error, "warnings": list(self.warnings),
            "samples_ms": list(self.samples_ms),  # the distribution, for plots made later (edgeq report)
            "options": dict(self.options), "tuned": self.tuned,
        }


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def random_inputs(model: Any, seed: int = 0) -> list[np.ndarray]:
    """Inputs in the model's own dtype/shape: timing does not depend on values for these kernels."""
    rng = np.random.default_rng(seed)
    xs = []
    for spec in model.inputs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            xs.append(rng.integers(info.min, info.max, size=spec.shape, dtype=dtype, endpoint=True))
        elif dtype.kind == "b":
            xs.append(rng.integers(0, 2, size=spec.shape).astype(bool))
        else:
            xs.append(rng.random(spec.shape, dtype=np.float32).astype(dtype))
    return xs


def peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_one(model: str, delegate: str, threads: int | None, runs: int = 100, warmup: int = 10,
              delegate_options: dict[str, Any] | None = None) -> BenchResult:
    """Measure one combination in this process (a fresh interpreter)."""
    from .runtime import load

    t0 = time.perf_counter()
    m = load(model, delegate=delegate, num_threads=threads, **(delegate_options or {}))
    init_ms = (time.perf_counter() - t0) * 1000.0
    with m:
        xs = random_inputs(m)
        t0 = time.perf_counter()
        m.run(xs)
        first_ms = (time.perf_counter() - t0) * 1000.0
        for _ in range(warmup):
            m.run(xs)
        samples = []
        clock = time.perf_counter
        for _ in range(runs):
            t0 = clock()
            m.run(xs)
            samples.append((clock() - t0) * 1000.0)
        stats = LatencyStats.from_samples(samples)
        r = m.delegate_report
        return BenchResult(model=str(model), delegate=r.delegate if delegate != "auto" else f"auto:{r.delegate}",
                           threads=threads, init_ms=init_ms, first_ms=first_ms, latency_ms=stats,
                           throughput_fps=1000.0 / stats.mean if stats.mean > 0 else None,
                           peak_rss_mb=peak_rss_mb(), delegated_nodes=r.delegated_nodes, total_nodes=r.total_nodes,
                           runs=runs, warmup=warmup, backend=r.backend, input_dtype=m.inputs[0].dtype,
                           input_shape=tuple(m.inputs[0].shape), samples_ms=tuple(round(s, 5) for s in samples),
                           skipped=tuple(f"{a.name}: {a.reason}" for a in r.attempts if not a.ok),
                           warnings=r.warnings)


_CHILD = "from edgeq.bench import _child_main; _child_main(sys.argv[1])"


def _child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        res = bench_one(spec["model"], spec["delegate"], spec["threads"], spec["runs"], spec["warmup"],
                        spec["options"])
        out = res.to_dict()
    except EdgeqError as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("\n@@EDGEQ-BENCH@@" + json.dumps(out) + "\n")


def _bench_isolated(model: str, delegate: str, threads: int | None, runs: int, warmup: int,
                    options: dict[str, Any], timeout: float) -> BenchResult:
    from .runtime.child import child_python, describe_exit

    spec = json.dumps({"model": model, "delegate": delegate, "threads": threads, "runs": runs, "warmup": warmup,
                       "options": options})
    base = BenchResult(model=model, delegate=delegate, threads=threads, runs=runs, warmup=warmup)
    try:
        proc = subprocess.run(child_python(_CHILD) + [spec], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dataclasses.replace(base, error=f"timed out after {timeout:.0f} s")
    marker = proc.stdout.rfind("@@EDGEQ-BENCH@@")
    if proc.returncode != 0 or marker < 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dataclasses.replace(base, error=f"benchmark process {describe_exit(proc.returncode)}: {tail}")
    d = json.loads(proc.stdout[marker + len("@@EDGEQ-BENCH@@"):])
    if d.get("error"):
        return dataclasses.replace(base, error=d["error"])
    lat = LatencyStats(**d["latency_ms"])
    return BenchResult(model=model, delegate=d["delegate"], threads=threads, init_ms=d["init_ms"],
                       first_ms=d["first_ms"], latency_ms=lat, throughput_fps=d["throughput_fps"],
                       peak_rss_mb=d["peak_rss_mb"], delegated_nodes=d["delegated_nodes"],
                       total_nodes=d["total_nodes"], runs=runs, warmup=warmup, backend=d["backend"],
                       input_dtype=d["input_dtype"], input_shape=tuple(d["input_shape"]),
                       samples_ms=tuple(d["samples_ms"]), skipped=tuple(d["skipped"]),
                       warnings=tuple(d["warnings"]))


def run_benchmark(models: Sequence[str], delegates: Sequence[str] | None = None,
                  threads: Sequence[int | None] | None = None, *, runs: int = 100, warmup: int = 10,
                  delegate_options: dict[str, Any] | None = None, isolate: bool = True, timeout: float = 600.0,
                  progress: Callable[[BenchResult], None] | None = None) -> list[BenchResult]:
    """Every model x delegate x threads combination; errors are recorded per combination.

    ``delegates`` / ``threads`` None: what the model's tuned configuration (``edgeq tune -o``) says, with
    its tuned delegate options (``BenchResult.tuned`` says so), else ``auto`` / 1 thread; either given
    explicitly overrides that part, as in ``edgeq.load``.
    """
    from .tflite_format import load_model_file

    if runs < 1 or warmup < 0:
        raise UsageError(f"--runs must be >= 1 and --warmup >= 0, got runs={runs}, warmup={warmup}")
    if not models:
        raise UsageError("give at least one model")
    plans = {}
    for m in models:
        _, mf = load_model_file(m)  # fail fast on a bad file, before any measurement
        plans[m] = _plan(str(m), mf, delegates, threads, delegate_options or {})
    results = []
    for model in models:
        for delegate, n, opts, note in plans[model]:
            if isolate:
                r = _bench_isolated(str(model), delegate, n, runs, warmup, opts, timeout)
            else:
                try:
                    r = bench_one(str(model), delegate, n, runs, warmup, opts)
                except EdgeqError as exc:
                    r = BenchResult(model=str(model), delegate=delegate, threads=n, runs=runs, warmup=warmup,
                                    error=f"{type(exc).__name__}: {exc}")
            results.append(dataclasses.replace(r, options=tuple(opts.items()), tuned=note))
            if progress:
                progress(results[-1])
    return add_warnings(results)


DEFAULT_THREADS = 1  # bench's thread count for a model without a tuned one


def _plan(model: str, mf: Any, delegates: Sequence[str] | None, threads: Sequence[int | None] | None,
          options: dict[str, Any]) -> list[tuple[str, int | None, dict[str, Any], str]]:
    """(delegate, threads, options, tuned note) for each combination to measure on this model."""
    from .metadata import read_metadata
    from .runtime.delegates import DELEGATES, check_delegate_name, check_options, options_for
    from .runtime.model import tuned_config

    for d in delegates or ():
        check_delegate_name(d)
    if delegates is not None:
        per_delegate = {d: options_for(d, options) for d in delegates}
        unused = sorted(set(options) - {k for opts in per_delegate.values() for k in opts})
        if unused:
            raise UsageError(f"delegate option(s) {', '.join(unused)} are taken by none of the delegates "
                             f"{', '.join(delegates)}; options by delegate: "
                             + "; ".join(f"{d}: {', '.join(s.option_names) or 'none'}" for d, s in DELEGATES.items())
                             + "; an external delegate .so: any")
    if delegates is not None and threads is not None:
        for d in delegates:
            check_options(d, per_delegate[d])  # bad values are usage errors before any measurement
        return [(d, n, per_delegate[d], "") for d in delegates for n in threads]
    meta = read_metadata(mf)
    plan = []
    for d in delegates if delegates is not None else [None]:
        for n in threads if threads is not None else [None]:
            cfg = tuned_config(meta, d, n, per_delegate[d] if d is not None else options, model)
            check_options(cfg.delegate, cfg.options)
            count = cfg.num_threads if cfg.num_threads is not None or threads is not None else DEFAULT_THREADS
            plan.append((cfg.delegate, count, cfg.options, cfg.note))
    return plan


def add_warnings(results: Sequence[BenchResult]) -> list[BenchResult]:
    """Flag results a careful reader would question."""
    from .runtime.delegates import DELEGATES

    out = []
    for r in results:
        w: list[str] = []
        if r.ok and r.latency_ms:
            base = r.delegate.split(":")[-1]
            if r.delegated_nodes == 0 and (base not in DELEGATES or DELEGATES[base].delegates_nodes):
                w.append(f"delegate {base} took no nodes: everything ran on the CPU kernels")
            if r.first_ms and r.first_ms > FIRST_RUN_FACTOR * r.latency_ms.p50 and r.first_ms > FIRST_RUN_MIN_MS:
                w.append(f"first inference {r.first_ms:.1f} ms is {r.first_ms / r.latency_ms.p50:.0f}x the median "
                         "(lazy init/compilation): exclude it from real-time budgets")
            if r.latency_ms.p99 > SPREAD_FACTOR * r.latency_ms.p50:
                w.append(f"wide spread: p99 {r.latency_ms.p99:.3f} ms is {r.latency_ms.p99 / r.latency_ms.p50:.1f}x "
                         "p50 (contention or thermal throttling? use more --runs, fewer threads)")
            if r.input_dtype in ("int8", "uint8"):
                # the float counterpart: same input shape (not just any float model), delegate, threads
                for f in results:
                    if (f.ok and f.latency_ms and f is not r and f.input_dtype.startswith("float")
                            and f.input_shape == r.input_shape and f.delegate == r.delegate and f.threads == r.threads
                            and f.latency_ms.p50 < r.latency_ms.p50):
                        w.append(f"int8 is slower than float {pathlib.Path(f.model).name} ({r.latency_ms.p50:.3f} vs "
                                 f"{f.latency_ms.p50:.3f} ms p50 with {r.delegate}): this CPU/delegate lacks fast "
                                 "int8 kernels")
        out.append(dataclasses.replace(r, warnings=r.warnings + tuple(w)))
    return out


# ---- output -------------------------------------------------------------------------------------
CSV_FIELDS = ("model", "delegate", "threads", "init_ms", "first_ms", "min", "mean", "p50", "p90", "p99", "max", "std",
              "throughput_fps", "peak_rss_mb", "delegated_nodes", "total_nodes", "backend", "error")


def to_csv(results: Sequence[BenchResult]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in results:
        d = r.to_dict()
        row = {k: d.get(k) for k in CSV_FIELDS}
        row.update(d["latency_ms"] or {})
        w.writerow(row)
    return buf.getvalue()


def write_csv(results: Sequence[BenchResult], path: str | os.PathLike) -> None:
    try:
        write_text_atomic(path, to_csv(results))
    except OSError as exc:
        raise EdgeqError(f"cannot write CSV {path}: {exc.strerror or exc}") from exc


def format_table(results: Sequence[BenchResult]) -> str:
    w = max([5] + [len(pathlib.Path(r.model).name) for r in results])
    head = (f"{'model':<{w}} {'delegate':<16} {'thr':>3} {'init':>8} {'first':>8} {'p50':>8} {'p90':>8} {'p99':>8} "
            f"{'mean±std':>16} {'fps':>8} {'RSS MB':>7} {'nodes':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        name = pathlib.Path(r.model).name
        thr = "-" if r.threads is None else str(r.threads)
        delegate = f"{r.delegate}*" if r.tuned else r.delegate
        if not r.ok:
            lines.append(f"{name:<{w}} {delegate:<16} {thr:>3}  error: {r.error}")
            continue
        s = r.latency_ms
        nodes = f"{'?' if r.delegated_nodes is None else r.delegated_nodes}/{r.total_nodes}"
        lines.append(f"{name:<{w}} {delegate:<16} {thr:>3} {r.init_ms:8.1f} {r.first_ms:8.3f} {s.p50:8.3f} "
                     f"{s.p90:8.3f} {s.p99:8.3f} {s.mean:8.3f}±{s.std:<7.3f} {r.throughput_fps:8.1f} "
                     f"{r.peak_rss_mb:7.1f} {nodes:>7}")
    lines.append("times in ms (init = load + delegate setup; latency over the timed runs after warm-up)")
    for name, note in dict.fromkeys((pathlib.Path(r.model).name, r.tuned) for r in results if r.tuned):
        lines.append(f"* {name}: tuned: {note}")
    return "\n".join(lines)


def plot(results: Sequence[BenchResult], path: str | os.PathLike) -> None:
    """Box plot of the latency distributions (needs matplotlib: pip install 'edgeq[plot]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'edgeq[plot]'") from exc
    ok = [r for r in results if r.ok and r.samples_ms]
    if not ok:
        raise UsageError("--plot: no successful measurement to plot")
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(ok)), 4.5))
    ax.boxplot([r.samples_ms for r in ok], whis=(1, 99), showfliers=True)
    ax.set_xticks(range(1, len(ok) + 1))
    ax.set_xticklabels([f"{pathlib.Path(r.model).stem}\n{r.delegate}\nthreads={r.threads or '-'}" for r in ok],
                       fontsize=8)
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title("edgeq bench: latency distribution (whiskers p1-p99)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    from .fileio import atomic_path

    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    except OSError as exc:
        raise EdgeqError(f"cannot write plot {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
