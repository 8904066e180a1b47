"""The pipeline: capture -> preprocess -> inference -> postprocess -> sinks, measured.

Threads and bounded hand-offs (nothing buffers without bound):

* realtime: a capture thread keeps only the newest frame in a one-frame slot; a frame replaced
  before inference took it is counted as dropped. Files are paced at their native FPS so they
  behave like the camera that recorded them.
* every-frame, one model instance: capture -> queue -> preprocess thread -> queue -> inference;
  decoding and preprocessing of the next frames overlap inference of the current one, and the
  main thread postprocesses a result while the next inference runs.
* every-frame with replicas (more instances of the same model): each instance's worker reads the
  next frame itself (one reader at a time), preprocesses it, runs it and postprocesses it: a frame
  stays on one core from decoding to result, with no thread hand-off and no context switch between
  stages. Measured on 2 cores (MobileNetV2-0.35 on vtest.avi, 1 thread x 2 instances, interleaved
  fresh processes): +23 % FPS and 0.55 CPU ms less per frame than capture and preprocess threads
  feeding the workers through the main thread. One instance keeps those threads: its decoding must
  overlap its inference.
* inference runs on a worker thread per model instance, which takes its own frames (watchdog.py);
  with replicas consecutive frames are in flight at once, and results are finished in frame order,
  one at a time, so decoders and sinks still see frame order. One instance with N threads splits
  each inference over N cores; N single-threaded instances need no inference thread to wait for a
  peer that another stage has descheduled (see threads.py for the choice).
* both: results go through a small queue to a sink thread; a slow sink back-pressures the
  pipeline (visible as drops in realtime) instead of growing a buffer.

Stops on end of input, ``max_frames``, ``duration_s``, ``stop()`` (signals), a failing source or
sink; in every case the source is closed, sinks are finalised and a ``RunReport`` returned.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import PreprocessError, SourceError, UsageError
from ..postprocess import AUTO, FrameContext, get_decoder, resolve_decoder
from .control import END, POLL_S, LatestFrameSlot, opencv_threads, put_end, put_until_stopped
from .report import FrameResult, LiveStatus, RunReport, StopReason, WarningLog
from .sinks import Sink
from .sources import Frame, Source
from .stats import STAGES, CpuMeter, LatencyRecorder, RateMeter, Timeline
from .watchdog import SKIP, FrameWorkers, InferenceStuck

log = logging.getLogger(__name__)

MODES = ("realtime", "every-frame")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How long to run and how; ``mode=None`` picks realtime for live sources, else every-frame."""

    mode: str | None = None
    max_frames: int | None = None
    duration_s: float | None = None
    queue_size: int = 2
    sink_queue_size: int = 4
    status_interval_s: float = 0.5
    input_color: str = "BGR"
    postprocess: str | None = None  # a registered decoder's name (edgeq.postprocess), "auto"; None = the model's
    postprocess_options: tuple[tuple[str, Any], ...] = ()  # --postprocess-option key=value pairs for it
    stop_grace_s: float = 2.0  # how long a stop waits for an inference in flight before abandoning it
    # OpenCV's own thread pool during the run (restored after); None leaves it. 1: the stages already
    # occupy the cores, and OpenCV splitting a resize over its pool only adds hand-offs (control.py).
    opencv_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise UsageError(f"unknown --mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.max_frames is not None and self.max_frames <= 0:
            raise UsageError(f"--max-frames must be positive, got {self.max_frames}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be positive, got {self.duration_s}")
        if self.queue_size < 1 or self.sink_queue_size < 1:
            raise UsageError("queue sizes must be at least 1")
        if self.opencv_threads is not None and self.opencv_threads < 0:
            raise UsageError(f"opencv_threads must be >= 0 (0: OpenCV runs single-threaded) or None, "
                             f"got {self.opencv_threads}")
        if self.postprocess is not None and self.postprocess != AUTO:
            get_decoder(self.postprocess).configure(dict(self.postprocess_options))  # unknown names/values fail here


class Pipeline:
    """Runs a loaded model (edgeq.runtime EdgeModel or anything with the same methods) on a source."""

    def __init__(self, model: Any, source: Source, sinks: Sequence[Sink] = (), options: RunOptions = RunOptions(),
                 status: Callable[[LiveStatus], None] | None = None, model_name: str = "",
                 threads: int | None = None, thread_choice: Any = None, replicas: Sequence[Any] = ()) -> None:
        self.model = model
        self.source = source
        self.sinks = list(sinks)
        self.options = options
        self.status = status
        self.model_name = model_name
        self.threads = threads
        self.thread_choice = thread_choice  # a threads.ThreadChoice when --threads auto chose ``threads``
        # More loaded instances of the same model: consecutive frames run on them concurrently (each
        # with its own threads), results still finish in frame order. One instance: frames in series.
        self._models = [model, *replicas]
        _check_replicas(model, replicas)
        self._next_status = 0.0
        self.mode = options.mode or ("realtime" if source.live else "every-frame")
        shapes = [tuple(o.shape) for o in model.outputs]
        meta = getattr(model, "metadata", None)
        task = getattr(meta, "task", None)
        # A named (or declared) decoder must fit the outputs: a misfit is an error, never garbage boxes.
        self._decoder = resolve_decoder(shapes, task, options.postprocess, dict(options.postprocess_options),
                                        embedded=getattr(meta, "postprocess", None) or None)
        self.postprocess_name = self._decoder.name
        pre = model.preprocess
        self._input_size = (pre.width, pre.height) if pre is not None else (0, 0)
        self._labels = tuple(getattr(model, "labels", ()) or ())
        self._stop = threading.Event()
        self._started = False
        self._stop_reason: StopReason | None = None
        self._failure: str | None = None
        self._warnings = WarningLog(log)
        self._errors: list[BaseException] = []
        self._stages = {name: LatencyRecorder() for name in STAGES}
        self._age = LatencyRecorder()
        self._captured = RateMeter()
        self._processed = RateMeter()
        self._timeline = Timeline(time.monotonic())
        self._duplicates = 0
        self._last_seq: int | None = None  # the newest frame number read (duplicates are never new frames)
        # every-frame with replicas: no capture and preprocess threads, each worker reads (module doc)
        self._reads_on_workers = self.mode == "every-frame" and len(self._models) > 1
        self._count_lock = threading.Lock()
        self._unusable = 0  # frames the preprocessing could not take (skipped and counted as corrupt)
        self._slot = LatestFrameSlot()
        self._capture_q: queue.Queue = queue.Queue(options.queue_size)
        self._prep_q: queue.Queue = queue.Queue(options.queue_size)
        self._sink_q: queue.Queue = queue.Queue(options.sink_queue_size)

    # ---- control ---------------------------------------------------------------------------
    def stop(self, reason: StopReason | str = StopReason.INTERRUPTED) -> None:
        """Ask the run to end (thread- and signal-safe); the first reason given wins."""
        try:
            reason = StopReason(reason)
        except ValueError:
            raise UsageError(f"unknown stop reason {reason!r}; expected one of "
                             f"{', '.join(r.value for r in StopReason)}") from None
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    # ---- threads --------------------------------------------------------------------------
    def _is_new(self, frame: Frame) -> bool:
        """False for a stale frame delivered again (counted as a duplicate, never a new frame)."""
        if self._last_seq is not None and frame.seq <= self._last_seq:
            self._duplicates += 1
            return False
        self._last_seq = frame.seq
        return True

    def _capture_loop(self) -> None:
        src = self.source
        fps = src.nominal_fps
        pace = self.mode == "realtime" and not src.live and fps
        t0 = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                frame = src.read()
                if frame is None:
                    break
                if not self._is_new(frame):
                    continue
                if pace:
                    due = t0 + index / fps
                    wait = due - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                    frame = dataclasses.replace(frame, timestamp=max(due, time.monotonic()))
                index += 1
                self._stages["capture"].add(frame.capture_ms)
                self._captured.tick(frame.timestamp)
                if self.mode == "realtime":
                    self._slot.put(frame)
                elif not put_until_stopped(self._capture_q, frame, self._stop):
                    break
        except SourceError as exc:
            self._failure = str(exc)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._errors.append(exc)
        finally:
            # A failing source ends the stream like end of input (frames already captured are
            # still processed); the inference loop then reports "source_failed".
            if src.failure and not self._failure:
                self._failure = src.failure
            self._slot.close()
            if self.mode != "realtime":
                put_end(self._capture_q, self._stop)

    def _prepare(self, frame: Frame, model: Any = None) -> tuple[Any, Any, float] | None:
        """(tensor, transform, ms), or None for a frame preprocessing cannot take (skipped, counted)."""
        t0 = time.perf_counter()
        try:
            tensor, transform = (model or self.model).prepare_with_transform(frame.image, self.options.input_color)
        except PreprocessError as exc:
            with self._count_lock:  # realtime: several workers may preprocess at once
                self._unusable += 1
                first = self._unusable == 1
            if first:
                self._warnings.warn(f"skipping frame {frame.seq} (and counting further ones as corrupt): {exc}")
            return None
        return tensor, transform, (time.perf_counter() - t0) * 1e3

    def _preprocess_loop(self) -> None:
        try:
            while True:
                try:
                    frame = self._capture_q.get(timeout=POLL_S)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if frame is END:
                    break
                prepared = self._prepare(frame)
                if prepared is not None and not put_until_stopped(self._prep_q, (frame, *prepared), self._stop):
                    break
        except BaseException as exc:  # noqa: BLE001
            self._errors.append(exc)
            self.stop(StopReason.ERROR)
        finally:
            put_end(self._prep_q, self._stop)

    def _sink_loop(self) -> None:
        try:
            while True:
                item = self._sink_q.get()
                if item is END:
                    break
                t0 = time.perf_counter()
                for sink in self.sinks:
                    sink.write(item)
                    if getattr(sink, "quit_requested", False):
                        self.stop(StopReason.QUIT)
                self._stages["sink"].add((time.perf_counter() - t0) * 1e3)
        except Exception as exc:  # noqa: BLE001 - a failing sink ends the run with a partial report
            self._failure = f"sink failed: {exc}"
            self.stop(StopReason.SINK_FAILED)
            log.error("%s", self._failure)
            while self._sink_q.get() is not END:  # keep draining so the producer never blocks
                pass

    # ---- the workers' steps (watchdog.FrameWorkers calls them on its threads) ------------------
    def _read_on_worker(self) -> Any:
        """Every-frame with replicas: the next new frame straight from the source, or END (see the module doc)."""
        try:
            while (frame := self.source.read()) is not None:
                if self._is_new(frame):
                    self._stages["capture"].add(frame.capture_ms)
                    self._captured.tick(frame.timestamp)
                    return frame
        except SourceError as exc:
            self._failure = str(exc)
        if self.source.failure and not self._failure:
            self._failure = self.source.failure
        return END

    def _take(self, timeout: float) -> Any:
        """The next frame (prepared when a preprocess thread runs, raw otherwise), END, or None on timeout."""
        if self._reads_on_workers:
            return self._read_on_worker()
        if self.mode == "realtime":
            return self._slot.take(timeout)
        try:
            return self._prep_q.get(timeout=timeout)
        except queue.Empty:
            return None

    def _prepare_on_worker(self, model: Any, item: Any) -> Any:
        """(input tensor, what finishing needs) or SKIP; a raw frame is preprocessed here, on the worker."""
        if isinstance(item, Frame):
            prepared = self._prepare(item, model)
            if prepared is None:
                return SKIP
            item = (item, *prepared)
        frame, tensor, transform, pre_ms = item
        return tensor, (frame, transform, pre_ms)

    def _on_end(self) -> None:
        self.stop(StopReason.SOURCE_FAILED if self._failure else StopReason.END_OF_INPUT)

    def _on_worker_error(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self.stop(StopReason.ERROR)

    # ---- main ------------------------------------------------------------------------------
    def run(self) -> RunReport:
        """Run until a stop condition; always closes the source and finalises the sinks."""
        if self._started:
            raise UsageError("a Pipeline runs once; build a new one (with a new Source) for another run")
        self._started = True
        threads: list[threading.Thread] = []
        cpu = CpuMeter()
        start = time.monotonic()
        self._timeline.start = start
        self._next_status = start + self.options.status_interval_s
        try:
            with self.source, opencv_threads(self.options.opencv_threads):
                for sink in self.sinks:
                    if hasattr(sink, "start"):
                        sink.start(self.source, self.mode)
                if not self._reads_on_workers:
                    threads.append(threading.Thread(target=self._capture_loop, name="edgeq-capture", daemon=True))
                if self.mode == "every-frame" and not self._reads_on_workers:
                    threads.append(threading.Thread(target=self._preprocess_loop, name="edgeq-preprocess",
                                                    daemon=True))
                sink_thread = threading.Thread(target=self._sink_loop, name="edgeq-sink", daemon=True)
                threads.append(sink_thread)
                for t in threads:
                    t.start()
                workers = FrameWorkers(self._models, self._stop, self._take, self._prepare_on_worker,
                                       self._finish_frame, self._on_end, self._on_worker_error,
                                       self.options.max_frames, self.options.stop_grace_s,
                                       finish_on_workers=len(self._models) > 1,
                                       depth=1 if self.mode == "realtime" else 2)
                workers.start()
                try:
                    try:
                        self._supervise(start, workers)
                    except KeyboardInterrupt:  # a second Ctrl-C: stop now, the report is still written
                        self.stop(StopReason.INTERRUPTED)
                    except BaseException:  # e.g. a decoder's error: raised, once the inferences ended
                        self._stop.set()
                        with contextlib.suppress(InferenceStuck):
                            workers.join(time.monotonic())
                        raise
                    workers.join(time.monotonic())  # no model may be closed under a running inference
                except InferenceStuck as exc:
                    self._stop_reason, self._failure = StopReason.INFERENCE_STUCK, str(exc)
                finally:
                    self._stop.set()
                    self._sink_q.put(END)
                    for t in threads:
                        t.join()
        finally:
            for sink in self.sinks:
                sink.close()
        if self._errors:
            raise self._errors[0]
        return self._report(time.monotonic() - start, cpu.summary())

    def _supervise(self, start: float, workers: FrameWorkers) -> None:
        """Until the run stops: finish results unless the workers do, end the run at ``duration_s``, show the status."""
        opts = self.options
        end = start + opts.duration_s if opts.duration_s is not None else None
        while not self._stop.is_set():
            if workers.finish_on_workers:
                self._stop.wait(POLL_S)
            elif workers.ready.wait(POLL_S):
                workers.finish_ready()
            now = time.monotonic()
            if end is not None and now >= end:
                self.stop(StopReason.DURATION)
                return
            if self.status is not None and now >= self._next_status and self._processed.count:
                self._next_status = now + opts.status_interval_s
                self.status(self.live_status(now - start))

    def _finish_frame(self, job: tuple[Frame, Any, float], raw: Any, inference_ms: float) -> None:
        """Postprocess one inference's outputs, record its stages, hand it to the sinks (in frame order)."""
        frame, transform, pre_ms = job
        t1 = time.perf_counter()
        outputs = self.model.dequantize(raw)
        h, w = frame.image.shape[:2]
        result = self._decoder.decode(outputs, FrameContext(transform, (w, h), self._input_size, self._labels))
        t2 = time.perf_counter()
        result_time = time.monotonic()
        self._processed.tick(result_time)
        self._age.add((result_time - frame.timestamp) * 1e3)
        stage_ms = {"capture": frame.capture_ms, "preprocess": pre_ms, "inference": inference_ms,
                    "postprocess": (t2 - t1) * 1e3}
        for name in ("preprocess", "inference", "postprocess"):
            self._stages[name].add(stage_ms[name])
        self._timeline.add(result_time, self._age.last, inference_ms, self._dropped())
        if self.sinks:  # blocking: the sink thread drains until the end marker, even after a failure
            self._sink_q.put(FrameResult(frame.seq, frame.timestamp, result_time, stage_ms, result,
                                         frame.image, self._processed.recent_fps))
        if self.options.max_frames is not None and self._processed.count >= self.options.max_frames:
            self.stop(StopReason.MAX_FRAMES)

    # ---- reporting --------------------------------------------------------------------------
    def _dropped(self) -> int:
        return self._slot.dropped + self.source.skipped_frames

    def live_status(self, elapsed: float) -> LiveStatus:
        return LiveStatus(elapsed, self._captured.count, self._processed.count, self._dropped(),
                          self._processed.recent_fps, self._stages["inference"].mean)

    def _report(self, duration: float, cpu: dict[str, Any]) -> RunReport:
        rep = getattr(self.model, "delegate_report", None)
        rep_dict = rep.to_dict() if hasattr(rep, "to_dict") else {}
        captured, processed = self._captured.count, self._processed.count
        return RunReport(
            mode=self.mode, source=self.source.info(), model=self.model_name,
            delegate=str(getattr(rep, "delegate", "") or "unknown"), delegate_report=rep_dict,
            threads=self.threads, source_fps=self._captured.fps, source_fps_nominal=self.source.nominal_fps,
            frames_captured=captured, frames_processed=processed, frames_dropped=self._dropped(),
            frames_duplicate=self._duplicates, frames_corrupt=self.source.corrupt_frames + self._unusable,
            frames_unprocessed=max(0, captured - processed - self._slot.dropped - self._unusable),
            reconnects=self.source.reconnects, fps=self._processed.fps, duration_s=duration,
            stages={name: rec.summary() for name, rec in self._stages.items()}, latency_ms=self._age.summary(),
            cpu=cpu, stop_reason=self._stop_reason or StopReason.END_OF_INPUT, failure=self._failure,
            postprocess=self.postprocess_name, timeline=self._timeline.to_dict(),
            outputs={s.name: str(path) for s in self.sinks if (path := getattr(s, "output_path", None)) is not None},
            warnings=self._all_warnings(), instances=len(self._models),
            thread_choice=self.thread_choice.to_dict() if hasattr(self.thread_choice, "to_dict") else None)

    def _all_warnings(self) -> tuple[str, ...]:
        """The source's, the pipeline's and the sinks' warnings, each once, in that order."""
        logs = [getattr(self.source, "warnings", None), self._warnings,
                *(getattr(sink, "warnings", None) for sink in self.sinks)]
        return tuple(dict.fromkeys(m for w in logs if isinstance(w, WarningLog) for m in w.messages()))


def _check_replicas(model: Any, replicas: Sequence[Any]) -> None:
    """Replicas must be the same model: same input and output tensors (they share one decoder)."""
    def signature(m: Any) -> tuple:
        return tuple((tuple(t.shape), str(t.dtype)) for t in (*m.inputs, *m.outputs))

    for i, other in enumerate(replicas, 1):
        if other is model or signature(other) != signature(model):
            raise UsageError(f"inference replica {i} must be another loaded instance of the same model "
                             f"(same inputs and outputs), got {other!r}")


def run_pipeline(model: Any, source: Source, sinks: Sequence[Sink] = (), options: RunOptions = RunOptions(),
                 **kwargs: Any) -> RunReport:
    """Convenience: build a Pipeline and run it."""
    return Pipeline(model, source, sinks, options, **kwargs).run()
