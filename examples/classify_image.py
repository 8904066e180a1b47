"""Load the converted bundled model, see which delegate ran it, classify one real image.

    .venv/bin/python examples/classify_image.py [MODEL.tflite]   (default: the model `edgeq demo` wrote)
"""
import sys

import cv2

import edgeq

model = sys.argv[1] if len(sys.argv) > 1 else "edgeq-demo/fashion_mnist_int8.tflite"
with edgeq.load(model, delegate="auto", num_threads=2) as m:
    print(m.delegate_report.describe())
    image = cv2.imread("calibration_data/bag/train_06121.png")
    print(m.predict(image, top_k=3))
    x = m.prepare(image)
    raw = m.run([x])
    probs = m.dequantize(raw)
    print(x.dtype, x.shape, raw[0].dtype, probs[0].round(3))
