"""Frame sources: camera, video file, network stream, image folder/glob, synthetic.

All sources share one small interface (``Source``) so the runner never cares where frames come
from. Each delivered ``Frame`` carries the source's sequence number and a monotonic capture
timestamp, so the runner can tell new frames from duplicates and compute FPS from timestamps.
"""
from __future__ import annotations

import abc
import dataclasses
import glob as globlib
import logging
import os
import pathlib
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import SourceError, UsageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SYNTHETIC_SCHEME = "synthetic"
SOURCE_FORMS = ("camera index (0) or V4L2 device path (/dev/video0)", "video file (clip.mp4)",
                "stream URL (rtsp://..., http://...)", "image folder or glob (imgs/*.jpg)",
                "synthetic://WIDTHxHEIGHT@FPS[?frames=N&dup=K]")
# Consecutive undecodable frames in a file before it counts as ended rather than damaged.
MAX_CONSECUTIVE_CORRUPT = 25


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured image. ``seq`` is the source's own frame number; ``timestamp`` is monotonic."""

    image: np.ndarray
    seq: int
    timestamp: float
    capture_ms: float  # time spent decoding/producing this frame (not waiting for it)


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """Capture options a user can set; ``None`` keeps the device/file default."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    max_reconnects: int = 5
    reconnect_backoff_s: float = 0.5
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    # FFmpeg decoding threads for files. One decoder thread measured faster per frame here
    # (1.6 vs 2.4 ms for 768x576 MPEG-4) and leaves the other cores to inference.
    decode_threads: int | None = 1


class Source(abc.ABC):
    """A context-managed producer of ``Frame`` objects.

    ``read()`` returns the next frame, or None at the end of input. A source that fails for
    good after opening sets ``failure`` (a message) and returns None, so the pipeline can end
    with a partial report. Undecodable frames are skipped and counted in ``corrupt_frames``.
    """

    kind: str = "source"
    live: bool = False  # frames arrive in real time (camera, stream, synthetic): default realtime

    def __init__(self, description: str) -> None:
        self.description = description
        self.corrupt_frames = 0
        self.skipped_frames = 0  # frames the source produced that the reader never received
        self.reconnects = 0
        self.failure: str | None = None
        self._opened = False

    @property
    def nominal_fps(self) -> float | None:
        """Frame rate the source declares (None if unknown)."""
        return None

    @property
    def frame_count(self) -> int | None:
        """Number of frames in a finite source (None if unknown or endless)."""
        return None

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    def _close(self) -> None:
        pass

    def open(self) -> Source:
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "live": self.live,
                "nominal_fps": self.nominal_fps, "frame_count": self.frame_count}


# --------------------------------------------------------------------------------------------
# OpenCV-backed sources
# --------------------------------------------------------------------------------------------
class _CaptureSource(Source):
    """Shared grab/retrieve logic over cv2.VideoCapture."""

    def __init__(self, description: str, options: SourceOptions) -> None:
        super().__init__(description)
        self.options = options
        self._cap = None
        self._seq = 0
        self._fps_at_close: float | None = None

    @property
    def nominal_fps(self) -> float | None:
        """The rate the device/file declares; kept after close so the run's report still has it."""
        if self._cap is None:
            return self._fps_at_close
        import cv2

        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return fps if 0.0 < fps < 1000.0 else None

    def _capture_params(self) -> list[int]:
        import cv2

        o = self.options
        params: list[int] = []
        if o.width:
            params += [cv2.CAP_PROP_FRAME_WIDTH, int(o.width)]
        if o.height:
            params += [cv2.CAP_PROP_FRAME_HEIGHT, int(o.height)]
        if o.fps:
            params += [cv2.CAP_PROP_FPS, int(round(o.fps))]
        return params

    def _grab_frame(self) -> tuple[bool, Frame | None]:
        """(grabbed, the next numbered frame). None with grabbed=True: a corrupt frame."""
        t0 = time.perf_counter()
        if not self._cap.grab():
            return False, None
        stamp = time.monotonic()
        ok, image = self._cap.retrieve()
        ms = (time.perf_counter() - t0) * 1e3
        if not ok or image is None or image.size == 0:
            return True, None
        self._seq += 1
        return True, Frame(image, self._seq, stamp, ms)

    def _close(self) -> None:
        if self._cap is not None:
            self._fps_at_close = self.nominal_fps
            self._cap.release()
            self._cap = None


class CameraSource(_CaptureSource):
    """A V4L2 camera by index or device path; resolution/FPS requested through the driver."""

    kind = "camera"
    live = True

    def __init__(self, device: int | str, options: SourceOptions = SourceOptions()) -> None:
        self.device = device
        super().__init__(f"camera {device}", options)

    def _device_path(self) -> str:
        return f"/dev/video{self.device}" if isinstance(self.device, int) else str(self.device)

    def _open(self) -> None:
        import cv2

        path = self._device_path()
        tried = f"tried OpenCV's V4L2 backend on {path}"
        if os.name == "posix" and not os.path.exists(path):
            present = sorted(globlib.glob("/dev/video*"))
            raise SourceError(f"cannot open {self.description}: {path} does not exist ({tried}); "
                              f"video devices here: {', '.join(present) if present else 'none'}")
        target = self.device if isinstance(self.device, int) else path
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2, self._capture_params())
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}: {tried}; the device exists but OpenCV could "
                              "not open it (busy, no permission, or not a capture device)")
        self._cap = cap
        self._check_requested(cap)

    def _check_requested(self, cap: Any) -> None:
        import cv2

        o = self.options
        got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (o.width and got_w != o.width) or (o.height and got_h != o.height):
            log.warning("%s: requested %sx%s, the driver gave %dx%d", self.description, o.width, o.height,
                        got_w, got_h)

    def read(self) -> Frame | None:
        while self._cap is not None:
            grabbed, frame = self._grab_frame()
            if not grabbed:
                self.failure = f"{self.description} stopped delivering frames (unplugged or closed)"
                return None
            if frame is None:
                self.corrupt_frames += 1
                continue
            return frame
        return None


class VideoFileSource(_CaptureSource):
    """A video file decoded with OpenCV (FFmpeg). Undecodable frames are skipped and counted."""

    kind = "video"

    def __init__(self, path: str | os.PathLike, options: SourceOptions = SourceOptions()) -> None:
        self.path = pathlib.Path(path)
        super().__init__(f"video {self.path}", options)
        self._count: int | None = None

    @property
    def frame_count(self) -> int | None:
        return self._count

    @property
    def nominal_fps(self) -> float | None:
        return self.options.fps or super().nominal_fps

    def _open(self) -> None:
        import cv2

        if not self.path.is_file():
            raise SourceError(f"cannot open video {self.path}: no such file")
        params = [cv2.CAP_PROP_N_THREADS, int(self.options.decode_threads)] if self.options.decode_threads else []
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video {self.path}: OpenCV's FFmpeg backend cannot decode it "
                              "(not a video, or an unsupported codec/container)")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._count = count if count > 0 else None
        self._cap = cap

    def read(self) -> Frame | None:
        misses = 0
        while self._cap is not None:
            grabbed, frame = self._grab_frame()
            if frame is not None:
                return frame
            # A failed grab before the declared frame count (or a failed decode) is a damaged
            # frame, not the end; many in a row means the file is truncated.
            position_left = self._count is not None and self._seq + self.corrupt_frames < self._count
            if grabbed or position_left:
                self.corrupt_frames += 1
                misses += 1
                if misses < MAX_CONSECUTIVE_CORRUPT:
                    continue
                # That many in a row is not damage but the end of what is there: a truncated file.
                self.corrupt_frames -= misses
                self.failure = (f"{self.description}: no frame decodes after frame {self._seq} of the "
                                f"{self._count} it declares; the file looks truncated")
            return None
        return None


class StreamSource(_CaptureSource):
    """A network stream (RTSP/HTTP/...) via FFmpeg; reconnects with bounded exponential backoff."""

    kind = "stream"
    live = True

    def __init__(self, url: str, options: SourceOptions = SourceOptions(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        super().__init__(f"stream {_redact(url)}", options)
        self._sleep = sleep
        self.attempts: list[str] = []

    def _try_open(self) -> bool:
        import cv2

        o = self.options
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(o.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(o.read_timeout_s * 1000)]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            self._cap = cap
            return True
        cap.release()
        return False

    def _connect(self) -> bool:
        """Open, retrying with doubling delays up to ``max_reconnects`` times."""
        delay = self.options.reconnect_backoff_s
        for attempt in range(self.options.max_reconnects + 1):
            if attempt:
                self._sleep(delay)
                delay = min(delay * 2, 8.0)
            t = time.monotonic()
            ok = self._try_open()
            self.attempts.append(f"attempt {len(self.attempts) + 1}: "
                                 f"{'connected' if ok else 'failed'} after {time.monotonic() - t:.2f} s")
            if ok:
                return True
        return False

    def _open(self) -> None:
        if not self._connect():
            raise SourceError(f"cannot open {self.description}: tried OpenCV's FFmpeg backend "
                              f"{len(self.attempts)} times with backoff from {self.options.reconnect_backoff_s} s "
                              f"(open timeout {self.options.open_timeout_s} s); the server refused or did not answer")

    def read(self) -> Frame | None:
        misses = 0
        while self._cap is not None:
            grabbed, frame = self._grab_frame()
            if frame is not None:
                return frame
            if grabbed and misses < MAX_CONSECUTIVE_CORRUPT:
                self.corrupt_frames += 1
                misses += 1
                continue
            # The stream dropped: reconnect, bounded.
            self._cap.release()
            self._cap = None
            log.warning("%s dropped after frame %d; reconnecting", self.description, self._seq)
            if self._connect():
                self.reconnects += 1
                misses = 0
                continue
            self.failure = (f"{self.description} dropped after frame {self._seq} and did not come back after "
                            f"{self.options.max_reconnects} reconnect attempts")
            return None
        return None


# --------------------------------------------------------------------------------------------
# Image folder / glob
# --------------------------------------------------------------------------------------------
class ImageFolderSource(Source):
    """Images from a folder (sorted) or a glob pattern; unreadable images are skipped and counted."""

    kind = "images"

    def __init__(self, pattern: str | os.PathLike, options: SourceOptions = SourceOptions()) -> None:
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
            files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            tried = f"folder {p} (extensions {', '.join(IMAGE_EXTENSIONS)})"
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
                log.warning("skipping unreadable image %s", path)
                continue
            return Frame(image, self._index, time.monotonic(), ms)
        return None


# --------------------------------------------------------------------------------------------
# Synthetic
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Parsing a --source string
# --------------------------------------------------------------------------------------------
_SYNTH_RE = re.compile(r"^(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


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
    return SyntheticSource(int(m.group(1)), int(m.group(2)), float(m.group(3) or 30), frames=frames,
                           duplicate_every=dup)


def open_source(spec: str | int | os.PathLike, options: SourceOptions = SourceOptions()) -> Source:
    """Build (not yet open) the Source a --source string names; errors list the accepted forms."""
    if isinstance(spec, int):
        return CameraSource(spec, options)
    text = str(spec)
    if text.isdigit():
        return CameraSource(int(text), options)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme == SYNTHETIC_SCHEME:
        return parse_synthetic(text)
    if scheme in STREAM_SCHEMES:
        return StreamSource(text, options)
    if text.startswith("/dev/video") or text.startswith("/dev/v4l/"):
        return CameraSource(text, options)
    path = pathlib.Path(text)
    if path.is_dir():
        return ImageFolderSource(path, options)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFolderSource(text, options)
        return VideoFileSource(path, options)
    if globlib.has_magic(text):
        return ImageFolderSource(text, options)
    raise SourceError(f"cannot open source {text!r}: it is not an existing file or folder, a glob, a camera "
                      f"or a URL; accepted forms: {'; '.join(SOURCE_FORMS)}")


def _redact(url: str) -> str:
    """Hide a password in a stream URL before it is logged or reported."""
    p = urllib.parse.urlsplit(url)
    if p.password:
        netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return url
