"""Convert the bundled Fashion-MNIST model with every recipe and compare what comes out.

    .venv/bin/python examples/convert_bundled.py [OUT_DIR]
"""
import pathlib
import sys

import edgeq

ROOT = pathlib.Path(__file__).resolve().parent.parent
out_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "recipes")

for name, recipe in edgeq.RECIPES.items():
    calibration = ROOT / "calibration_data" if recipe.needs_calibration else None
    result = edgeq.convert(ROOT / "models" / "fashion_mnist_dsconv.keras", calibration,
                           out_dir / f"fashion_mnist_{name}.tflite", recipe=name, force=True,
                           labels=ROOT / "models" / "fashion_mnist.labels.txt")
    r = result.report
    print(f"{name:8s} {r.size_bytes / 1024:7.1f} KiB  full integer: {str(r.full_integer):5s}  "
          f"input {r.inputs[0].dtype:7s} output {r.outputs[0].dtype:7s}  {result.seconds:5.1f} s")
