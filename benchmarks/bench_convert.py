"""Conversion time of edgeq, before/after fast calibration and vs the bare TFLiteConverter, side by side.

MobileNetV2-224 (random weights, real BatchNorm statistics) or the bundled Fashion-MNIST model, 200
calibration images. Each conversion runs in a fresh subprocess (so peak RSS is its own), the modes
alternating round by round:

- ``edgeq``        edgeq.convert as shipped: calibration through XNNPACK (edgeq/convert/fastcal.py);
- ``edgeq-tflite`` edgeq.convert with EDGEQ_CALIBRATOR=tflite: TensorFlow Lite's calibrator (before);
- ``bare``         the bare TFLiteConverter (SavedModel export + convert), what a user writes by hand;
- ``ort``          (--peer) ONNX Runtime: tf2onnx export + quantize_static (QDQ, MinMax, U8S8 reduce-range,
                   per-channel), the fastest peer converter of issue 13 (needs tf2onnx and onnxruntime).

With --profile each run also times its stages (model export, float conversion, calibration, quantize,
edgeq's checks/metadata/write...) and the table shows them side by side. The model is loaded before
the clock starts (the TensorFlow import and the .keras load are not conversion). The int8 models of
the modes are compared: max relative scale difference and zero-point difference of every tensor.

    python benchmarks/bench_convert.py [--model mobilenetv2|bundled] [--rounds 2] [--samples 200] [--profile] [--peer]
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
BUNDLED = ROOT / "models" / "fashion_mnist_dsconv.keras"
BASE_MODES = ("edgeq", "edgeq-tflite", "bare")

CHILD = r"""
import functools, json, os, resource, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
mode, model_path, out, samples, profile = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
if mode == "edgeq-tflite":
    os.environ["EDGEQ_CALIBRATOR"] = "tflite"
import keras, numpy as np, tensorflow as tf
from tensorflow.lite.python import lite, convert as tfconv
from tensorflow.lite.python.optimize import calibrator
import edgeq
from edgeq.convert import calibration, converter, fastcal, frozen
from edgeq.convert.calibration import CalibrationDataset
from edgeq.preprocess import Preprocess
STAGES = {}
def timed(owner, name, label):
    f = getattr(owner, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            STAGES[label] = STAGES.get(label, 0.0) + time.perf_counter() - t
    setattr(owner, name, g)
if profile:
    timed(keras.Model, "export", "SavedModel export")
    timed(lite, "_convert_saved_model", "float conversion (MLIR)")
    timed(lite, "_convert_graphdef", "float conversion (MLIR)")
    timed(frozen, "frozen_converter", "trace + freeze (frozen route)")
    timed(frozen, "matches_keras", "frozen route check")
    timed(calibrator.Calibrator, "calibrate", "TFLite calibrator")
    timed(fastcal, "record_ranges", "XNNPACK ranges")
    timed(lite, "_mlir_quantize", "mlir quantize")
    timed(tfconv, "mlir_quantize", "mlir quantize")
    timed(calibration.CalibrationDataset, "_to_tensor", "data: preprocess")
    timed(calibration, "read_image", "data: decode")
    timed(converter, "finish_conversion", "edgeq checks/metadata/write")
model = keras.models.load_model(model_path, compile=False)
size = model.input_shape[1]
opts = {"value_range": "-1,1"} if size == 224 else None
t0 = time.perf_counter()
if mode == "ort":  # the peer: tf2onnx export + ONNX Runtime quantize_static (QDQ, MinMax, U8S8 reduce-range)
    import tempfile, tf2onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from edgeq.convert.source import infer_preprocess
    pre = (Preprocess(224, 224, color="RGB", mean=(127.5,), std=(127.5,)) if size == 224
           else infer_preprocess(model, "keras_model", None, {})[0])
    data = CalibrationDataset(%(calib)r, pre, num_samples=samples)
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)
        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x[None]}
    with tempfile.TemporaryDirectory() as d:
        f32 = os.path.join(d, "float.onnx")
        spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=f32)
        quantize_static(f32, out, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax)
elif mode.startswith("edgeq"):
    edgeq.convert(model, %(calib)r, out, num_samples=samples, force=True, preprocess_options=opts)
else:
    import tempfile
    from edgeq.convert.source import infer_preprocess
    pre = (Preprocess(224, 224, color="RGB", mean=(127.5,), std=(127.5,)) if size == 224
           else infer_preprocess(model, "keras_model", None, {})[0])
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
                  "size": os.path.getsize(out), "stages": STAGES}))
""" % {"calib": str(CALIB)}


def compare_models(a: str, b: str) -> tuple[float, int]:
    """(max relative scale difference, max zero-point difference) over the quantized tensors of a and b."""
    import numpy as np

    from edgeq.metadata import unpack_model

    ta = unpack_model(pathlib.Path(a).read_bytes()).subgraphs[0].tensors
    tb = unpack_model(pathlib.Path(b).read_bytes()).subgraphs[0].tensors
    if len(ta) != len(tb):
        return float("inf"), -1
    scale, zp = 0.0, 0
    for x, y in zip(ta, tb):
        qa, qb = x.quantization, y.quantization
        if qa is None or qa.scale is None or qb is None or qb.scale is None:
            continue
        scale = max(scale, float(np.max(np.abs(qa.scale - qb.scale) / np.maximum(np.abs(qa.scale), 1e-30))))
        zp = max(zp, int(np.max(np.abs(qa.zeroPoint.astype(np.int64) - qb.zeroPoint.astype(np.int64)))))
    return scale, zp


def build_model(tmp: str, which: str, env: dict[str, str]) -> str:
    """The model file; MobileNetV2 is built in its own process, so this one stays small (a child's peak
    RSS starts from its parent's)."""
    if which == "bundled":
        return str(BUNDLED)
    path = os.path.join(tmp, "mnv2.keras")
    code = ("import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; sys.path.insert(0, sys.argv[1]); import zoo; "
            "zoo.build('MobileNetV2', 224, images=zoo.images_for(224, sys.argv[2], count=32)).save(sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks"), str(CALIB), path], check=True, env=env,
                   capture_output=True)
    return path


def print_table(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    modes = tuple(results)
    med = {m: statistics.median(x["seconds"] for x in results[m]) for m in modes}
    rss = {m: max(x["peak_rss_mb"] for x in results[m]) for m in modes}
    print(f"\n{args.model}, {args.samples} calibration images, median of {args.rounds} fresh-process run(s):")
    print(f"  {'stage':32s}" + "".join(f"{m:>14s}" for m in modes))
    if args.profile:
        stages = sorted({s for m in modes for x in results[m] for s in x["stages"]})
        for s in stages:
            row = [statistics.median(x["stages"].get(s, 0.0) for x in results[m]) for m in modes]
            print(f"  {s:32s}" + "".join(f"{v:13.2f}s" for v in row))
    print(f"  {'TOTAL (model already loaded)':32s}" + "".join(f"{med[m]:13.2f}s" for m in modes))
    print(f"  {'peak RSS':32s}" + "".join(f"{rss[m]:12.0f}MB" for m in modes))
    print(f"\n  after/before  edgeq / edgeq-tflite = {med['edgeq'] / med['edgeq-tflite']:.3f}"
          f"   ({med['edgeq-tflite'] / med['edgeq']:.2f}x faster)")
    print(f"  edgeq / bare TFLiteConverter      = {med['edgeq'] / med['bare']:.3f}   (goal <= 1.10)")
    print(f"  memory ratio edgeq / bare         = {rss['edgeq'] / rss['bare']:.3f}")
    if "ort" in med:
        print(f"  edgeq / ONNX Runtime quantize_static = {med['edgeq'] / med['ort']:.3f}   (issue 13 goal <= 1.00)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mobilenetv2", "bundled"), default="mobilenetv2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="time each stage of each conversion")
    ap.add_argument("--peer", action="store_true", help="also ONNX Runtime's quantize_static (tf2onnx export)")
    args = ap.parse_args()
    modes = BASE_MODES + (("ort",) if args.peer else ())
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, str(ROOT))
    env = {k: v for k, v in os.environ.items() if k != "EDGEQ_CALIBRATOR"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as tmp:
        model_path = build_model(tmp, args.model, env)
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                out = os.path.join(tmp, f"{mode}.tflite")
                proc = subprocess.run([sys.executable, "-c", CHILD, mode, model_path, out, str(args.samples),
                                       "1" if args.profile else "0"], capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(f"{mode} conversion failed:\n{proc.stderr[-3000:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[mode].append(res)
                print(f"round {r + 1} {mode:12s}: {res['seconds']:6.2f} s  peak RSS {res['peak_rss_mb']:7.0f} MB  "
                      f"size {res['size'] / 1e6:.2f} MB", flush=True)
        print_table(results, args)
        for other in ("edgeq-tflite", "bare"):  # (an ONNX model has no TFLite scales to compare)
            scale, zp = compare_models(os.path.join(tmp, "edgeq.tflite"), os.path.join(tmp, f"{other}.tflite"))
            print(f"  int8 model edgeq vs {other:12s}: max relative scale difference {scale:.2e}, "
                  f"max zero-point difference {zp}")


if __name__ == "__main__":
    main()
