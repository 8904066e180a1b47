"""Train the "hard case" Fashion-MNIST model: one that full int8 quantization visibly hurts.

Real data only (Debian's ``dataset-fashion-mnist``). The network is a small hard-swish CNN with a
MobileNetV2-style *linear bottleneck* (a 1x1 convolution with no activation). After training, one
channel of that bottleneck is scaled up by ``--outlier-scale`` and the next convolution's weights
for that channel are scaled down by the same factor. That rescaling is exact in float (the model
computes the same function), but it gives the bottleneck tensor one outlier channel, the pattern
large trained networks show naturally ("outlier channels"): with one int8 scale per activation
tensor, the outlier takes the range and the other channels lose most of their resolution.

    .venv/bin/python models/hard_case/train_hard_case.py     # ~2-3 min on 2 cores

writes models/hard_case/hard_case.keras and hard_case.train.json (float top-1 on the 10k test set).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from edgeq.datasets import fashion_mnist_tensors  # noqa: E402

BOTTLENECK = "bottleneck"      # the linear 1x1 conv whose output gets the outlier channel
CONSUMER = "expand"            # the conv that reads it (its weights absorb the rescale)


def build_model(seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="hard_silu", name="stem")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="hard_silu", name="conv2")(x)
    x = layers.Conv2D(16, 1, name=BOTTLENECK)(x)                       # linear bottleneck
    x = layers.Conv2D(64, 3, padding="same", activation="hard_silu", name=CONSUMER)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="hard_case")


def inject_outlier_channel(model, scale: float, channel: int = 0) -> None:
    """Scale one bottleneck channel by `scale` and undo it in the consumer: same function in float."""
    kb, bb = model.get_layer(BOTTLENECK).get_weights()
    kb[..., channel] *= scale
    bb[channel] *= scale
    model.get_layer(BOTTLENECK).set_weights([kb, bb])
    kc, bc = model.get_layer(CONSUMER).get_weights()
    kc[:, :, channel, :] /= scale
    model.get_layer(CONSUMER).set_weights([kc, bc])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--outlier-scale", type=float, default=30.0)
    ap.add_argument("--output", default=str(HERE / "hard_case.keras"))
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    x_train, y_train = fashion_mnist_tensors("train")
    x_test, y_test = fashion_mnist_tensors("t10k")

    model = build_model(args.seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2)
    _, acc_before = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    inject_outlier_channel(model, args.outlier_scale)
    _, acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    model.save(args.output)
    info = {"float_test_top1": round(float(acc) * 100, 2),
            "float_test_top1_before_rescale": round(float(acc_before) * 100, 2),
            "params": int(model.count_params()), "epochs": args.epochs, "seed": args.seed,
            "outlier_scale": args.outlier_scale, "outlier_tensor": BOTTLENECK}
    pathlib.Path(args.output).with_suffix(".train.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
