"""Load a model with the delegate you choose, see what really ran it, classify real images, time it.

    python examples/run_with_delegate.py MODEL.tflite [--delegate xnnpack|cpu|cpu-ref|gpu|edgetpu|auto]
                                         [--threads N] [--option KEY=VALUE ...]

edgeq never falls back silently: an unavailable delegate is an error that says why (DelegateUnavailableError).
"""
import argparse
import pathlib
import time

import cv2

import edgeq

ROOT = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("model")
ap.add_argument("--delegate", default="xnnpack")
ap.add_argument("--threads", type=int, default=None)
ap.add_argument("--option", action="append", default=[], help="delegate option KEY=VALUE, e.g. device=usb")
args = ap.parse_args()
options = dict(o.split("=", 1) for o in args.option)


def letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalpha())  # "T-shirt/top" ~ folder "t-shirt-top"


with edgeq.load(args.model, delegate=args.delegate, num_threads=args.threads, **options) as m:
    print(m.delegate_report.describe())
    correct = total = 0
    for folder in sorted((ROOT / "calibration_data").iterdir()):
        for path in sorted(folder.glob("*.png"))[:3]:
            top = m.predict(cv2.imread(str(path)), top_k=1)[0]
            correct += letters(top.label) == letters(folder.name)
            total += 1
    print(f"{correct}/{total} bundled images classified as their folder's class")
    x = m.prepare(cv2.imread(str(path)))
    t0 = time.perf_counter()
    for _ in range(200):
        m.run([x])
    print(f"{(time.perf_counter() - t0) / 200 * 1e3:.3f} ms per inference ({m.delegate_report.delegate})")
