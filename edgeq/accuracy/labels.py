"""Labels for scoring detectors and segmenters, matched to images by name.

Boxes: a COCO JSON file or a folder of YOLO txt files. Masks: a folder of ``<image stem>.png`` class-id maps
(8-bit, the size of the image; for a one-channel foreground model any non-zero pixel is foreground).

COCO: ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``, ``bbox`` x, y, w, h in pixels,
``category_id``) and ``categories``; category i (in increasing id order) is the model's class i. YOLO: one
``<image stem>.txt`` per image, lines ``class cx cy w h`` normalised to the image size; an image without a
file has no boxes (YOLO's convention for background images).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..postprocess import Detections, SegmentationMask


@dataclasses.dataclass(frozen=True)
class DetectionLabels:
    """Boxes per image name: (class ids, xyxy pixel boxes) or normalised YOLO rows (``normalised``)."""

    source: str
    boxes: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (class ids (N,), boxes (N, 4))
    normalised: bool  # YOLO: cx, cy, w, h in 0..1 of the image; COCO: x0, y0, x1, y1 pixels
    every_image_listed: bool  # COCO lists its images: one it does not list is an error

    def for_images(self, names: Sequence[str], sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Detections (score 1) per image, in the order of ``names`` with their (width, height)."""
        out = []
        for name, (w, h) in zip(names, sizes):
            key = name if name in self.boxes else pathlib.Path(name).stem
            if key not in self.boxes and self.every_image_listed:
                raise DataError(f"{self.source} has no entry for image {name}; label every evaluated image "
                                "(an image without boxes is listed with no annotations)")
            cls, b = self.boxes.get(key, (np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))
            if self.normalised and len(b):
                cx, cy, bw, bh = b[:, 0] * w, b[:, 1] * h, b[:, 2] * w, b[:, 3] * h
                b = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            out.append(Detections(b.astype(np.float32), np.ones(len(b), np.float32), cls.astype(np.int64),
                                  tuple(str(int(c)) for c in cls)))
        return out


def read_detection_labels(source: str | os.PathLike) -> DetectionLabels:
    """COCO JSON file or YOLO txt folder; a malformed entry is a DataError naming the file and entry."""
    p = pathlib.Path(source)
    if p.is_dir():
        return _yolo(p)
    if p.is_file() and p.suffix.lower() == ".json":
        return _coco(p)
    raise DataError(f"--labels {source}: expected a COCO .json file or a folder of YOLO .txt files")


def _coco(path: pathlib.Path) -> DetectionLabels:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        cats = {int(c["id"]): i for i, c in enumerate(sorted(d.get("categories", []), key=lambda c: int(c["id"])))}
        names = {int(im["id"]): pathlib.Path(str(im["file_name"])).name for im in d["images"]}
        per: dict[int, list[Any]] = {i: [] for i in names}
        for a in d.get("annotations", []):
            x, y, w, h = (float(v) for v in a["bbox"])
            per[int(a["image_id"])].append((cats[int(a["category_id"])], [x, y, x + w, y + h]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a COCO detection file (images, annotations with bbox/category_id, "
                        f"categories): {exc!r}") from exc
    boxes = {names[i]: (np.asarray([c for c, _ in rows], np.int64), np.asarray([b for _, b in rows],
                                                                                 np.float32).reshape(-1, 4))
             for i, rows in per.items()}
    return DetectionLabels(str(path), boxes, normalised=False, every_image_listed=True)


def _yolo(folder: pathlib.Path) -> DetectionLabels:
    boxes = {}
    for f in sorted(folder.glob("*.txt")):
        rows = []
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 5:
                    raise ValueError(line)
                rows.append((int(parts[0]), [float(v) for v in parts[1:]]))
            except ValueError:
                raise DataError(f"{f}:{n}: expected 'class cx cy w h' (normalised), got {line!r}") from None
        boxes[f.stem] = (np.asarray([c for c, _ in rows], np.int64),
                         np.asarray([b for _, b in rows], np.float32).reshape(-1, 4))
    if not boxes:
        raise DataError(f"--labels {folder}: no YOLO .txt label files in the folder")
    return DetectionLabels(str(folder), boxes, normalised=True, every_image_listed=False)


def read_mask_labels(folder: str | os.PathLike, names: Sequence[str], shapes: Sequence[tuple[int, ...]],
                     binary: bool) -> list[SegmentationMask]:
    """One label mask per image (``<stem>.png`` in ``folder``), checked against the image's size."""
    import cv2

    root = pathlib.Path(folder)
    if not root.is_dir():
        raise DataError(f"--labels {folder}: segmentation labels are a folder of <image stem>.png class-id masks")
    out = []
    for name, shape in zip(names, shapes):
        path = root / f"{pathlib.Path(name).stem}.png"
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise DataError(f"{path}: no readable label mask for image {name}; give one 8-bit PNG per image")
        if mask.shape != tuple(shape[:2]):
            raise DataError(f"{path}: label mask is {mask.shape[1]}x{mask.shape[0]} but image {name} is "
                            f"{shape[1]}x{shape[0]}")
        out.append(SegmentationMask((mask > 0).astype(np.uint8) if binary else mask, ()))
    return out
