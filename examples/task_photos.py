"""Write the real-photo sets the task figures in the README are measured on (no download, nothing shipped).

Sources: scikit-image's bundled sample photos (``skimage.data``: ``astronaut`` is a NASA portrait in the
public domain; the others are scikit-image's own CC0/public-domain samples) and frames of OpenCV's
vtest.avi (.ci/setup extracts it from Debian's opencv-doc). Out of them:

* ``faces/``: 16 views of the astronaut portrait (crops, scales, flips, brightness, small rotations) and
  4 photos without a face, plus 8 vtest frames (pedestrians, faces too small for the short-range model);
* ``faces_labelled/`` + ``faces_labelled.json`` (COCO): the 14 views whose box follows exactly from the one
  box annotated by eye on the full portrait (``FACE_BOX``: the skin from the fringe to the chin, ear to ear,
  read off a 4x zoom with a 10-px grid), and the 4 photos without a face (no boxes);
* ``face_crops/``: 8 crops around the astronaut's face, as MediaPipe's face-mesh graph feeds the landmark
  model (the face box enlarged 1.5x);
* ``people/``: the portrait views and the vtest frames, for the selfie segmenter.

    python examples/task_photos.py OUT_DIR [--vtest .data/vtest.avi]
"""
from __future__ import annotations

import argparse
import json
import pathlib

import cv2
import numpy as np

FACE_BOX = (180, 78, 270, 186)  # x0, y0, x1, y1 of the astronaut's face in the 512x512 portrait, by eye
NO_FACE = ("chelsea", "coffee", "rocket", "immunohistochemistry")  # skimage.data photos without a human face


def labelled_views(img: np.ndarray) -> dict[str, tuple[np.ndarray, tuple[float, float, float, float]]]:
    """14 views whose face box follows exactly from FACE_BOX: (image, box x0, y0, x1, y1)."""
    x0, y0, x1, y1 = FACE_BOX
    w = img.shape[1]
    views = {"full": (img, FACE_BOX), "flip": (np.ascontiguousarray(img[:, ::-1]), (w - x1, y0, w - x0, y1))}
    for i, (a, b, c, d) in enumerate([(0, 0, 384, 384), (64, 0, 448, 384), (100, 20, 356, 276), (0, 0, 512, 300),
                                      (120, 40, 330, 250), (40, 10, 470, 420)]):
        views[f"crop{i}"] = (img[b:d, a:c], (x0 - a, y0 - b, x1 - a, y1 - b))
    for f in (0.6, 1.3):
        views[f"light{f}"] = (np.clip(img.astype(np.float32) * f, 0, 255).astype(np.uint8), FACE_BOX)
    views["small"] = (cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA), (x0 / 2, y0 / 2, x1 / 2, y1 / 2))
    views["wide"] = (cv2.copyMakeBorder(img, 0, 0, 256, 256, cv2.BORDER_CONSTANT, value=(90, 90, 90)),
                     (x0 + 256, y0, x1 + 256, y1))
    views["blur"] = (cv2.GaussianBlur(img, (5, 5), 0), FACE_BOX)
    views["gray"] = (cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), FACE_BOX)
    return views


def astronaut_views(img: np.ndarray) -> dict[str, np.ndarray]:
    """16 deterministic views of one photo: the labelled ones and two small rotations."""
    h, w = img.shape[:2]
    views = {k: v for k, (v, _) in labelled_views(img).items()}
    for a in (-12, 12):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), a, 1.0)
        views[f"rot{a}"] = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return views


def coco_labels(views: dict[str, tuple[np.ndarray, tuple[float, ...]]], negatives: dict[str, np.ndarray]) -> dict:
    """The COCO detection file of the labelled views (one "face" box each) and the negatives (none)."""
    images, anns = [], []
    for i, (stem, (img, box)) in enumerate({**views, **{k: (v, None) for k, v in negatives.items()}}.items(), 1):
        images.append({"id": i, "file_name": f"{stem}.png", "width": img.shape[1], "height": img.shape[0]})
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}


def face_crops(img: np.ndarray) -> dict[str, np.ndarray]:
    """8 crops of the face box enlarged 1.5x, shifted and scaled a little (as a tracker's ROI would be)."""
    x0, y0, x1, y1 = FACE_BOX
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0)
    out = {}
    for i, (dx, dy, ds) in enumerate([(0, 0, 1), (6, 0, 1), (-6, 0, 1), (0, 6, 1), (0, -6, 1), (0, 0, 1.1),
                                      (0, 0, 0.92), (4, -4, 1.05)]):
        half = s * ds / 2
        a, b = int(cx + dx - half), int(cy + dy - half)
        c, d = int(cx + dx + half), int(cy + dy + half)
        out[f"face{i}"] = img[max(0, b):d, max(0, a):c]
    return out


def main() -> None:
    from skimage import data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--vtest", default=".data/vtest.avi")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frames = []
    cap = cv2.VideoCapture(args.vtest)
    for i in range(8):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i * 100)
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    cap.release()
    sets = {"faces": {**astronaut_views(astronaut), **{f"vtest{i}": f for i, f in enumerate(frames)}},
            "face_crops": face_crops(astronaut),
            "people": {**astronaut_views(astronaut), **{f"vtest{i}": f for i, f in enumerate(frames)}}}
    negatives = {name: cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR) for name in NO_FACE}
    sets["faces"].update(negatives)
    labelled = labelled_views(astronaut)
    sets["faces_labelled"] = {**{k: v for k, (v, _) in labelled.items()}, **negatives}
    (out / "faces_labelled.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "faces_labelled.json").write_text(json.dumps(coco_labels(labelled, negatives), indent=1))
    for folder, images in sets.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for stem, img in images.items():
            cv2.imwrite(str(out / folder / f"{stem}.png"), np.ascontiguousarray(img))
        print(f"{out / folder}: {len(images)} images")


if __name__ == "__main__":
    main()
