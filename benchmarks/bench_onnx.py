"""ONNX (NCHW) -> full int8 with `edgeq convert`, against the Keras path for the same network (README table).

    python benchmarks/bench_onnx.py [--out build/onnx] [--arch MobileNetV2]

The network is a Keras application (benchmarks/zoo.py: random weights, BatchNorm statistics from real
vtest frames; logits output), exported to ONNX with an NCHW input by tf2onnx (as a PyTorch export would be); both the
.keras and the .onnx file are converted by `edgeq convert -c .data/vtest.avi --range -1,1`, and each int8
model is compared with the float Keras model by `edgeq eval` on held-out real images (bench_formats.py's
folder: vtest frames and scikit-image photos).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import tensorflow as tf
    import tf2onnx
    import zoo
    from bench_formats import write_eval_frames

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/onnx")
    ap.add_argument("--arch", default="MobileNetV2")
    ap.add_argument("--size", type=int, default=160)
    args = ap.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    frames = write_eval_frames(out / "eval_frames")
    model = zoo.build(args.arch, args.size, images=zoo.images_for(args.size, str(ROOT / ".data" / "vtest.avi")))
    # logits, not softmax: random-weight softmax outputs are ~1/1000 each, below one int8 step, and would
    # measure the output quantization instead of the network
    import keras

    model.layers[-1].activation = keras.activations.linear
    keras_path, onnx_path = out / f"{args.arch}.keras", out / f"{args.arch}_nchw.onnx"
    model.save(keras_path)
    spec = (tf.TensorSpec((1, args.size, args.size, 3), tf.float32, name="images"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, inputs_as_nchw=["images"],
                               output_path=str(onnx_path))
    rows = []
    for src in (keras_path, onnx_path):
        q = out / f"{src.stem}_int8.tflite"
        cmd = ["convert", str(src), "-c", ".data/vtest.avi", "-o", str(q), "--range", "-1,1", "--force"]
        print("$ edgeq " + " ".join(cmd), file=sys.stderr)
        subprocess.run([sys.executable, "-m", "edgeq.cli", *cmd], check=True, cwd=ROOT, capture_output=True)
        ev = out / f"{src.stem}.eval.json"
        cmd = ["eval", str(keras_path), str(q), "--data", str(frames), "--threads", "2", "--json", str(ev)]
        print("$ edgeq " + " ".join(cmd), file=sys.stderr)
        subprocess.run([sys.executable, "-m", "edgeq.cli", *cmd], check=True, cwd=ROOT, capture_output=True)
        c = json.loads(ev.read_text())["comparisons"][0]
        rows.append(f"| {args.arch} {args.size} | {src.suffix[1:]} | {q.stat().st_size / 1024:.0f} KiB | "
                    f"{c['agreement']:.1f} | {c['cosine']:.4f} | {c['sqnr_db']:.1f} |")
    print("\n".join(rows))
    print(face_roundtrip(out, frames))


def face_roundtrip(out: pathlib.Path, frames: pathlib.Path) -> str:
    """Trained weights: MediaPipe's face detector (edgeq's exact pre-pass) -> tf2onnx NCHW -> edgeq convert;
    int8 raw outputs vs ONNX Runtime running the float ONNX on the held-out images."""
    import cv2
    import numpy as np
    import onnxruntime as ort
    import tf2onnx

    import edgeq
    from edgeq.convert.tflite_source import read_float_tflite

    src = ROOT / ".data/mediapipe/modules/face_detection/face_detection_short_range.tflite"
    flat, onnx_path, q = out / "face_float.tflite", out / "face_nchw.onnx", out / "face_nchw_int8.tflite"
    flat.write_bytes(read_float_tflite(src).model)
    tf2onnx.convert.from_tflite(str(flat), inputs_as_nchw=["input"], opset=17, output_path=str(onnx_path))
    cmd = ["convert", str(onnx_path), "-c", ".data/vtest.avi", "-o", str(q), "--range", "-1,1", "--force"]
    print("$ edgeq " + " ".join(cmd), file=sys.stderr)
    subprocess.run([sys.executable, "-m", "edgeq.cli", *cmd], check=True, cwd=ROOT, capture_output=True)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = edgeq.load(q)
    ref: dict = {}
    got: dict = {}
    for f in sorted(frames.iterdir()):
        img = cv2.imread(str(f))
        x = model.metadata.preprocess.apply(img)[None].transpose(0, 3, 1, 2)
        for y in sess.run(None, {"input": x}):
            ref.setdefault(y.shape, []).append(y.ravel().astype(np.float64))
        for y in model.dequantize(model.run(model.prepare(img))):
            got.setdefault(y.shape, []).append(y.ravel().astype(np.float64))
    parts = []
    for shape in sorted(ref):
        a, b = np.concatenate(ref[shape]), np.concatenate(got[shape])
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        parts.append(f"{list(shape)} cosine {cos:.4f} / SQNR {10 * np.log10((a @ a) / ((a - b) @ (a - b))):.1f} dB")
    return f"| face_detection_short_range (trained) | onnx NCHW | {q.stat().st_size / 1024:.0f} KiB | " + \
        ", ".join(parts) + " |"


if __name__ == "__main__":
    main()
