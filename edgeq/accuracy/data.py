"""Evaluation data: images with (optional) class labels, read from the formats people have.

Sources: a folder with one subfolder per class, a CSV or JSON list of (path, label), IDX files
(Fashion-MNIST style: an ``*-images-idx3-ubyte[.gz]`` file with its ``*-labels-idx1-ubyte``
sibling, or a folder holding ``t10k-*`` files), or unlabelled images (a flat folder, a glob, an
.npy/.npz array) for agreement-only evaluation. Images stay raw (uint8, OpenCV colour order for
decoded files); the model's ``Preprocess`` is applied later, by the evaluator, for every model alike.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..convert.calibration import CalibrationDataset, read_image
from ..datasets import read_idx
from ..errors import DataError
from ..images import IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Raw images plus integer labels (or None: unlabelled) and the class names the labels refer to."""

    source: str
    kind: str
    items: tuple[Any, ...] | np.ndarray    # file paths, or an array of images
    labels: np.ndarray | None              # int64 class indices, aligned with items
    class_names: tuple[str, ...] = ()      # names of label indices as given by the data (may be empty)
    input_color: str = "BGR"               # colour order of the raw images (IDX/arrays: RGB or gray)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def images(self) -> Iterator[tuple[int, np.ndarray]]:
        """(index, raw image); unreadable files raise DataError naming the file (no silent skips)."""
        for i, item in enumerate(self.items):
            if isinstance(item, str):
                img = read_image(item)
                if img is None:
                    raise DataError(f"evaluation image {item} cannot be read (corrupt or not an image)")
                yield i, img
            else:
                yield i, np.asarray(item)

    def subset(self, n: int | None, seed: int = 0) -> EvalData:
        """A deterministic, class-balanced-by-chance random subset of at most n samples."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"--limit must be positive, got {n}")
        idx = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        items = self.items[idx] if isinstance(self.items, np.ndarray) else tuple(self.items[i] for i in idx)
        labels = self.labels[idx] if self.labels is not None else None
        return dataclasses.replace(self, items=items, labels=labels)

    def with_model_classes(self, model_labels: Sequence[str], num_classes: int) -> EvalData:
        """Map the data's labels onto the model's class indices, or explain why they don't fit."""
        if self.labels is None:
            return self
        labels, names = self.labels, self.class_names
        if names and all(n.isdigit() for n in names):  # folders/lists named "0".."9": the names are indices
            labels, names = np.array([int(n) for n in names], np.int64)[labels], ()
        if names and model_labels:
            wanted = {_norm(n): i for i, n in enumerate(model_labels)}
            missing = [n for n in names if _norm(n) not in wanted]
            if missing:
                raise DataError(f"labels in {self.source} do not match the model's classes: {missing[:5]} "
                                f"are not among the model's labels ({', '.join(model_labels[:12])})")
            table = np.array([wanted[_norm(n)] for n in names], np.int64)
            labels, names = table[labels], tuple(model_labels)
        elif names and len(names) != num_classes:
            raise DataError(f"{self.source} has {len(names)} classes ({', '.join(names[:10])}) "
                            f"but the model outputs {num_classes}; and the model has no embedded labels to match "
                            "them by name (convert it with --labels, or give integer labels)")
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise DataError(f"labels in {self.source} do not match the model's classes: label {int(bad[0])} is "
                            f"outside 0..{num_classes - 1} ({num_classes} outputs)")
        return dataclasses.replace(self, labels=labels, class_names=names)

    def name_order_warning(self, model_labels: Sequence[str]) -> str | None:
        """The fallback `with_model_classes` takes when class names cannot be matched by name, said aloud."""
        if self.labels is None or model_labels or not self.class_names or all(n.isdigit() for n in self.class_names):
            return None
        return (f"no model embeds class names: the {len(self.class_names)} classes of {self.source} are taken as "
                "output indices in sorted name order (Keras' image_dataset_from_directory convention); if the "
                "model was trained in another order the accuracy is wrong: convert it with --labels")


def _norm(name: str) -> str:
    """Class-name key that matches 'T-shirt/top', 't-shirt-top' and 'T_shirt top' alike."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def read_eval_data(source: str | os.PathLike | np.ndarray | EvalData, labels: np.ndarray | None = None) -> EvalData:
    """Open any supported evaluation source (see module docstring)."""
    if isinstance(source, EvalData):
        return source
    if isinstance(source, np.ndarray):
        return _from_arrays("<array>", source, labels)
    text = str(source)
    path = pathlib.Path(text)
    if not path.exists():
        if any(ch in text for ch in "*?["):
            return _unlabelled(text)
        raise DataError(f"evaluation data not found: {path}; expected a class-folder tree, a CSV/JSON list of "
                        "(path,label), IDX files or an image folder")
    if path.is_dir():
        idx = _idx_pair_in_dir(path)
        if idx is not None:
            return _from_idx(*idx)
        return _from_folder(path)
    name = path.name.lower()
    if "idx" in name and "ubyte" in name:
        return _from_idx(path, _idx_labels_for(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _from_table(path, _read_csv(path))
    if suffix == ".json":
        return _from_table(path, _read_json(path))
    return _unlabelled(text)


# ---- formats -------------------------------------------------------------------------------------
def _idx_pair_in_dir(path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path] | None:
    for prefix in ("t10k", "test", "train"):
        for ext in (".gz", ""):
            img = path / f"{prefix}-images-idx3-ubyte{ext}"
            if img.is_file():
                return img, _idx_labels_for(img)
    return None


def _idx_labels_for(images: pathlib.Path) -> pathlib.Path:
    name = images.name
    if "images-idx3" not in name:
        raise DataError(f"{images}: give the images IDX file (*-images-idx3-ubyte[.gz]); its labels file "
                        "*-labels-idx1-ubyte[.gz] is found beside it")
    lab = images.with_name(name.replace("images-idx3", "labels-idx1"))
    if not lab.is_file():
        raise DataError(f"IDX labels file {lab} not found beside {images}")
    return lab


def _from_idx(images_path: pathlib.Path, labels_path: pathlib.Path) -> EvalData:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{images_path}: expected N images (NxHxW or NxHxWxC), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for {len(images)} images "
                        f"in {images_path}")
    return EvalData(str(images_path), "idx", images, labels.astype(np.int64), (), "RGB")


def _from_arrays(source: str, images: np.ndarray, labels: np.ndarray | None) -> EvalData:
    if images.ndim not in (3, 4):
        raise DataError(f"{source}: expected N images (NxHxW or NxHxWxC), got shape {images.shape}")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise DataError(f"{source}: {len(labels)} labels for {len(images)} images")
    return EvalData(source, "array", images, labels, (), "RGB")


def _from_folder(path: pathlib.Path) -> EvalData:
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    if not subdirs:
        return _unlabelled(str(path))
    files: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    for d in subdirs:
        imgs = sorted(str(p) for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not imgs:
            continue
        names.append(d.name)
        files.extend(imgs)
        labels.extend([len(names) - 1] * len(imgs))
    if not files:
        raise DataError(f"evaluation folder {path} has class subfolders but no images ({', '.join(IMAGE_SUFFIXES)})")
    return EvalData(str(path), "folder", tuple(files), np.array(labels, np.int64), tuple(names))


def _unlabelled(source: str) -> EvalData:
    """Images without labels: agreement-only evaluation (reuses the calibration source discovery)."""
    try:
        ds = CalibrationDataset(source, num_samples=10 ** 9)
    except DataError as exc:
        raise DataError(str(exc).replace("calibration", "evaluation")) from exc
    if ds.kind == "array":
        return EvalData(source, "unlabelled", ds.array, None, (), "RGB")
    if ds.kind == "video":
        raise DataError(f"{source}: videos are not evaluation data; extract frames or use an image folder")
    return EvalData(source, "unlabelled", ds.items, None)


def _read_csv(path: pathlib.Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read evaluation list {path}: {exc}") from exc
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
        rows = rows[1:]
    out = []
    for n, r in enumerate(rows, 1):
        if len(r) < 2:
            raise DataError(f"{path}: row {n} has {len(r)} column(s); expected path,label")
        out.append((r[0].strip(), r[1].strip()))
    return out


def _read_json(path: pathlib.Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read evaluation list {path}: {exc}") from exc
    out = []
    for n, entry in enumerate(data if isinstance(data, list) else [None], 1):
        if isinstance(entry, dict) and "path" in entry and "label" in entry:
            out.append((str(entry["path"]), str(entry["label"])))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            out.append((str(entry[0]), str(entry[1])))
        else:
            raise DataError(f"{path}: entry {n} must be {{\"path\": ..., \"label\": ...}} or [path, label]")
    return out


def _from_table(path: pathlib.Path, rows: list[tuple[str, str]]) -> EvalData:
    if not rows:
        raise DataError(f"evaluation list {path} is empty")
    files = []
    for f, _ in rows:
        p = pathlib.Path(f)
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise DataError(f"{path}: image {f} not found (relative paths are taken from {path.parent})")
        files.append(str(p))
    raw = [lab for _, lab in rows]
    if all(_is_int(lab) for lab in raw):
        return EvalData(str(path), "list", tuple(files), np.array([int(x) for x in raw], np.int64))
    names = tuple(sorted(set(raw)))
    index = {n: i for i, n in enumerate(names)}
    return EvalData(str(path), "list", tuple(files), np.array([index[x] for x in raw], np.int64), names)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
