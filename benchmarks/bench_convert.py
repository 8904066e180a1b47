"""Conversion overhead of edgeq vs the bare TFLiteConverter, measured side by side in one run.

MobileNetV2-224 (random weights, real BatchNorm statistics) with 200 calibration images. Each
conversion runs in a fresh subprocess (so peak RSS is its own), alternating edgeq / bare.
Goal: edgeq time / bare time <= 1.10.

    python benchmarks/bench_convert.py [--rounds 2] [--alpha 1.0] [--samples 200]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CALIB = ROOT / "calibration_data"

CHILD = r"""
import json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
mode, model_path, out, samples = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = keras.models.load_model(model_path, compile=False)
import edgeq
from edgeq.convert.calibration import CalibrationDataset
from edgeq.preprocess import Preprocess
t0 = time.perf_counter()
if mode == "edgeq":
    edgeq.convert(model, %(calib)r, out, num_samples=samples, force=True,
                  preprocess_options={"value_range": "-1,1"})
else:
    import tempfile, tensorflow as tf
    pre = Preprocess(224, 224, color="RGB", mean=(127.5,), std=(127.5,))
    data = CalibrationDataset(%(calib)r, pre, num_samples=samples)   # the same images, same order
    def rep():
        for x in data:
            yield [x[None]]
    with tempfile.TemporaryDirectory() as d:
        model.export(d, verbose=False)
        c = tf.lite.TFLiteConverter.from_saved_model(d)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
        blob = c.convert()
    with open(out, "wb") as f:
        f.write(blob)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "size": os.path.getsize(out)}))
""" % {"calib": str(CALIB)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, str(ROOT))
    import zoo

    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "mnv2.keras")
        imgs = zoo.images_for(224, str(CALIB), count=32)
        zoo.build("MobileNetV2", 224, alpha=args.alpha, images=imgs).save(model_path)
        results: dict[str, list[dict]] = {"edgeq": [], "bare": []}
        for r in range(args.rounds):
            for mode in ("edgeq", "bare") if r % 2 == 0 else ("bare", "edgeq"):
                out = os.path.join(tmp, f"{mode}.tflite")
                proc = subprocess.run([sys.executable, "-c", CHILD, mode, model_path, out, str(args.samples)],
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{mode} conversion failed:\n{proc.stderr[-3000:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[mode].append(res)
                print(f"round {r + 1} {mode:5s}: {res['seconds']:6.2f} s  peak RSS {res['peak_rss_mb']:7.0f} MB  "
                      f"size {res['size'] / 1e6:.2f} MB", flush=True)
    e = statistics.median(x["seconds"] for x in results["edgeq"])
    b = statistics.median(x["seconds"] for x in results["bare"])
    em = max(x["peak_rss_mb"] for x in results["edgeq"])
    bm = max(x["peak_rss_mb"] for x in results["bare"])
    print(f"\nMobileNetV2-224 alpha={args.alpha}, {args.samples} calibration images, median of {args.rounds}:")
    print(f"  edgeq.convert      {e:6.2f} s   peak RSS {em:6.0f} MB")
    print(f"  bare TFLiteConverter {b:4.2f} s   peak RSS {bm:6.0f} MB")
    print(f"  time ratio edgeq/bare = {e / b:.3f}  (goal <= 1.10)   memory ratio = {em / bm:.3f}")


if __name__ == "__main__":
    main()
