"""Reference Keras application models built offline (no weight downloads) for tests and benchmarks.

Models built with ``weights=None`` have degenerate BatchNorm statistics (near-zero logits) which
break some int8 kernels and make output comparisons meaningless. ``with_real_batchnorm`` gives
them statistics of real images: momentum 0 and one forward pass in training mode.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeq.errors import UsageError

ARCHITECTURES = ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0")


def images_for(size: int, source: str, count: int = 32, seed: int = 0) -> np.ndarray:
    """Real images from an image folder/video as float RGB batch [N,size,size,3] in [-1, 1]."""
    from edgeq.convert.calibration import CalibrationDataset
    from edgeq.preprocess import Preprocess

    pre = Preprocess(height=size, width=size, color="RGB", mean=(127.5,), std=(127.5,))
    ds = CalibrationDataset(source, pre, num_samples=count, seed=seed)
    batch = np.stack(list(ds))
    return batch


def with_real_batchnorm(model: Any, images: np.ndarray) -> Any:
    """Set every BatchNormalization layer's moving statistics from one pass over real images."""
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(images, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m
    return model


def build(name: str, size: int = 224, *, alpha: float = 1.0, classes: int = 1000,
          images: np.ndarray | None = None, seed: int = 0) -> Any:
    """A Keras application architecture, randomly initialised, BatchNorm stats from `images`.

    Preprocessing is left out of the graph (inputs in [-1, 1]) so edgeq's contract owns it.
    """
    import keras

    if name not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}")
    keras.utils.set_random_seed(seed)
    shape = (size, size, 3)
    if name == "MobileNetV2":
        model = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, weights=None, classes=classes)
    elif name.startswith("MobileNetV3"):
        cls = getattr(keras.applications, name)
        model = cls(input_shape=shape, alpha=alpha, weights=None, classes=classes,
                    include_preprocessing=False)
    else:
        model = keras.applications.EfficientNetB0(input_shape=shape, weights=None, classes=classes)
    if images is not None:
        with_real_batchnorm(model, images)
    return model
