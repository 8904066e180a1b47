"""OpenCV VideoCapture sources: cameras (V4L2), video files and network streams (FFmpeg)."""
from __future__ import annotations

import glob as globlib
import os
import pathlib
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from ..errors import SourceError
from .source import DEFAULT_SOURCE_OPTIONS, MAX_CONSECUTIVE_CORRUPT, Frame, Source, SourceOptions


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

    def __init__(self, device: int | str, options: SourceOptions = DEFAULT_SOURCE_OPTIONS) -> None:
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
            self.warnings.warn(f"{self.description}: requested {o.width}x{o.height}, the driver gave "
                               f"{got_w}x{got_h}")

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

    def __init__(self, path: str | os.PathLike, options: SourceOptions = DEFAULT_SOURCE_OPTIONS) -> None:
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

    def __init__(self, url: str, options: SourceOptions = DEFAULT_SOURCE_OPTIONS,
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
            self.warnings.warn(f"{self.description} dropped after frame {self._seq}; reconnecting")
            if self._connect():
                self.reconnects += 1
                misses = 0
                continue
            self.failure = (f"{self.description} dropped after frame {self._seq} and did not come back after "
                            f"{self.options.max_reconnects} reconnect attempts")
            return None
        return None


def _redact(url: str) -> str:
    """Hide a password in a stream URL before it is logged or reported."""
    p = urllib.parse.urlsplit(url)
    if p.password:
        netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return url
