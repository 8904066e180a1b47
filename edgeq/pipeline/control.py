"""Small pieces of the pipeline's control: the newest-frame slot, signal handling, OpenCV's thread pool."""
from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from .report import StopReason
from .sources import Frame

log = logging.getLogger(__name__)
END = object()  # end-of-stream marker in the pipeline's queues and slot
POLL_S = 0.05  # how often blocked threads re-check the stop flag


def put_until_stopped(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Blocking put that gives up (False) when the run stops, so no thread hangs on a full queue."""
    while True:
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            if stop.is_set():
                return False


def put_end(q: queue.Queue, stop: threading.Event) -> None:
    """Deliver the end marker even to a full queue of a stopped run (drop the oldest item)."""
    while True:
        try:
            q.put_nowait(END)
            return
        except queue.Full:
            if not stop.is_set():
                time.sleep(POLL_S)
                continue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()


class LatestFrameSlot:
    """Holds only the newest frame. Replacing a frame nobody took counts one drop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Any:
        """The newest frame (removed from the slot), END once closed and empty, None on timeout."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                return frame
            return END if self._closed else None


@contextlib.contextmanager
def stop_on_signals(pipeline: Any) -> Iterator[None]:
    """SIGINT/SIGTERM stop the pipeline gracefully (report written, video finalised).

    A second Ctrl-C falls back to the default handler. Only installable from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        pipeline.stop(StopReason.INTERRUPTED)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def opencv_threads(count: int | None) -> Iterator[None]:
    """OpenCV's own thread pool set to ``count`` for the run, then restored (None: left alone).

    The pipeline's stages already keep the cores busy; OpenCV splitting one resize across its
    pool then only adds hand-offs, and waits on a worker that another stage has descheduled.
    """
    if count is None:
        yield
        return
    import cv2

    before = cv2.getNumThreads()
    if before != count:
        log.debug("OpenCV threads %d -> %d for the run", before, count)
        cv2.setNumThreads(count)
    try:
        yield
    finally:
        if before != count:
            cv2.setNumThreads(before)
