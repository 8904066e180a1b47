"""Float .tflite (MediaPipe) -> full int8 with `edgeq convert`: raw-output agreement and latency (README table).

Run from the repository root after .ci/setup (MediaPipe's models in .data/mediapipe, vtest.avi in .data):

    python benchmarks/bench_formats.py [--out build/formats] [--models face_detection_short_range,...]

Each model is quantized by the CLI, calibrated on 200 frames of vtest.avi; agreement is measured with
`edgeq eval FLOAT INT8 --data FRAMES` on held-out images (every 20th vtest frame from frame 10, and
scikit-image's bundled colour photos: astronaut, coffee, chelsea, rocket, cat, immunohistochemistry,
motorcycle — public domain / CC0 / BSD, see scikit-image's data licences), and latency with `edgeq bench`
(XNNPACK, 2 threads, 200 runs, median). Prints the markdown rows and the exact commands.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import cv2

ROOT = pathlib.Path(__file__).resolve().parents[1]
MP = ROOT / ".data" / "mediapipe" / "modules"
# model -> value range MediaPipe's graphs feed it (ImageToTensorCalculator's output_tensor_float_range)
MODELS = {
    "face_detection/face_detection_short_range": "-1,1",
    "face_detection/face_detection_full_range_sparse": "-1,1",
    "palm_detection/palm_detection_lite": "0,1",
    "palm_detection/palm_detection_full": "0,1",
    "face_landmark/face_landmark": "0,1",
    "hand_landmark/hand_landmark_lite": "0,1",
    "pose_detection/pose_detection": "-1,1",
    "selfie_segmentation/selfie_segmentation": "0,1",   # custom op: expected to be refused, said why
}


def write_eval_frames(folder: pathlib.Path) -> pathlib.Path:
    """Held-out real images: vtest frames 10, 30, ... and scikit-image's bundled colour photos."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(ROOT / ".data" / "vtest.avi"))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 20 == 10:
            cv2.imwrite(str(folder / f"vtest_{i:04d}.png"), frame)
        i += 1
    from skimage import data

    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry"):
        cv2.imwrite(str(folder / f"skimage_{name}.png"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    left, _, _ = data.stereo_motorcycle()
    cv2.imwrite(str(folder / "skimage_motorcycle.png"), cv2.cvtColor(left, cv2.COLOR_RGB2BGR))
    return folder


def edgeq(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgeq.cli", *args]
    print("$ edgeq " + " ".join(args), file=sys.stderr)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def median_ms(bench_json: pathlib.Path) -> float:
    rows = json.loads(bench_json.read_text())
    row = rows[0] if isinstance(rows, list) else rows.get("results", [rows])[0]
    return float(row["latency_ms"]["p50"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/formats")
    ap.add_argument("--models", default=",".join(m.split("/")[1] for m in MODELS))
    ap.add_argument("--recipe", default="int8")
    args = ap.parse_args()
    out = ROOT / args.out
    frames = write_eval_frames(out / "eval_frames")
    for rel, value_range in MODELS.items():
        name = rel.split("/")[1]
        if name not in args.models.split(","):
            continue
        src, q = MP / f"{rel}.tflite", out / f"{name}_{args.recipe}.tflite"
        r = edgeq("convert", str(src), "-c", ".data/vtest.avi", "-o", str(q), "--range", value_range,
                  "--recipe", args.recipe, "--task", "other", "--force")
        if r.returncode:
            print(f"| {name} | refused: {r.stderr.strip().splitlines()[-1]} |")
            continue
        ev = out / f"{name}_{args.recipe}.eval.json"
        edgeq("eval", str(src), str(q), "--data", str(frames), "--threads", "2", "--json", str(ev))
        comp = json.loads(ev.read_text())["comparisons"][0]
        agree = ", ".join(f"{o['name']} {o['cosine']:.4f} / {o['sqnr_db']:.1f} dB" for o in comp["outputs"])
        lat = []
        for m in (src, q):
            bj = out / f"{m.stem}.bench.json"
            edgeq("bench", str(m), "--threads", "2", "--runs", "200", "--json", str(bj))
            lat.append(median_ms(bj))
        print(f"| {name} | {src.stat().st_size / 1024:.0f} KiB | {q.stat().st_size / 1024:.0f} KiB | {agree} | "
              f"{lat[0]:.2f} | {lat[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
