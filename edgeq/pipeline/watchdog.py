"""Inference off the main thread, so a stop is honoured in bounded time even when inference never returns.

A native ``invoke`` cannot be interrupted: a model whose WHILE loop never ends would otherwise keep
the pipeline's main thread forever, and with it Ctrl-C, SIGTERM, ``--duration``, the report and
the video. Here inference runs on a daemon thread; the main thread waits in short slices, and once
the run is asked to stop it gives inference a grace period, then abandons it and finalises.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

_SLICE_S = 0.05


class InferenceStuck(Exception):
    """Inference did not return within the grace period after the run was asked to stop."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"inference did not return within {waited_s:.1f} s after the run was asked to stop "
                         "(a model that never finishes, e.g. an endless WHILE loop?); it was abandoned")
        self.waited_s = waited_s


class InferenceWorker:
    """Runs ``run(tensors)`` on its own thread, one call at a time; see the module docstring.

    ``depth`` calls may be submitted before the oldest is collected (results come back in
    submission order): with 2 the worker starts its next frame at once instead of idling until the
    main thread has finished the previous result and handed it new work.
    """

    def __init__(self, run: Callable[[Sequence[Any]], Any], grace_s: float = 2.0, depth: int = 1) -> None:
        self._run = run
        self.grace_s = float(grace_s)
        self.slowest_s = 0.0
        self.stuck = False
        self.depth = depth
        self._requests: queue.Queue = queue.Queue(depth)
        self._results: queue.Queue = queue.Queue()  # (result, error, ms), oldest first; at most ``depth``
        self.last_ms = float("nan")  # duration of the last collected inference, measured on the worker thread
        self._thread = threading.Thread(target=self._loop, name="edgeq-inference", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            tensors = self._requests.get()
            if tensors is None:
                return
            t0 = time.perf_counter()
            try:
                result, error = self._run(tensors), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                result, error = None, exc
            self._results.put((result, error, (time.perf_counter() - t0) * 1e3))

    def submit(self, tensors: Sequence[Any]) -> None:
        """Queue one inference (at most ``depth`` uncollected); returns at once."""
        self._requests.put(list(tensors))

    def collect(self, should_stop: Callable[[], bool]) -> Any:
        """The outputs of the submitted inference; raises ``InferenceStuck`` if a stop outlasts the grace period.

        The grace period is ``grace_s`` or twice the slowest inference so far, whichever is longer,
        so a slow but healthy model finishes its frame. ``last_ms`` is then its own duration.
        """
        stop_seen: float | None = None
        while True:
            try:
                result, error, self.last_ms = self._results.get(timeout=_SLICE_S)
                break
            except queue.Empty:
                pass
            if stop_seen is None and should_stop():
                stop_seen = time.monotonic()
            if stop_seen is not None:
                grace = max(self.grace_s, 2.0 * self.slowest_s)
                if time.monotonic() - stop_seen >= grace:
                    self.stuck = True
                    raise InferenceStuck(grace)
        self.slowest_s = max(self.slowest_s, self.last_ms / 1e3)
        if error is not None:
            raise error
        return result

    def infer(self, tensors: Sequence[Any], should_stop: Callable[[], bool]) -> Any:
        """``submit`` then ``collect``: one inference, waited for."""
        self.submit(tensors)
        return self.collect(should_stop)

    def close(self) -> None:
        """End the thread (a stuck one is left to die with the process: it is a daemon)."""
        if not self.stuck:
            self._requests.put(None)
