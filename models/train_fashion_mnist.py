"""Train the bundled Fashion-MNIST classifier and export the calibration images.

Real data only: the IDX files of Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``). Deterministic given --seed.

    python models/train_fashion_mnist.py            # writes models/fashion_mnist_dsconv.keras
    python models/train_fashion_mnist.py --export-calibration calibration_data
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeq.datasets import FASHION_MNIST_LABELS, fashion_mnist_tensors, load_fashion_mnist  # noqa: E402


def build_model(seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def ds_block(x, filters, stride):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU(6.0)(x)

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(24, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU(6.0)(x)
    x = ds_block(x, 48, 2)
    x = ds_block(x, 96, 2)
    x = ds_block(x, 128, 1)
    x = ds_block(x, 128, 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fashion_mnist_dsconv")


def export_calibration(out_dir: pathlib.Path, per_class: int, seed: int) -> int:
    from PIL import Image

    images, labels = load_fashion_mnist("train")
    rng = np.random.default_rng(seed)
    count = 0
    for cls, name in enumerate(FASHION_MNIST_LABELS):
        idx = np.flatnonzero(labels == cls)
        chosen = np.sort(rng.choice(idx, per_class, replace=False))
        folder = out_dir / name.replace("/", "-").replace(" ", "_").lower()
        folder.mkdir(parents=True, exist_ok=True)
        for i in chosen:
            Image.fromarray(images[i]).save(folder / f"train_{i:05d}.png", optimize=True)
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", default=str(HERE / "fashion_mnist_dsconv.keras"))
    ap.add_argument("--export-calibration", metavar="DIR")
    ap.add_argument("--per-class", type=int, default=30)
    args = ap.parse_args()

    if args.export_calibration:
        n = export_calibration(pathlib.Path(args.export_calibration), args.per_class, args.seed)
        print(f"wrote {n} calibration images to {args.export_calibration}")
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    x_train, y_train = fashion_mnist_tensors("train")
    x_test, y_test = fashion_mnist_tensors("t10k")

    model = build_model(args.seed)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs,
              validation_split=0.05, verbose=2)
    _, acc = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    model.save(args.output)
    info = {"float_test_top1": round(float(acc) * 100, 2), "params": int(model.count_params()),
            "epochs": args.epochs, "seed": args.seed}
    pathlib.Path(args.output).with_suffix(".train.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
