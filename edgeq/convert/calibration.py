"""Representative data for post-training quantization.

``CalibrationDataset`` is re-iterable and deterministic: the same seed gives the same samples in
the same order, every pass (the converter iterates it more than once). Each sample goes through
the model's ``Preprocess`` spec, so calibration sees exactly what inference will see. Unreadable
files are skipped and counted, never a crash half-way through calibration.
"""
from __future__ import annotations

import dataclasses
import glob as globlib
import logging
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import CalibrationError
from ..images import IMAGE_SUFFIXES
from ..preprocess import Preprocess

log = logging.getLogger(__name__)


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")
ARRAY_SUFFIXES = (".npy", ".npz")


@dataclasses.dataclass(frozen=True)
class CalibrationSummary:
    source: str
    kind: str
    requested: int
    used: int
    skipped: int
    skipped_files: tuple[str, ...]
    value_min: tuple[float, ...]
    value_max: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["skipped_files"] = list(self.skipped_files[:20])
        d["value_min"], d["value_max"] = list(self.value_min), list(self.value_max)
        return d


class CalibrationDataset:
    """A re-iterable source of preprocessed samples (float32 HxWxC, no batch axis).

    source: an image folder (recursive, class subfolders allowed), a glob pattern, a video file
    (``num_samples`` frames sampled evenly), an .npy/.npz array of images, or any re-iterable of
    items together with ``transform`` (item -> image or ready tensor).
    """

    def __init__(self, source: Any, preprocess: Preprocess | None = None, *, num_samples: int = 200,
                 seed: int = 0, transform: Callable[[Any], np.ndarray] | None = None,
                 input_color: str | None = None):
        if num_samples <= 0:
            raise CalibrationError(f"--num-samples must be positive, got {num_samples}")
        self.source = source
        self.preprocess = preprocess
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.transform = transform
        self.kind, self._items = self._discover()
        # Decoded files and video frames are BGR (OpenCV); numpy arrays are taken as RGB.
        self.input_color = input_color or ("BGR" if self.kind in ("folder", "glob", "files", "video") else "RGB")
        self.skipped: dict[str, str] = {}
        self._seen_min: np.ndarray | None = None
        self._seen_max: np.ndarray | None = None
        self._used = 0

    # ---- discovery (cheap, done up front so bad sources fail before TensorFlow loads) --------
    def _discover(self) -> tuple[str, list[Any]]:
        src = self.source
        if isinstance(src, np.ndarray):
            check_image_array(src, "calibration array")
            return "array", self._sample(list(range(len(src))))
        if isinstance(src, (str, os.PathLike)):
            text = str(src)
            path = pathlib.Path(text)
            if any(ch in text for ch in "*?[") and not path.exists():
                files = sorted(p for p in globlib.glob(text, recursive=True)
                               if p.lower().endswith(IMAGE_SUFFIXES))
                if not files:
                    raise CalibrationError(f"calibration glob {text!r} matched no image files "
                                           f"({', '.join(IMAGE_SUFFIXES)})")
                return "glob", self._sample(files)
            if not path.exists():
                raise CalibrationError(f"calibration source not found: {path}; expected an image folder, "
                                       "a glob, a video file or an .npy/.npz array")
            if path.is_dir():
                files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                               and p.is_file())
                if not files:
                    raise CalibrationError(f"calibration folder {path} holds no image files "
                                           f"({', '.join(IMAGE_SUFFIXES)})")
                return "folder", self._sample(files)
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                return "video", self._video_indices(path)
            if suffix in ARRAY_SUFFIXES:
                self._array = _load_array(path)
                return "array", self._sample(list(range(len(self._array))))
            if suffix in IMAGE_SUFFIXES:
                return "files", [str(path)]
            raise CalibrationError(f"calibration source {path} has an unknown type {suffix!r}; expected a folder, "
                                   f"glob, video ({', '.join(VIDEO_SUFFIXES)}) or array (.npy/.npz)")
        if isinstance(src, Iterable):
            if iter(src) is src:
                raise CalibrationError("calibration source is a one-shot iterator; pass a re-iterable "
                                       "(list, dataset object) because conversion reads it more than once")
            return "iterable", []
        raise CalibrationError(f"unsupported calibration source of type {type(src).__name__}")

    def _sample(self, items: list[Any]) -> list[Any]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(items))
        return [items[i] for i in order[: self.num_samples]]

    def _video_indices(self, path: pathlib.Path) -> list[int]:
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise CalibrationError(f"cannot open calibration video {path}")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        if count <= 0:
            raise CalibrationError(f"calibration video {path} reports no frames")
        n = min(self.num_samples, count)
        return sorted({int(round(i)) for i in np.linspace(0, count - 1, n)})

    @property
    def items(self) -> tuple[Any, ...]:
        """The sampled items in iteration order: file paths, array indices or video frame numbers."""
        return tuple(self._items)

    @property
    def array(self) -> np.ndarray | None:
        """The image array of an array source (given, or read from .npy/.npz), else None."""
        if self.kind != "array":
            return None
        return self.source if isinstance(self.source, np.ndarray) else self._array

    def __len__(self) -> int:
        if self.kind == "iterable":
            return min(self.num_samples, len(self.source)) if hasattr(self.source, "__len__") else self.num_samples
        return len(self._items)

    # ---- iteration ---------------------------------------------------------------------------
    def _raw(self) -> Iterator[tuple[str, Any]]:
        """(identifier, raw item) pairs, in the fixed order."""
        if self.kind in ("folder", "glob", "files"):
            for f in self._items:
                yield f, f
        elif self.kind == "array":
            arr = self.array
            for i in self._items:
                yield f"[{i}]", arr[i]
        elif self.kind == "video":
            yield from self._video_frames()
        else:
            for i, item in enumerate(self.source):
                if i >= self.num_samples:
                    break
                yield f"item {i}", item

    def _video_frames(self) -> Iterator[tuple[str, Any]]:
        import cv2

        cap = cv2.VideoCapture(str(self.source))
        try:
            wanted = set(self._items)
            pos = 0
            last = max(wanted)
            while pos <= last:
                ok = cap.grab()
                if not ok:
                    break
                if pos in wanted:
                    ok, frame = cap.retrieve()
                    yield f"frame {pos}", frame if ok else None
                pos += 1
        finally:
            cap.release()

    def _load(self, item: Any) -> np.ndarray | None:
        if isinstance(item, str):
            return read_image(item)
        return item

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield preprocessed float32 samples (HxWxC). Bad items are skipped and recorded."""
        used = 0
        for ident, item in self._raw():
            try:
                if self.transform is not None:
                    item = self.transform(item)
                img = self._load(item)
                if img is None:
                    raise ValueError("unreadable or corrupt image")
                sample = self._to_tensor(np.asarray(img))
            except Exception as exc:  # noqa: BLE001 - any bad sample is skipped, counted and reported
                if ident not in self.skipped:
                    log.warning("calibration: skipping %s: %s", ident, exc)
                self.skipped[ident] = str(exc)
                continue
            self._track(sample)
            used += 1
            yield sample
        self._used = used

    def _to_tensor(self, img: np.ndarray) -> np.ndarray:
        pre = self.preprocess
        if img.dtype.kind == "f":
            if pre is not None and img.shape != (pre.height, pre.width, pre.channels):
                expected = (pre.height, pre.width, pre.channels)
                raise ValueError(f"float sample of shape {img.shape} is taken as a ready tensor and must be "
                                 f"{expected}; pass uint8 images to have them preprocessed")
            return img.astype(np.float32)
        if pre is None:
            raise ValueError("integer images need a Preprocess spec")
        return pre.apply(img, self.input_color)

    def _track(self, sample: np.ndarray) -> None:
        flat = sample.reshape(-1, sample.shape[-1])
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        self._seen_min = lo if self._seen_min is None else np.minimum(self._seen_min, lo)
        self._seen_max = hi if self._seen_max is None else np.maximum(self._seen_max, hi)

    def check(self) -> int:
        """Read every sample once (no TensorFlow); raise if none is usable. Returns the count.

        Without a Preprocess spec yet (the model is not loaded), only decoding is checked.
        """
        if self.preprocess is None and self.kind != "iterable":
            n = 0
            for ident, item in self._raw():
                img = self._load(item) if self.transform is None else item
                if img is None:
                    self.skipped[ident] = "unreadable or corrupt image"
                else:
                    n += 1
        else:
            n = sum(1 for _ in self)
        if n == 0:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:3])
            raise CalibrationError(f"calibration source {self.describe()} gave no usable samples "
                                   f"({len(self.skipped)} skipped: {reasons})")
        return n

    def describe(self) -> str:
        return str(self.source) if isinstance(self.source, (str, os.PathLike)) else f"<{type(self.source).__name__}>"

    def summary(self) -> CalibrationSummary:
        lo = tuple(round(float(v), 6) for v in (self._seen_min if self._seen_min is not None else ()))
        hi = tuple(round(float(v), 6) for v in (self._seen_max if self._seen_max is not None else ()))
        return CalibrationSummary(source=self.describe(), kind=self.kind, requested=self.num_samples,
                                  used=self._used, skipped=len(self.skipped),
                                  skipped_files=tuple(self.skipped), value_min=lo, value_max=hi)

    def batches(self) -> Callable[[], Iterator[list[np.ndarray]]]:
        """A TFLiteConverter.representative_dataset: a generator function of [1xHxWxC] lists."""
        def gen() -> Iterator[list[np.ndarray]]:
            for s in self:
                yield [s[None, ...]]
        return gen


def read_image(path: str) -> np.ndarray | None:
    """Read any image OpenCV or Pillow can decode (8/16-bit, gray/RGB/RGBA) as OpenCV BGR(A)."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is not None:
        return img
    try:  # e.g. some webp/palette files OpenCV cannot read
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "LA", "1", "CMYK", "YCbCr", "HSV"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except Exception:  # noqa: BLE001 - unreadable: the caller counts it
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _load_array(path: pathlib.Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read calibration array {path}: {exc}") from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if not keys:
            raise CalibrationError(f"calibration archive {path} is empty")
        key = "images" if "images" in keys else ("x" if "x" in keys else keys[0])
        try:
            data = data[key]
        except (OSError, ValueError) as exc:  # object arrays need pickle, which edgeq never enables
            raise CalibrationError(f"cannot read array {key!r} of calibration archive {path}: {exc}") from exc
    return check_image_array(data, f"calibration array {path}")


PIXEL_DTYPES = ("uint8", "uint16", "bool")


def check_image_array(data: np.ndarray, what: str) -> np.ndarray:
    """N images: uint8/uint16/bool pixels (preprocessed here) or finite float ready tensors, N x H x W [x C].

    Checked before TensorFlow loads, so a wrong array fails in milliseconds with the reason, not
    after a minute with every sample skipped (or, for non-finite values, a crash in the converter).
    """
    kind = data.dtype.kind
    if data.dtype.name not in PIXEL_DTYPES and kind != "f":
        raise CalibrationError(f"{what} has dtype {data.dtype}; expected uint8 (or uint16/bool) pixels, or float "
                               "tensors already preprocessed for the model")
    if data.ndim not in (3, 4) or len(data) == 0 or (data.ndim == 4 and data.shape[-1] not in (1, 3, 4)):
        raise CalibrationError(f"{what} has shape {list(data.shape)}; expected N images (N x H x W, or "
                               "N x H x W x C with C = 1, 3 or 4)")
    if kind == "f":
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise CalibrationError(f"{what} holds {bad} non-finite value(s) (NaN or infinity); calibration needs "
                                   "real sample values")
    return data
