"""A synthetic camera: numbered frames of a chosen size at a chosen rate, for tests and benchmarks."""
from __future__ import annotations

import dataclasses
import re
import time
import urllib.parse

import numpy as np

from ..errors import UsageError
from .source import Frame, Source

SYNTH_BITS = 24
SYNTH_BAR_HEIGHT = 16


def encode_frame_number(image: np.ndarray, number: int) -> None:
    """Write ``number`` into the bottom rows as black/white blocks that survive lossy video codecs."""
    h, w = image.shape[:2]
    block = w // SYNTH_BITS
    for bit in range(SYNTH_BITS):
        value = 255 if (number >> (SYNTH_BITS - 1 - bit)) & 1 else 0
        image[h - SYNTH_BAR_HEIGHT:, bit * block:(bit + 1) * block] = value


def decode_frame_number(image: np.ndarray) -> int:
    """Read back the number written by ``encode_frame_number`` (also from a decoded video frame)."""
    h, w = image.shape[:2]
    block = w // SYNTH_BITS
    rows = image[h - SYNTH_BAR_HEIGHT + 4:h - 4]
    number = 0
    for bit in range(SYNTH_BITS):
        cell = rows[:, bit * block + block // 4:(bit + 1) * block - block // 4]
        number = (number << 1) | int(cell.mean() > 127)
    return number


class SyntheticSource(Source):
    """Frames of a chosen size at a chosen rate, each with its frame number drawn in.

    Behaves like a camera with a one-frame buffer: frame *n* becomes available at ``t0 + n/fps``;
    a reader that falls behind receives the newest frame and the ones in between are counted in
    ``skipped_frames``. ``duplicate_every=k`` re-delivers the previous frame on every k-th read,
    the way some camera drivers return a stale buffer, to test duplicate detection.
    """

    kind = "synthetic"
    live = True

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, frames: int | None = None,
                 duplicate_every: int = 0) -> None:
        if width < SYNTH_BITS * 2 or height < SYNTH_BAR_HEIGHT * 2 or fps <= 0:
            raise UsageError(f"synthetic source needs width >= {SYNTH_BITS * 2}, height >= {SYNTH_BAR_HEIGHT * 2} "
                             f"and fps > 0, got {width}x{height}@{fps}")
        super().__init__(f"synthetic {width}x{height}@{fps:g}" + (f" ({frames} frames)" if frames else ""))
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames = frames
        self.duplicate_every = int(duplicate_every)
        self._t0 = 0.0
        self._next = 0
        self._reads = 0
        self._last: Frame | None = None
        self._base = np.zeros((self.height, self.width, 3), np.uint8)

    @property
    def nominal_fps(self) -> float | None:
        return self.fps

    @property
    def frame_count(self) -> int | None:
        return self.frames

    def _open(self) -> None:
        # A smooth colour gradient so preprocessing works on realistic pixel data.
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        self._base[..., 0] = (xs * 255 // max(1, self.width - 1)).astype(np.uint8)
        self._base[..., 1] = (ys * 255 // max(1, self.height - 1)).astype(np.uint8)
        self._base[..., 2] = 128
        self._t0 = time.monotonic()
        self._next = 0

    def read(self) -> Frame | None:
        self._reads += 1
        if self.duplicate_every and self._last is not None and self._reads % self.duplicate_every == 0:
            return dataclasses.replace(self._last, timestamp=time.monotonic())
        if self.frames is not None and self._next >= self.frames:
            return None
        due = self._t0 + self._next / self.fps
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        else:
            newest = int((now - self._t0) * self.fps)
            if self.frames is not None:
                newest = min(newest, self.frames - 1)
            self.skipped_frames += max(0, newest - self._next)
            self._next = max(self._next, newest)
        number = self._next
        self._next += 1
        t0 = time.perf_counter()
        image = self._base.copy()
        image[..., 2] = (number * 7) % 256
        encode_frame_number(image, number)
        frame = Frame(image, number, max(time.monotonic(), due), (time.perf_counter() - t0) * 1e3)
        self._last = frame
        return frame


_SYNTH_RE = re.compile(r"^(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


MAX_SIDE = 8192  # pixels: a synthetic frame larger than 8K is a typo, not a test


def parse_synthetic(spec: str) -> SyntheticSource:
    """``synthetic://640x480@30?frames=300&dup=5`` -> SyntheticSource."""
    parsed = urllib.parse.urlsplit(spec)
    body = (parsed.netloc + parsed.path).strip("/") or "640x480@30"
    m = _SYNTH_RE.match(body)
    if not m:
        raise UsageError(f"--source {spec!r}: expected synthetic://WIDTHxHEIGHT@FPS, e.g. synthetic://640x480@30")
    query = urllib.parse.parse_qs(parsed.query)
    unknown = set(query) - {"frames", "dup"}
    if unknown:
        raise UsageError(f"--source {spec!r}: unknown parameter(s) {sorted(unknown)}; expected frames, dup")
    try:
        frames = int(query["frames"][0]) if "frames" in query else None
        dup = int(query["dup"][0]) if "dup" in query else 0
    except ValueError:
        raise UsageError(f"--source {spec!r}: frames and dup must be integers") from None
    width, height, fps = int(m.group(1)), int(m.group(2)), float(m.group(3) or 30)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise UsageError(f"--source {spec!r}: frame size {width}x{height} out of range; each side must be in "
                         f"1..{MAX_SIDE} pixels")
    if not 0 < fps <= 1000:
        raise UsageError(f"--source {spec!r}: {fps:g} FPS out of range; expected 0 < FPS <= 1000")
    if frames is not None and frames < 1:
        raise UsageError(f"--source {spec!r}: frames={frames}; expected a positive number of frames")
    if dup < 0:
        raise UsageError(f"--source {spec!r}: dup={dup}; expected 0 (no duplicates) or a positive period")
    return SyntheticSource(width, height, fps, frames=frames, duplicate_every=dup)

