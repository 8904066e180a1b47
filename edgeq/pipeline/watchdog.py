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
    """Runs ``run(tensors)`` on its own thread, one call at a time; see the module docstring."""

    def __init__(self, run: Callable[[Sequence[Any]], Any], grace_s: float = 2.0) -> None:
        self._run = run
        self.grace_s = float(grace_s)
        self.slowest_s = 0.0
        self.stuck = False
        self._requests: queue.Queue = queue.Queue(1)
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self.last_ms = float("nan")  # duration of the last inference, measured on the worker thread
        self._thread = threading.Thread(target=self._loop, name="edgeq-inference", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            tensors = self._requests.get()
            if tensors is None:
                return
            t0 = time.perf_counter()
            try:
                self._result, self._error = self._run(tensors), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._result, self._error = None, exc
            self.last_ms = (time.perf_counter() - t0) * 1e3
            self._done.set()

    def submit(self, tensors: Sequence[Any]) -> None:
        """Start one inference (the previous one must have been collected); returns at once."""
        self._done.clear()
        self._requests.put(list(tensors))

    def collect(self, should_stop: Callable[[], bool]) -> Any:
        """The outputs of the submitted inference; raises ``InferenceStuck`` if a stop outlasts the grace period.

        The grace period is ``grace_s`` or twice the slowest inference so far, whichever is longer,
        so a slow but healthy model finishes its frame. ``last_ms`` is then its own duration.
        """
        stop_seen: float | None = None
        while not self._done.wait(_SLICE_S):
            if stop_seen is None and should_stop():
                stop_seen = time.monotonic()
            if stop_seen is not None:
                grace = max(self.grace_s, 2.0 * self.slowest_s)
                if time.monotonic() - stop_seen >= grace:
                    self.stuck = True
                    raise InferenceStuck(grace)
        self.slowest_s = max(self.slowest_s, self.last_ms / 1e3)
        if self._error is not None:
            raise self._error
        return self._result

    def infer(self, tensors: Sequence[Any], should_stop: Callable[[], bool]) -> Any:
        """``submit`` then ``collect``: one inference, waited for."""
        self.submit(tensors)
        return self.collect(should_stop)

    def close(self) -> None:
        """End the thread (a stuck one is left to die with the process: it is a daemon)."""
        if not self.stuck:
            self._requests.put(None)
