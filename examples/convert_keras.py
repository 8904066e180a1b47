"""Convert a Keras model to full int8 (and its float32 reference) with real calibration images.

    python examples/convert_keras.py [OUT_DIR] [--num-samples N]

Defaults: the bundled Fashion-MNIST model, the 300 bundled calibration images, OUT_DIR=build/example.
"""
import argparse
import pathlib

import edgeq

ROOT = pathlib.Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("out_dir", nargs="?", default=str(ROOT / "build" / "example"))
ap.add_argument("--model", default=str(ROOT / "models" / "fashion_mnist_dsconv.keras"))
ap.add_argument("--num-samples", type=int, default=200)
args = ap.parse_args()

out = pathlib.Path(args.out_dir)
for recipe in ("int8", "float32"):
    result = edgeq.convert(args.model, ROOT / "calibration_data" if recipe == "int8" else None,
                           out / f"model_{recipe}.tflite", recipe=recipe, num_samples=args.num_samples,
                           labels=ROOT / "models" / "fashion_mnist.labels.txt", force=True)
    print(f"{recipe:8s} {result.output}: {result.size_bytes / 1024:.1f} KiB, full integer: "
          f"{result.report.full_integer}, input {result.report.inputs[0].dtype}, {result.seconds:.1f} s")
    for warning in result.warnings:
        print("  warning:", warning)
