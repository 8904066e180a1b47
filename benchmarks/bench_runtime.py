"""EdgeModel overhead vs the bare ai-edge-litert Interpreter, predict vs run, and GPU vs XNNPACK.

One run prints ratios measured side by side (interleaved blocks, medians), never absolute goals
checked by tests:

  - EdgeModel.run vs Interpreter set_tensor/invoke/get_tensor on the same model and threads:
    goal <= 1.03 on MobileNetV2-224 int8 and <= 25 us added per call on the bundled 28x28 model;
  - predict (preprocessing + quantization + dequantization) vs run;
  - with --gpu: delegate="gpu" (fp16, fp32) vs XNNPACK.

MobileNetV2-224 is built with keras.applications.MobileNetV2(weights=None), given real BatchNorm
statistics (momentum 0, one training-mode pass over real images) and converted with edgeq.convert
(int8 and float16); the .tflite files are cached under build/bench/ (needs TensorFlow once).

    .venv/bin/python benchmarks/bench_runtime.py [--threads 2] [--no-mobilenet] [--gpu] [--json F]
"""
from __future__ import annotations

import argparse
import glob
import os
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeq.fileio import dump_json  # noqa: E402
from edgeq.preprocess import Preprocess  # noqa: E402
from edgeq.runtime import load  # noqa: E402

FASHION_INT8 = ROOT / "tests" / "data" / "fashion_int8.tflite"
CALIBRATION = ROOT / "calibration_data"
CACHE = ROOT / "build" / "bench"
MOBILENET_PRE = Preprocess(224, 224, color="RGB", mean=(127.5,), std=(127.5,))


def real_images(n: int) -> list[np.ndarray]:
    import cv2

    paths = sorted(glob.glob(str(CALIBRATION / "*" / "*.png")))[:n]
    return [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]


def mobilenet_paths(recipes: tuple[str, ...] = ("int8", "float16")) -> dict[str, pathlib.Path]:
    """The cached MobileNetV2 models, built first in a child process if missing.

    A child: once TensorFlow is loaded in a process, LiteRT's WebGPU accelerator crashed
    (SIGSEGV) there; the timing process never imports TensorFlow.
    """
    out = {r: CACHE / f"mobilenetv2_224_{r}.tflite" for r in recipes}
    if not all(p.exists() for p in out.values()):
        import subprocess

        subprocess.run([sys.executable, __file__, "--build-only"], check=True)
    return out


def build_mobilenet(recipes: tuple[str, ...] = ("int8", "float16")) -> dict[str, pathlib.Path]:
    """MobileNetV2-224 with real BatchNorm statistics, converted by edgeq.convert (cached)."""
    out = {r: CACHE / f"mobilenetv2_224_{r}.tflite" for r in recipes}
    if all(p.exists() for p in out.values()):
        return out
    import edgeq
    from edgeq.convert.source import import_tensorflow

    import_tensorflow()
    import zoo

    batch = np.stack([MOBILENET_PRE.apply(img) for img in real_images(64)])
    model = zoo.build("MobileNetV2", 224, images=batch)  # moving statistics := statistics of real images
    CACHE.mkdir(parents=True, exist_ok=True)
    for recipe, path in out.items():
        if not path.exists():
            edgeq.convert(model, str(CALIBRATION), str(path), recipe=recipe, preprocess=MOBILENET_PRE,
                          num_samples=100, task="other", save_recipe=False)
    return out


def interleaved(fns: dict[str, callable], calls: int, reps: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating blocks of `calls`."""
    return {k: statistics.median(v) for k, v in interleaved_samples(fns, calls, reps).items()}


def interleaved_samples(fns: dict[str, callable], calls: int, reps: int) -> dict[str, list[float]]:
    """Seconds per call of each function in each of `reps` rounds (order alternates per round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    return times


def raw_interpreter(path: pathlib.Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    return it, inp, out


def overhead(path: pathlib.Path, threads: int, calls: int, reps: int) -> dict[str, float]:
    """EdgeModel.run vs set_tensor/invoke/get_tensor on the very same Interpreter.

    Same interpreter, same XNNPACK thread pool and weights: the difference is only what
    EdgeModel adds per call (on a shared 2-core machine two separate pools disturb each other
    more than the wrapper costs; a separately created Interpreter is timed too, for reference).
    """
    model = load(path, delegate="xnnpack", num_threads=threads)
    it = model.interpreter
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    own, own_in, own_out = raw_interpreter(path, threads)
    x = np.random.default_rng(0).integers(-128, 128, size=model.inputs[0].shape).astype(model.inputs[0].dtype)

    def raw():
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)

    def edge():
        return model.run(x)

    def separate():
        own.set_tensor(own_in, x)
        own.invoke()
        return own.get_tensor(own_out)

    np.testing.assert_array_equal(raw(), edge()[0])
    np.testing.assert_array_equal(separate(), edge()[0])
    for _ in range(max(3, calls // 10)):  # warm all
        raw(), edge(), separate()
    samples = interleaved_samples({"raw": raw, "edge": edge}, calls, reps)
    t = {k: statistics.median(v) for k, v in samples.items()}
    # paired: each round's blocks ran back to back, so their ratio cancels slow drifts in load
    paired = statistics.median(e / r for e, r in zip(samples["edge"], samples["raw"]))
    t_sep = interleaved({"separate": separate}, calls, max(3, reps // 3))
    model.close()
    return {"raw_us": t["raw"] * 1e6, "run_us": t["edge"] * 1e6, "ratio": t["edge"] / t["raw"],
            "paired_ratio": paired,
            "added_us": (t["edge"] - t["raw"]) * 1e6, "separate_interpreter_us": t_sep["separate"] * 1e6}


def predict_vs_run(path: pathlib.Path, threads: int, image: np.ndarray, calls: int, reps: int,
                   preprocess: Preprocess | None = None) -> dict[str, float]:
    model = load(path, delegate="xnnpack", num_threads=threads, preprocess=preprocess)
    x = model.prepare(image)
    t = interleaved({"run": lambda: model.run(x), "predict": lambda: model.predict(image),
                     "prepare": lambda: model.prepare(image)}, calls, reps)
    model.close()
    return {"run_us": t["run"] * 1e6, "predict_us": t["predict"] * 1e6, "prepare_us": t["prepare"] * 1e6,
            "ratio": t["predict"] / t["run"]}


def gpu_vs_cpu(path: pathlib.Path, threads: int, calls: int, reps: int) -> dict[str, object]:
    cpu = load(path, delegate="xnnpack", num_threads=threads)
    x = np.random.default_rng(0).integers(-128, 128, size=cpu.inputs[0].shape).astype(cpu.inputs[0].dtype) \
        if cpu.inputs[0].dtype in ("int8", "uint8") else \
        np.random.default_rng(0).uniform(-1, 1, size=cpu.inputs[0].shape).astype(np.float32)
    fns, result = {"xnnpack": lambda: cpu.run(x)}, {}
    ref = cpu.dequantize(cpu.run(x))[0]
    models = [cpu]
    for precision in ("fp16", "fp32"):
        try:
            t0 = time.perf_counter()
            g = load(path, delegate="gpu", precision=precision)
            init = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            out = g.dequantize(g.run(x))[0]
            first = (time.perf_counter() - t0) * 1e3
        except Exception as exc:  # noqa: BLE001 - report and go on
            result[f"gpu_{precision}"] = f"error: {exc}"
            continue
        models.append(g)
        fns[f"gpu_{precision}"] = (lambda m: (lambda: m.run(x)))(g)
        details = dict(g.delegate_report.details)
        result[f"gpu_{precision}_adapter"] = f"{details.get('adapter')} ({details.get('adapter_type')})"
        result[f"gpu_{precision}_nodes"] = f"{g.delegate_report.delegated_nodes}/{g.delegate_report.total_nodes}"
        result[f"gpu_{precision}_init_ms"] = round(init, 1)
        result[f"gpu_{precision}_first_ms"] = round(first, 2)
        result[f"gpu_{precision}_max_abs_diff_vs_cpu"] = float(np.abs(out - ref).max())
    t = interleaved(fns, calls, reps)
    for k, v in t.items():
        result[f"{k}_ms"] = round(v * 1e3, 4)
    for k in t:
        if k != "xnnpack":
            result[f"{k}_speedup_vs_xnnpack"] = round(t["xnnpack"] / t[k], 3)
    for m in models:
        m.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mobilenet", action="store_true", help="only the bundled 28x28 model")
    ap.add_argument("--gpu", action="store_true", help="also time delegate='gpu' against XNNPACK")
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        build_mobilenet()
        return
    results: dict[str, object] = {"threads": args.threads}
    img = real_images(1)[0]

    r = overhead(FASHION_INT8, args.threads, calls=2000, reps=15)
    results["fashion28_run_vs_interpreter"] = r
    print(f"28x28 int8, {args.threads} threads: Interpreter {r['raw_us']:.2f} us, EdgeModel.run {r['run_us']:.2f} us"
          f" -> ratio {r['ratio']:.3f} (paired {r['paired_ratio']:.3f}), {r['added_us']:+.2f} us per call "
          "(goal <= 25 us)")
    r = predict_vs_run(FASHION_INT8, args.threads, img, calls=500, reps=9)
    results["fashion28_predict_vs_run"] = r
    print(f"28x28 int8: predict {r['predict_us']:.1f} us vs run {r['run_us']:.1f} us -> {r['ratio']:.2f}x "
          f"(prepare alone {r['prepare_us']:.1f} us)")

    paths = {}
    if not args.no_mobilenet:
        paths = mobilenet_paths()
        r = overhead(paths["int8"], args.threads, calls=10, reps=41)
        results["mobilenetv2_int8_run_vs_interpreter"] = r
        print(f"MobileNetV2-224 int8, {args.threads} threads: Interpreter {r['raw_us'] / 1e3:.3f} ms, "
              f"EdgeModel.run {r['run_us'] / 1e3:.3f} ms -> ratio {r['ratio']:.4f} (paired {r['paired_ratio']:.4f}; "
              "goal <= 1.03)")
        frame = np.ascontiguousarray(np.tile(img, (18, 23, 1))[:480, :640])  # a 640x480 BGR frame
        r = predict_vs_run(paths["int8"], args.threads, frame, calls=20, reps=9)
        results["mobilenetv2_int8_predict_vs_run"] = r
        print(f"MobileNetV2-224 int8, 640x480 frame: predict {r['predict_us'] / 1e3:.3f} ms vs run "
              f"{r['run_us'] / 1e3:.3f} ms -> {r['ratio']:.3f}x (prepare alone {r['prepare_us'] / 1e3:.3f} ms)")
    if args.gpu:
        targets = {"fashion28_float": ROOT / "tests" / "data" / "fashion_float.tflite"}
        targets.update({f"mobilenetv2_{k}": v for k, v in paths.items()})
        for name, path in targets.items():
            r = gpu_vs_cpu(path, args.threads, calls=20 if "mobilenet" in name else 200, reps=7)
            results[f"gpu_{name}"] = r
            print(f"GPU {name}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    if args.json:
        dump_json(results, args.json)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
