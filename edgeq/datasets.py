"""Readers for the real datasets edgeq is tested on (no downloads, ever).

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package as gzip'd IDX files.
"""
from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from .errors import DataError

FASHION_MNIST_DIR = pathlib.Path(os.environ.get("EDGEQ_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip'd) into an array, validating its header."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header says {dims} ({expected} bytes) but the file holds "
                        f"{len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def fashion_mnist_available(root: pathlib.Path = FASHION_MNIST_DIR) -> bool:
    return (root / "t10k-images-idx3-ubyte.gz").is_file()


def load_fashion_mnist(split: str = "t10k", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels uint8 [N]) for split 'train' or 't10k'."""
    if split not in ("train", "t10k"):
        raise DataError(f"unknown Fashion-MNIST split {split!r}; expected 'train' or 't10k'")
    base = pathlib.Path(root) if root is not None else FASHION_MNIST_DIR
    if not fashion_mnist_available(base) and not (base / f"{split}-images-idx3-ubyte.gz").is_file():
        raise DataError(f"Fashion-MNIST not found in {base}; install Debian's dataset-fashion-mnist "
                        "package (apt-get install dataset-fashion-mnist) or set EDGEQ_FASHION_MNIST")
    images = read_idx(base / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(base / f"{split}-labels-idx1-ubyte.gz")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{base}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def fashion_mnist_tensors(split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """(float32 [N,28,28,1] in [0,1], labels): the input contract of the bundled models, for training."""
    images, labels = load_fashion_mnist(split)
    return images[..., None].astype(np.float32) / 255.0, labels
