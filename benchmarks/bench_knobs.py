"""The runtime knobs `edgeq tune` searches, side by side on MobileNetV2-224 int8 (issue 13).

Interpreter (xnnpack) vs LiteRT's CompiledModel on the CPU (litert-cpu), XNNPACK's latest operators,
its weight cache (cold: a fresh cache folder per load; warm: the cache file exists), XNNPACK off
(cpu; litert-cpu xnnpack_flags=0), YNNPACK, at 1 and 2 threads. Every configuration runs in a fresh
process (edgeq.bench's child runs), interleaved round by round; the table shows the medians over the
rounds of each run's p50 and init time, and the ratio of p50 to the Interpreter's at the same count.

    PYTHONPATH=$PWD python benchmarks/bench_knobs.py --rounds 5 --runs 100
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILD = r"""
import sys
sys.path.insert(0, sys.argv[2] + "/benchmarks")
import zoo, edgeq
imgs = zoo.images_for(224, sys.argv[2] + "/calibration_data", count=32)
model = zoo.build("MobileNetV2", 224, images=imgs)   # weights=None, BatchNorm statistics of real images
edgeq.convert(model, sys.argv[2] + "/calibration_data", sys.argv[1], force=True)
"""

# (label, delegate, threads, options); "COLD" is replaced by a fresh folder for every load
CONFIGS = [
    ("xnnpack (Interpreter)", "xnnpack", 1, {}),
    ("xnnpack latest=1", "xnnpack", 1, {"latest": "1"}),
    ("litert-cpu (CompiledModel)", "litert-cpu", 1, {}),
    ("litert-cpu latest=1", "litert-cpu", 1, {"latest": "1"}),
    ("litert-cpu weight_cache cold", "litert-cpu", 1, {"weight_cache": "COLD"}),
    ("litert-cpu weight_cache warm", "litert-cpu", 1, {"weight_cache": "WARM"}),
    ("litert-cpu ynnpack=1", "litert-cpu", 1, {"ynnpack": "1"}),
    ("cpu (XNNPACK off)", "cpu", 1, {}),
    ("litert-cpu xnnpack_flags=0", "litert-cpu", 1, {"xnnpack_flags": "0"}),
    ("xnnpack (Interpreter)", "xnnpack", 2, {}),
    ("xnnpack latest=1", "xnnpack", 2, {"latest": "1"}),
    ("litert-cpu (CompiledModel)", "litert-cpu", 2, {}),
    ("litert-cpu latest=1", "litert-cpu", 2, {"latest": "1"}),
]


def main() -> None:
    from edgeq.bench import run_benchmark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / ".bench" / "mobilenetv2_224_int8.tflite"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    model = pathlib.Path(args.model)
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BUILD, str(model), str(ROOT)], check=True)
        print(f"built {model} in {time.perf_counter() - t0:.0f} s", flush=True)
    results: dict[int, list] = {i: [] for i in range(len(CONFIGS))}
    with tempfile.TemporaryDirectory(prefix="edgeq-knobs-") as tmp:
        warm = pathlib.Path(tmp, "warm")
        warm.mkdir()
        run_benchmark([str(model)], ["litert-cpu"], [1], runs=1, warmup=0,  # writes the warm cache file
                      delegate_options={"weight_cache": str(warm)})
        for r in range(args.rounds):
            for i, (_, delegate, threads, options) in enumerate(CONFIGS):
                opts = dict(options)
                if opts.get("weight_cache") == "COLD":
                    opts["weight_cache"] = tempfile.mkdtemp(dir=tmp)
                elif opts.get("weight_cache") == "WARM":
                    opts["weight_cache"] = str(warm)
                results[i].append(run_benchmark([str(model)], [delegate], [threads], runs=args.runs,
                                                warmup=args.warmup, delegate_options=opts)[0])
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report(model, args, results)


def report(model: pathlib.Path, args: argparse.Namespace, results: dict[int, list]) -> None:
    ref = {}
    rows = []
    for i, (label, _, threads, _) in enumerate(CONFIGS):
        ok = [r for r in results[i] if r.ok]
        if not ok:
            rows.append(f"{label:<30} {threads:>3}  error: {results[i][0].error[:150]}")
            continue
        p50 = statistics.median(r.latency_ms.p50 for r in ok)
        best = min(r.latency_ms.p50 for r in ok)
        init = statistics.median(r.init_ms for r in ok)
        ref.setdefault(threads, (p50, best))
        rows.append(f"{label:<30} {threads:>3} {p50:9.3f} {p50 / ref[threads][0]:6.2f} {best:9.3f} "
                    f"{best / ref[threads][1]:6.2f} {init:8.1f} {min(r.init_ms for r in ok):8.1f}")
    info = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
               platform.processor())
    flags = info
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f" {f}" in flags]
    print(f"{model.name}: {args.rounds} interleaved rounds x {args.runs} runs, fresh process each; {cpu} "
          f"({', '.join(isa)}), {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{'configuration':<30} {'thr':>3} {'p50 ms':>9} {'ratio':>6} {'best p50':>9} {'ratio':>6} "
          f"{'init ms':>8} {'min init':>8}")
    print("\n".join(rows))
    print("p50: median over rounds of each run's median; best p50: the lowest over rounds (the least disturbed "
          "on a shared machine); ratio: to the Interpreter's at the same thread count; init: median of "
          "edgeq.load (file checks, cached crash probe, interpreter/compiled model, delegate), and its minimum")


if __name__ == "__main__":
    main()
