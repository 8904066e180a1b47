"""Images from a folder or a glob, one frame per file."""
from __future__ import annotations

import glob as globlib
import os
import pathlib
import time

from ..errors import SourceError
from ..images import IMAGE_SUFFIXES
from .source import DEFAULT_SOURCE_OPTIONS, Frame, Source, SourceOptions


class ImageFolderSource(Source):
    """Images from a folder (sorted) or a glob pattern; unreadable images are skipped and counted."""

    kind = "images"

    def __init__(self, pattern: str | os.PathLike, options: SourceOptions = DEFAULT_SOURCE_OPTIONS) -> None:
        super().__init__(f"images {pattern}")
        self.pattern = str(pattern)
        self.options = options
        self._files: list[str] = []
        self._index = 0

    @property
    def nominal_fps(self) -> float | None:
        return self.options.fps

    @property
    def frame_count(self) -> int | None:
        return len(self._files)

    def _open(self) -> None:
        p = pathlib.Path(self.pattern)
        if p.is_dir():
            files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            tried = f"folder {p} (extensions {', '.join(IMAGE_SUFFIXES)})"
        else:
            files = sorted(f for f in globlib.glob(self.pattern, recursive=True) if os.path.isfile(f))
            tried = f"glob {self.pattern!r}"
        if not files:
            raise SourceError(f"cannot open {self.description}: no image files found in {tried}")
        self._files = files

    def read(self) -> Frame | None:
        import cv2

        while self._index < len(self._files):
            path = self._files[self._index]
            self._index += 1
            t0 = time.perf_counter()
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            ms = (time.perf_counter() - t0) * 1e3
            if image is None or image.size == 0:
                self.corrupt_frames += 1
                self.warnings.warn(f"skipping unreadable image {path}")
                continue
            return Frame(image, self._index, time.monotonic(), ms)
        return None
