"""Inference workers that take their own frames and finish them in frame order; the main thread watches.

One thread per model instance takes the next frame (every-frame, one instance: a prepared one from
the preprocess queue; every-frame with replicas: straight from the source; realtime: the newest),
preprocesses it if it is raw, runs inference and files the result for an in-order finisher, so
decoders and sinks still see frames in order, one at a time. With replicas whichever worker holds
the finishing lock finishes every result that is next in order; with one instance the main thread
does, overlapping the worker's next inference. Why: routing each frame through the main thread
(hand it to a worker, wait for its result, finish it) cost a wake-up and four queue operations per
frame, and a worker idled whenever the main thread was descheduled.

A native ``invoke`` cannot be interrupted: a model whose WHILE loop never ends would otherwise keep
the run forever, and with it Ctrl-C, SIGTERM, ``--duration``, the report and the video. The main
thread only supervises (stop, duration, status); once the run is asked to stop it gives the
workers a grace period, then abandons one still inside inference (a daemon thread) and finalises.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .control import END  # what ``take`` returns at the end of input

_SLICE_S = 0.05  # how often a blocked worker re-checks the stop flag
SKIP = object()  # what ``prepare`` returns for a frame preprocessing cannot take (skipped, not counted)


class InferenceStuck(Exception):
    """Inference did not return within the grace period after the run was asked to stop."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"inference did not return within {waited_s:.1f} s after the run was asked to stop "
                         "(a model that never finishes, e.g. an endless WHILE loop?); it was abandoned")
        self.waited_s = waited_s


class FrameWorkers:
    """One inference thread per model instance; see the module docstring.

    The pipeline gives the steps, each called on a worker thread:
    ``take(timeout)`` the next item, END at the end of input or None on timeout (called under a
    lock, so items are numbered in the order taken); ``prepare(model, item)`` -> (tensor, job) or
    SKIP; ``finish(job, raw outputs, inference ms)`` postprocesses and records one frame (called in
    frame order, one at a time, never after the stop). ``on_end()`` is called once the input ended
    and every frame taken is finished. ``fail(exc)`` gets an exception that ends a worker.
    At most ``max_frames`` frames are taken (skipped ones give their turn back), and at most ``depth``
    taken frames per worker wait unfinished, so a slow sink back-pressures taking instead of
    buffering (realtime: 1, a frame is only taken once the last result is finished, never ahead).

    ``finish_on_workers``: whichever worker files the next result finishes it (every core is busy
    and the finishing CPU may as well be spent there); False: the main thread finishes, calling
    ``finish_ready`` whenever ``ready`` is set (one instance: its inference thread is the critical
    path, and postprocessing on another core overlaps its next inference).
    """

    def __init__(self, models: Sequence[Any], stop: threading.Event, take: Callable[[float], Any],
                 prepare: Callable[[Any, Any], Any], finish: Callable[[Any, Any, float], None],
                 on_end: Callable[[], None], fail: Callable[[BaseException], None],
                 max_frames: int | None = None, grace_s: float = 2.0, finish_on_workers: bool = True,
                 depth: int = 2) -> None:
        self._stop, self._take, self._prepare, self._finish = stop, take, prepare, finish
        self.finish_on_workers = finish_on_workers
        self._unsignalled = False
        self.ready = threading.Event()  # set when a result was filed (for the main thread, when it finishes)
        self._on_end, self._fail = on_end, fail
        self.grace_s = float(grace_s)
        self.slowest_s = 0.0
        self.stuck = False
        self._taking = threading.Lock()        # held by the one worker taking the next frame
        self._claims = threading.Condition()  # the max_frames budget and the read-ahead, between workers
        self._budget = max_frames             # frames that may still be taken (None: no limit)
        self._ahead = depth * len(models)
        self._taken = 0                        # number of the next frame taken
        self._ended = False
        self._running = len(models)
        self._done: dict[int, Any] = {}        # finished inferences waiting for their turn, by frame number
        self._done_lock = threading.Lock()     # guards _done (held only for a dict operation)
        self._finishing = threading.Lock()     # held by the one worker finishing frames in order
        self._next = 0                         # number of the frame finished next
        self._inferring: list[float | None] = [None] * len(models)  # start of each worker's inference
        self._threads = [threading.Thread(target=self._loop, args=(k, m), name="edgeq-inference", daemon=True)
                         for k, m in enumerate(models)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _loop(self, k: int, model: Any) -> None:
        try:
            while (claim := self._claim()) is not None:
                index, item = claim
                self._complete(index, self._work(k, model, item))
        except BaseException as exc:  # noqa: BLE001 - handed to the pipeline, re-raised in the caller's thread
            self._fail(exc)
        finally:
            with self._claims:
                self._running -= 1
                last = self._running == 0 and self._ended
            if last and self.finish_on_workers and not self._stop.is_set():
                self._on_end()  # every frame taken is finished: see _complete
            self.ready.set()

    def _claim(self) -> tuple[int, Any] | None:
        """(frame number, item) of the next frame, or None once the run stops or the input ended."""
        with self._taking:  # one taker at a time, so frames are numbered in the order taken
            while not (self._stop.is_set() or self._ended):
                with self._claims:
                    if (self._budget is not None and self._budget <= 0) or self._taken - self._next >= self._ahead:
                        self._signal()  # the main thread may be what it waits for
                        self._claims.wait(_SLICE_S)
                        continue
                item = self._take(0.0)
                if item is None:
                    self._signal()
                    item = self._take(_SLICE_S)
                if item is END:
                    self._ended = True
                elif item is not None:
                    with self._claims:
                        self._taken += 1
                        if self._budget is not None:
                            self._budget -= 1
                    return self._taken - 1, item
        return None

    def _work(self, k: int, model: Any, item: Any) -> Any:
        prepared = self._prepare(model, item)
        if prepared is SKIP:
            with self._claims:
                if self._budget is not None:
                    self._budget += 1  # its turn goes to the next frame
            return SKIP
        tensor, job = prepared
        self._signal()
        self._inferring[k] = time.monotonic()
        t0 = time.perf_counter()
        try:
            raw = model.run([tensor])
        finally:
            self._inferring[k] = None
        ms = (time.perf_counter() - t0) * 1e3
        self.slowest_s = max(self.slowest_s, ms / 1e3)
        return job, raw, ms

    def _signal(self) -> None:
        """Tell the main thread a result waits, now that this worker leaves the GIL (inference or a wait)."""
        if self._unsignalled:
            self._unsignalled = False
            self.ready.set()

    def _complete(self, index: int, result: Any) -> None:
        """File one result; finish every result that is next in frame order, unless another worker is."""
        with self._done_lock:
            self._done[index] = result
        if not self.finish_on_workers:
            self._unsignalled = True  # the main thread is told when this worker next waits or infers
            return
        while self._finishing.acquire(blocking=False):
            try:
                self._finish_ready()
            finally:
                self._finishing.release()
            with self._done_lock:  # one filed while we released? then nobody else may have seen it
                if self._next not in self._done:
                    return

    def finish_ready(self) -> None:
        """Main thread (``finish_on_workers`` False): finish what is ready in frame order, at most
        ``ahead`` results (then the caller checks its duration and status again: a slow sink must
        not keep it here); ``on_end`` once every worker ended at the end of input, all finished."""
        self.ready.clear()
        with self._finishing:
            more = self._finish_ready(self._ahead)
        if more:
            self.ready.set()
            return
        with self._claims:
            ended = self._running == 0 and self._ended
        if ended and not self._done and not self._stop.is_set():
            self._on_end()

    def _finish_ready(self, limit: int | None = None) -> bool:
        """Finish results that are next in order (at most ``limit``); True if more are ready."""
        finished = 0
        while True:
            with self._done_lock:
                if limit is not None and finished >= limit:
                    return self._next in self._done
                result = self._done.pop(self._next, None)
            if result is None:
                return False
            if result is not SKIP and not self._stop.is_set():  # after a stop a result is unprocessed
                self._finish(*result)
            finished += 1
            with self._claims:
                self._next += 1
                self._claims.notify()

    def join(self, since: float) -> None:
        """Wait for every worker to end (after a stop); ``InferenceStuck`` if one is still inside
        inference ``grace_s`` (or twice the slowest inference, if longer) after ``since``."""
        grace = max(self.grace_s, 2.0 * self.slowest_s)
        for t in self._threads:
            t.join(max(0.0, since + grace - time.monotonic()))
        while any(t.is_alive() for t in self._threads):
            if any(start is not None for start in self._inferring):
                self.stuck = True
                raise InferenceStuck(grace)
            time.sleep(_SLICE_S)  # ending after its inference (a sink still taking its result)
