"""Per-frame results and the per-run report (what `edgeq run --json` writes)."""
from __future__ import annotations

import dataclasses
import enum
import logging
import math
import threading
from typing import Any

import numpy as np

from .stats import STAGES, Distribution

MAX_WARNINGS = 20  # distinct warnings a run keeps for its report; further ones are counted


class StopReason(str, enum.Enum):
    """Why a run ended; the value is what reports and ``--json`` say."""

    END_OF_INPUT = "end_of_input"
    MAX_FRAMES = "max_frames"
    DURATION = "duration"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM / Pipeline.stop()
    SOURCE_FAILED = "source_failed"
    SINK_FAILED = "sink_failed"
    QUIT = "quit"  # q or Esc in the preview window
    INFERENCE_STUCK = "inference_stuck"  # a stop outlasted inference's grace period (see pipeline.watchdog)
    ERROR = "error"  # an exception in a pipeline thread (re-raised, so no report carries it)

    def __str__(self) -> str:
        return self.value


class WarningLog:
    """Warnings the user should see: logged when they happen and kept for the run's report.

    The CLI silences library logs (without -v), so the report is how they reach the user. Each
    message is kept once; past ``MAX_WARNINGS`` distinct ones they are only counted. Thread-safe.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._kept: dict[str, None] = {}
        self._more = 0
        self._lock = threading.Lock()

    def warn(self, message: str) -> None:
        self._log.warning("%s", message)
        with self._lock:
            if message in self._kept:
                return
            if len(self._kept) < MAX_WARNINGS:
                self._kept[message] = None
            else:
                self._more += 1

    def messages(self) -> tuple[str, ...]:
        with self._lock:
            more = (f"... and {self._more} more warnings (logged to the 'edgeq' logger)",) if self._more else ()
            return (*self._kept, *more)


@dataclasses.dataclass(frozen=True)
class FrameResult:
    """One processed frame on its way to the sinks."""

    seq: int
    capture_time: float  # monotonic seconds
    result_time: float  # monotonic seconds, after postprocess
    stages_ms: dict[str, float]
    result: Any
    image: np.ndarray
    fps: float  # processed FPS over the recent window, for overlays

    @property
    def age_ms(self) -> float:
        return (self.result_time - self.capture_time) * 1e3

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "capture_time": self.capture_time, "result_time": self.result_time,
                "age_ms": self.age_ms, "stages_ms": self.stages_ms,
                "result": self.result.to_dict() if hasattr(self.result, "to_dict") else self.result}


@dataclasses.dataclass(frozen=True)
class LiveStatus:
    """A snapshot for the live status line."""

    elapsed_s: float
    captured: int
    processed: int
    dropped: int
    fps: float
    inference_ms: float

    def line(self) -> str:
        return (f"{self.elapsed_s:6.1f} s  processed {self.processed}  captured {self.captured}  dropped "
                f"{self.dropped}  {self.fps:5.1f} FPS  inference {self.inference_ms:.1f} ms")


@dataclasses.dataclass(frozen=True)
class RunReport:
    """Everything measured in one run. FPS values come from timestamps: (N - 1) / span."""

    mode: str
    source: dict[str, Any]
    model: str
    delegate: str
    delegate_report: dict[str, Any]
    threads: int | None
    # Rate of the unique frames received, from their capture timestamps. For a live source (or a
    # file paced in realtime mode) that is the source's real rate; for a file in every-frame mode
    # it is how fast the pipeline read it. The rate the source declares is source_fps_nominal.
    source_fps: float
    source_fps_nominal: float | None
    # captured = processed + dropped in the newest-frame slot + corrupt ones preprocessing could not
    # take + unprocessed. frames_dropped also counts frames a live source produced that the reader
    # never received (not in captured); frames_corrupt also counts frames the source could not decode.
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    frames_duplicate: int
    frames_corrupt: int
    frames_unprocessed: int  # captured, still queued when the run stopped
    reconnects: int
    fps: float  # processed frames per second, from result timestamps
    duration_s: float
    stages: dict[str, Distribution]
    latency_ms: Distribution  # frame age: capture timestamp -> result
    cpu: dict[str, Any]
    stop_reason: StopReason
    failure: str | None = None
    postprocess: str = ""
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # from the source, the pipeline and the sinks, each once
    # Per-second series (stats.Timeline.to_dict): processed FPS, frame age, inference, drops over time.
    timeline: dict[str, Any] = dataclasses.field(default_factory=dict)
    # --threads auto: the count chosen for the pipeline and every count's measured FPS (threads.ThreadChoice)
    thread_choice: dict[str, Any] | None = None
    instances: int = 1  # loaded instances of the model running consecutive frames concurrently (--instances)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["stop_reason"] = StopReason(self.stop_reason).value
        d["warnings"] = list(self.warnings)
        d["stages"] = {name: _ms(dist) for name, dist in self.stages.items()}
        d["latency_ms"] = _ms(self.latency_ms)
        return d


def _ms(dist: Distribution) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dist.to_dict().items()}


def _f(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None or v != v else format(v, fmt)


def _auto(choice: dict[str, Any] | None) -> str:
    if not choice:
        return ""
    def label(t: dict[str, Any]) -> str:
        return f"{t['threads']}x{t['instances']}" if t.get("instances", 1) > 1 else f"{t['threads']}"

    per = ", ".join(f"{label(t)}: {_f(t['fps'])}" if t.get("fps") is not None else f"{label(t)}: failed"
                    for t in choice.get("trials", ()))
    return f" (auto; pipeline FPS per threads[xinstances] {per})"


def format_report(r: RunReport) -> str:
    """The human summary table printed at the end of `edgeq run`."""
    declared = f", source declares {_f(r.source_fps_nominal)}" if r.source_fps_nominal else ""
    lines = [
        f"source: {r.source.get('description')}  mode: {r.mode}  delegate: {r.delegate}"
        + (f"  threads: {r.threads}" if r.threads else "") + (f" x {r.instances} instances" if r.instances > 1 else "")
        + _auto(r.thread_choice),
        f"stopped: {r.stop_reason}" + (f" ({r.failure})" if r.failure else "") + f" after {r.duration_s:.1f} s",
        f"frames: captured {r.frames_captured}, processed {r.frames_processed}, dropped {r.frames_dropped}, "
        f"duplicates {r.frames_duplicate}, corrupt {r.frames_corrupt}, unprocessed at stop {r.frames_unprocessed}"
        + (f", reconnects {r.reconnects}" if r.reconnects else ""),
        f"FPS: processed {_f(r.fps)}, captured {_f(r.source_fps)}{declared}",
        f"CPU: {_f(r.cpu.get('process_percent'), '.0f')} % of one core "
        f"({_f(r.cpu.get('machine_percent'), '.0f')} % of {r.cpu.get('cores')} cores)",
        "",
        f"{'stage':<12}{'mean':>9}{'p50':>9}{'p95':>9}{'p99':>9}  ms",
    ]
    for name in STAGES:
        d = r.stages.get(name)
        if d is not None:
            lines.append(f"{name:<12}{_f(d.mean, '.2f'):>9}{_f(d.p50, '.2f'):>9}{_f(d.p95, '.2f'):>9}"
                         f"{_f(d.p99, '.2f'):>9}")
    a = r.latency_ms
    lines.append(f"{'frame age':<12}{_f(a.mean, '.2f'):>9}{_f(a.p50, '.2f'):>9}{_f(a.p95, '.2f'):>9}"
                 f"{_f(a.p99, '.2f'):>9}   (capture -> result)")
    for kind, path in r.outputs.items():
        lines.append(f"{kind}: {path}")
    return "\n".join(lines)
