"""Sinks: where per-frame results go (annotated video, preview window, JSON lines, nothing).

Files are written under a temporary name beside the target and renamed on close, so a run that
is stopped (Ctrl-C, --duration, a dying source) still leaves a complete, playable file and an
interrupted write never leaves a half file under the real name.
"""
from __future__ import annotations

import abc
import json
import logging
import os
import pathlib
from typing import Any

import numpy as np

from ..errors import OutputExistsError, SinkError, UsageError
from ..fileio import publish, temp_beside, to_jsonable
from ..postprocess import draw_caption
from .report import FrameResult, WarningLog

# Container (by extension) -> FourCC that OpenCV's FFmpeg backend writes here (H.264 does not).
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class Sink(abc.ABC):
    name = "sink"

    def start(self, source: Any, mode: str) -> None:
        """Called once the source is open (its FPS and size are known), before the first frame."""

    @abc.abstractmethod
    def write(self, item: FrameResult) -> None: ...

    def close(self) -> None:
        """Finalise output; must be safe to call more than once."""

    @property
    def output_path(self) -> pathlib.Path | None:
        """The file this sink left behind after close (None: writes no file, or wrote none)."""
        return None

    @property
    def warnings(self) -> WarningLog:
        """Warnings for the run's report (made on first use: subclasses need not call an __init__)."""
        kept = self.__dict__.get("_warning_log")
        if kept is None:
            kept = self.__dict__["_warning_log"] = WarningLog(logging.getLogger(type(self).__module__))
        return kept

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullSink(Sink):
    name = "none"

    def write(self, item: FrameResult) -> None:
        pass


def _publish(tmp: pathlib.Path, path: pathlib.Path, overwrite: bool, warnings: WarningLog) -> pathlib.Path:
    """The finished file onto ``path`` (exclusively unless ``overwrite``); if another process created
    ``path`` meanwhile, this run's output is kept beside it under a name of its own, never lost."""
    try:
        return publish(tmp, path, exclusive=not overwrite)
    except OutputExistsError:
        alt = path.with_name(f"{path.stem}.edgeq-{os.getpid()}{path.suffix}")
        publish(tmp, alt)
        warnings.warn(f"{path} appeared during the run (another process?) and was left alone; this run's output "
                      f"is {alt}")
        return alt


# --------------------------------------------------------------------------------------------
# Annotation
# --------------------------------------------------------------------------------------------
def annotate(image: np.ndarray, result: Any, fps: float | None = None) -> np.ndarray:
    """A copy of the frame with the result drawn by itself (``result.draw``) and an FPS line below its captions."""
    import cv2

    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    draw = getattr(result, "draw", None)  # None: nothing decoded to show (a bare frame)
    lines = draw(out) if draw is not None else 0
    if fps is not None and fps == fps:
        draw_caption(out, f"{fps:.1f} FPS", lines)
    return out


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------
class VideoSink(Sink):
    """Annotated frames to a video file; opened on the first frame (size known), renamed on close.

    In realtime mode each result is held (written again) until the next one, by capture time, so
    the file plays at the speed things happened and shows what the camera app showed; otherwise
    a run that dropped a third of the frames would play 1.5x too fast. In every-frame mode each
    processed frame is written once.
    """

    name = "video"

    def __init__(self, path: str | os.PathLike, fps: float | None = None, annotate_frames: bool = True,
                 overwrite: bool = False) -> None:
        self.path = pathlib.Path(path)
        self.overwrite = overwrite
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise SinkError(f"--output {self.path}: unsupported video container {ext or '(none)'!r}; "
                            f"expected one of {', '.join(VIDEO_CODECS)} (H.264 writing is not available "
                            "in OpenCV's pip wheels)")
        self.fourcc = VIDEO_CODECS[ext]
        self.fps = float(fps) if fps and fps > 0 else None
        self.annotate_frames = annotate_frames
        self.frames_written = 0  # video frames, holds included
        self.hold = False  # realtime: repeat each result until the next one (set by start)
        self._first_capture: float | None = None
        self._held: np.ndarray | None = None  # realtime: the last result, repeated until the next
        self._writer = None
        self._tmp: pathlib.Path | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    def start(self, source: Any, mode: str) -> None:
        """Play back at the source's rate (30 FPS when the source declares none)."""
        if self.fps is None:
            self.fps = float(source.nominal_fps or 30.0)
        self.hold = mode == "realtime"

    def _open(self, width: int, height: int) -> None:
        import cv2

        self.fps = self.fps or 30.0
        self._tmp = temp_beside(self.path, f".partial{self.path.suffix}")
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise SinkError(f"cannot write video {self.path}: OpenCV could not open a {self.fourcc} writer "
                            f"for {width}x{height} at {self.fps:g} FPS")
        self._writer, self._size = writer, (width, height)

    def write(self, item: FrameResult) -> None:
        if self._closed:
            return
        image = annotate(item.image, item.result, item.fps) if self.annotate_frames else item.image
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self._size:
            import cv2

            image = cv2.resize(image, self._size)
        if self.hold:
            if self._first_capture is None:
                self._first_capture = item.capture_time
            # This frame's place on the source clock; the previous result fills the gap up to it.
            place = round((item.capture_time - self._first_capture) * self.fps)
            for _ in range(place - self.frames_written):
                self._writer.write(self._held)
                self.frames_written += 1
        self._writer.write(image)
        self.frames_written += 1
        self._held = image if self.hold else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self.path = _publish(self._tmp, self.path, self.overwrite, self.warnings)
        else:
            self.warnings.warn(f"no frame was processed: no video written to {self.path}")

    @property
    def output_path(self) -> pathlib.Path | None:
        return self.path if self._closed and self.frames_written else None


# --------------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------------
class JsonLinesSink(Sink):
    """One JSON object per processed frame: seq, timestamps, stage times, result."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        self.path = pathlib.Path(path)
        self.overwrite = overwrite
        self._tmp: pathlib.Path | None = None
        self._fh = None
        self._closed = False

    def start(self, source: Any, mode: str) -> None:
        self._tmp = temp_beside(self.path, ".partial")
        self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - held open across write() calls

    def write(self, item: FrameResult) -> None:
        if not self._closed and self._fh is not None:
            self._fh.write(json.dumps(to_jsonable(item.to_dict())) + "\n")

    def close(self) -> None:
        if self._closed or self._fh is None:
            return
        self._closed = True
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.path = _publish(self._tmp, self.path, self.overwrite, self.warnings)

    @property
    def output_path(self) -> pathlib.Path | None:
        return self.path if self._closed else None


# --------------------------------------------------------------------------------------------
# Preview window
# --------------------------------------------------------------------------------------------
def gui_available() -> bool:
    """True if this OpenCV build has a GUI backend (opencv-python, not -headless)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "")
    return False


class PreviewSink(Sink):
    """A live window with the annotated frames; pressing q or Esc asks the run to stop."""

    name = "preview"

    def __init__(self, title: str = "edgeq run") -> None:
        if not gui_available():
            raise UsageError("--show needs an OpenCV build with a GUI; this one is headless "
                             "(opencv-python-headless). Install opencv-python to preview, or use --output FILE.mp4")
        self.title = title
        self.quit_requested = False
        self._closed = False

    def write(self, item: FrameResult) -> None:
        import cv2

        cv2.imshow(self.title, annotate(item.image, item.result, item.fps))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit_requested = True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            import cv2

            cv2.destroyWindow(self.title)
