"""edgeq (default and tuned) side by side with ONNX Runtime and OpenVINO on the CPU it runs on (issue 13).

Stacks (benchmarks/peers.py): edgeq, edgeq-tuned, ort-s8s8, ort-u8s8-rr, openvino (NNCF) and openvino-tflite
(OpenVINO's runtime on edgeq's own int8 .tflite: could edgeq reach OpenVINO's kernels with its file as it is?).

Run on demand; the peers are the optional extra ``pip install -e .[peers]`` (never part of the test suite):

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--models bundled,mobilenetv2] [--threads 2]
        [--rounds 6] [--runs N] [--eval-limit 10000] [--reuse] [--json F] [--out build/peers] [--profile]

Models: the bundled Fashion-MNIST CNN (models/fashion_mnist_dsconv.keras, its Keras original) and
MobileNetV2-224 (benchmarks/zoo.py: random weights, BatchNorm statistics from the 200 calibration images;
cached as build/peers/mobilenetv2_224.keras). Every stack converts the same .keras file with the same 200
calibration images (see benchmarks/peers.py for each stack's exact calls), each conversion in its own fresh
process (TensorFlow imported before the clock starts; the clock includes loading the .keras file).

Latency: batch 1, one real calibration image, per-call wall time of the runtime's own call (edgeq:
``EdgeModel.run`` on the int8 tensor; the peers: their session/infer-request call on the float tensor,
quantization inside their graphs). Each stack is timed in its own fresh process (ONNX Runtime's worker
threads would steal CPU from the next stack otherwise), ``--rounds`` times, in alternating order, so all
stacks share the same drifts in machine load; medians and p90 are over all rounds' calls, and the range is
the spread of the per-round medians. Ratios: pooled p50 / edgeq tuned's pooled p50, and "paired": the median
over rounds of each round's p50 / edgeq tuned's p50 in the same round (robust to load that drifts between rounds
on a shared machine).
Accuracy: top-1 on the 10,000 Fashion-MNIST test images (bundled model only; MobileNetV2 has random weights).
``--quick``: 2 rounds, a tenth of the runs, 1,000 test images (a smoke run, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hide_isa  # noqa: E402
import peers  # noqa: E402

MODELS = ("bundled", "mobilenetv2")
RUNS = {"bundled": 3000, "mobilenetv2": 300}       # timed calls per process, full mode
WARMUP = {"bundled": 300, "mobilenetv2": 30}


def model_spec(name: str, out: pathlib.Path) -> peers.ModelSpec:
    if name == "bundled":
        return peers.ModelSpec(name, ROOT / "models" / "fashion_mnist_dsconv.keras", 28, 28, 1)
    return peers.ModelSpec(name, out / "mobilenetv2_224.keras", 224, 224, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="artifacts and results (relative to the repository; default "
                    "build/peers, or build/peers-avx2 with --hide-isa)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--stacks", default=",".join(peers.STACKS), help=f"comma list of {', '.join(peers.STACKS)}")
    ap.add_argument("--threads", type=int, default=2, help="inference threads of every stack")
    ap.add_argument("--rounds", type=int, default=None, help="fresh processes per stack (default 6; quick 2)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per process (default 3000 bundled, "
                                                               "300 MobileNetV2; quick a tenth)")
    ap.add_argument("--eval-limit", type=int, default=None, help="test images for top-1 (default 10000; quick 1000)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, a tenth of the runs, 1000 images")
    ap.add_argument("--reuse", action="store_true", help="keep converted artifacts of an earlier run (no "
                                                          "conversion times then)")
    ap.add_argument("--json", help="also write all results to this JSON file")
    ap.add_argument("--profile", action="store_true", help="then the per-op profile of the int8 MobileNetV2 "
                                                            "(benchmarks/op_profile.py, with OpenVINO's if converted)")
    ap.add_argument("--hide-isa", action="store_true", help="AVX2 code paths only: AVX-512, AMX and AVX-VNNI "
                    "hidden from CPUID for every stack (benchmarks/hide_isa.py; needs cpuid_fault and a C compiler)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.models = _choices(ap, "--models", args.models, MODELS)
    args.stacks = _choices(ap, "--stacks", args.stacks, peers.STACKS)
    for needs in ("edgeq-tuned", "openvino-tflite"):
        if needs in args.stacks and "edgeq" not in args.stacks:
            ap.error(f"--stacks: {needs} starts from the edgeq default model; add edgeq")
    for name in ("threads", "rounds", "runs", "eval_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.eval_limit = min(args.eval_limit or (1000 if args.quick else 10000), 10000)
    return args


def _choices(ap: argparse.ArgumentParser, flag: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    got = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in got if v not in allowed]
    if bad or not got:
        ap.error(f"{flag}: unknown {', '.join(bad) or '(empty)'}; expected a comma list of {', '.join(allowed)}")
    return [v for v in allowed if v in got]  # fixed order, duplicates gone


# ---- child processes --------------------------------------------------------------------------------

def child(job: dict[str, Any]) -> dict[str, Any]:
    """One job in a fresh process: source | convert | time | eval."""
    kind = job["kind"]
    spec = peers.ModelSpec(job["model"], pathlib.Path(job["keras"]), *job["hwc"])
    if kind == "source":
        return build_source(spec, job["eval_limit"])
    if kind == "convert":
        if job["stack"] != "edgeq-tuned":
            import tensorflow  # noqa: F401  (every stack's clock starts with TensorFlow loaded)
        default = pathlib.Path(job["default"]) if job.get("default") else None
        return peers.convert(job["stack"], spec, pathlib.Path(job["artifact"]), default)
    runner = peers.open_runner(job["stack"], pathlib.Path(job["artifact"]), job["threads"])
    if kind == "time":
        return time_runner(runner, peers.calibration_arrays(spec, count=1)[0][None], job["runs"], job["warmup"])
    return {"top1": top1(runner, job["eval_limit"]), "config": runner.config}


def build_source(spec: peers.ModelSpec, eval_limit: int) -> dict[str, Any]:
    """MobileNetV2: build and cache the .keras model. Bundled: the float Keras model's top-1 (the reference)."""
    import keras

    if spec.name == "mobilenetv2":
        if not spec.keras.exists():
            import zoo

            model = zoo.build("MobileNetV2", 224, images=peers.calibration_arrays(spec))
            spec.keras.parent.mkdir(parents=True, exist_ok=True)
            model.save(spec.keras)
        return {}
    from edgeq.datasets import load_fashion_mnist

    x, y = load_fashion_mnist("t10k")
    model = keras.models.load_model(spec.keras, compile=False)
    pred = model.predict(x[:eval_limit, ..., None].astype(np.float32) / 255.0, batch_size=500, verbose=0)
    return {"top1": float(np.mean(pred.argmax(-1) == y[:eval_limit]) * 100)}


def time_runner(runner: peers.Runner, x: np.ndarray, runs: int, warmup: int) -> dict[str, Any]:
    feed = runner.prepare(x)
    for _ in range(warmup):
        runner.run(feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"ms": times, "config": runner.config}


def top1(runner: peers.Runner, limit: int) -> float:
    from edgeq.datasets import load_fashion_mnist

    x, y = load_fashion_mnist("t10k")
    xf = x[:limit, ..., None].astype(np.float32) / 255.0
    hits = sum(int(np.argmax(runner.run(runner.prepare(xf[i:i + 1]))) == y[i]) for i in range(len(xf)))
    return hits / len(xf) * 100


def spawn(job: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run a job in a fresh interpreter; its result comes back through a JSON file (stdout is the libraries')."""
    result = pathlib.Path(job["out"]) / f".job-{os.getpid()}-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps({**job, "result": str(result)})],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not result.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        what = f"{job['kind']} {job.get('stack', '')} {job['model']}"
        raise RuntimeError(f"{what} failed (rc {proc.returncode}):\n{tail}")
    data = json.loads(result.read_text())
    result.unlink()
    return data


# ---- the run --------------------------------------------------------------------------------------------

def run_model(name: str, args: argparse.Namespace, out: pathlib.Path) -> dict[str, Any]:
    spec = model_spec(name, out)
    base = {"model": name, "keras": str(spec.keras), "hwc": [spec.height, spec.width, spec.channels], "out": str(out)}
    art = {s: out / f"{name}{peers.SUFFIX[s]}" for s in args.stacks}
    res: dict[str, Any] = {"model": name, "stacks": {s: {} for s in args.stacks}}
    res["float_top1"] = spawn({**base, "kind": "source", "eval_limit": args.eval_limit}).get("top1")
    for s in args.stacks:
        if s != "openvino-tflite" and not (args.reuse and art[s].exists()):
            print(f"[{name}] converting: {s}", file=sys.stderr)
            res["stacks"][s].update(spawn({**base, "kind": "convert", "stack": s, "artifact": str(art[s]),
                                           "default": str(art.get("edgeq", ""))}))
        res["stacks"][s]["size_bytes"] = peers.artifact_size(art[s])
    runs = args.runs or max(RUNS[name] // (10 if args.quick else 1), 10)
    samples: dict[str, list[list[float]]] = {s: [] for s in args.stacks}
    for r in range(args.rounds):
        for s in (args.stacks if r % 2 == 0 else args.stacks[::-1]):
            got = spawn({**base, "kind": "time", "stack": s, "artifact": str(art[s]), "threads": args.threads,
                         "runs": runs, "warmup": min(WARMUP[name], runs)})
            samples[s].append(got["ms"])
            res["stacks"][s]["config"] = got["config"]
        print(f"[{name}] latency round {r + 1}/{args.rounds} done", file=sys.stderr)
    ref = "edgeq-tuned" if "edgeq-tuned" in samples else args.stacks[0]
    ref_rounds = [statistics.median(x) for x in samples[ref]]
    for s, rounds in samples.items():
        pooled = np.concatenate(rounds)
        per_round = [statistics.median(x) for x in rounds]
        # paired: the stacks of one round ran back to back, so a round's ratio cancels slower drifts in load
        paired = statistics.median(a / b for a, b in zip(per_round, ref_rounds))
        res["stacks"][s].update(p50_ms=float(np.median(pooled)), p90_ms=float(np.percentile(pooled, 90)),
                                round_p50_ms=per_round, paired_ratio=paired, calls=len(pooled))
    if name == "bundled":
        for s in args.stacks:
            res["stacks"][s]["top1"] = spawn({**base, "kind": "eval", "stack": s, "artifact": str(art[s]),
                                              "threads": args.threads, "eval_limit": args.eval_limit})["top1"]
    return res


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ai-edge-litert", "tensorflow-cpu", "onnxruntime", "tf2onnx", "openvino", "nncf"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def table(res: dict[str, Any], eval_limit: int) -> str:
    """One markdown table per model; ratios against edgeq tuned (else edgeq default)."""
    stacks = res["stacks"]
    ref = stacks.get("edgeq-tuned") or stacks.get("edgeq") or next(iter(stacks.values()))
    has_acc = res["model"] == "bundled"
    head = ("| stack | size | conversion | p50 ms | p90 ms | p50 per round (min–max) | p50 ÷ edgeq tuned "
            "| paired ÷ edgeq tuned |")
    head += f" top-1 ({eval_limit:,} test) |" if has_acc else ""
    lines = [head, "|" + "---|" * head.count(" |")]
    for s, m in stacks.items():
        conv = f"{m['seconds']:.1f} s" if "seconds" in m else "–"
        if s == "edgeq-tuned" and "seconds" in m:
            conv = f"+{m['seconds']:.0f} s tune"
        elif s == "openvino-tflite":
            conv = "(edgeq's file)"
        row = (f"| {peers.LABELS[s]} | {m['size_bytes'] / 1024:,.0f} KiB | {conv} | {m['p50_ms']:.3f} | "
               f"{m['p90_ms']:.3f} | {min(m['round_p50_ms']):.3f}–{max(m['round_p50_ms']):.3f} | "
               f"{m['p50_ms'] / ref['p50_ms']:.2f} | {m['paired_ratio']:.2f} |")
        if has_acc:
            row += f" {m['top1']:.2f} % ({m['top1'] - res['float_top1']:+.2f}) |"
        lines.append(row)
    if has_acc:
        lines.append(f"\nfloat Keras model: top-1 {res['float_top1']:.2f} % (drops above are against it)")
    return "\n".join(lines)


def machine(args: argparse.Namespace) -> dict[str, Any]:
    info = peers.cpu_info()
    return {"cpu": info, "int8_peak_gmacs": dict(peers.int8_peak(info, args.threads)),
            "python": platform.python_version(), "os_cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "versions": versions()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        pathlib.Path(job["result"]).write_text(json.dumps(child(job)))
        return
    if args.hide_isa:
        hide_isa.reexec_hidden(ROOT / "build" / "cpuid_mask")
    out = (ROOT / (args.out or ("build/peers-avx2" if args.hide_isa else "build/peers"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = {"args": {k: v for k, v in vars(args).items() if k != "child"}, "before": machine(args),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "models": []}
    for name in args.models:
        report["models"].append(run_model(name, args, out))
    report["after_load_avg"] = list(os.getloadavg())
    cpu = report["before"]["cpu"]
    hidden = f" ({cpu['hidden']})" if cpu.get("hidden") else ""
    print(f"CPU: {cpu['model']}, {cpu['logical_cpus']} logical CPUs, flags: {' '.join(cpu['flags'])}{hidden}; "
          f"{args.threads} threads; load average before {report['before']['load_avg'][0]:.2f}, "
          f"after {report['after_load_avg'][0]:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["before"]["versions"].items()))
    for res in report["models"]:
        print(f"\n### {res['model']}\n")
        print(table(res, args.eval_limit))
        for s, m in res["stacks"].items():
            print(f"- {s}: {m.get('config', '')}" + (f"; tuned runtime {m['runtime']}" if "runtime" in m else ""))
    if args.json:
        from edgeq.fileio import dump_json

        dump_json(report, args.json)
    tflite = out / "mobilenetv2.tflite"
    if args.profile and tflite.exists():  # a fresh process, after every timing is done
        ov = tflite.with_suffix(".ov.xml")
        cmd = [sys.executable, str(ROOT / "benchmarks" / "op_profile.py"), str(tflite), "--threads", str(args.threads),
               *(["--openvino", str(ov)] if ov.exists() else []), *(["--runs", "50"] if args.quick else [])]
        subprocess.run(cmd, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
