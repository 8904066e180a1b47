"""How many inference threads the pipeline should give the interpreter, chosen by measurement.

Standalone inference is fastest with every core; inside the pipeline the decoder and the
preprocessing need cores too, and extra inference threads that wait for a descheduled peer cost
more than they gain. So the count is measured where it matters: a short every-frame trial of the
real pipeline on the real source for each candidate count, rounds interleaved (load on a shared
machine hits every count alike), the best FPS of each count kept.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import EdgeqError, UsageError
from .report import RunReport
from .runner import Pipeline, RunOptions
from .source import Source

AUTO = "auto"
PREFER_FEWER = 0.03  # a count with more threads must beat the best smaller count by more than 3 %


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_candidates(cores: int | None = None) -> tuple[int, ...]:
    """1..cores: the counts ``--threads auto`` tries."""
    return tuple(range(1, (cores or available_cores()) + 1))


def layout_candidates(cores: int | None = None) -> tuple[tuple[int, int], ...]:
    """(threads, instances) that ``--threads auto`` tries: one instance with 1..cores threads, then
    2..cores single-threaded instances on consecutive frames (no thread of one inference waits for
    a peer that a decoding or preprocessing thread has descheduled)."""
    cores = cores or available_cores()
    return (*((t, 1) for t in range(1, cores + 1)), *((1, k) for k in range(2, cores + 1)))


def parse_threads(value: Any, option: str = "--threads") -> int | str | None:
    """A positive integer, ``auto`` or None; anything else is a UsageError that lists what is valid."""
    if value is None or value == AUTO:
        return value
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1 or isinstance(value, bool):
        raise UsageError(f"{option} {value!r}: expected a positive integer (1..{available_cores()} cores here) "
                         f"or '{AUTO}' (measure each count on the source and keep the fastest)")
    return threads


@dataclasses.dataclass(frozen=True)
class ThreadTrial:
    """One candidate: processed FPS of its best round (every-frame), inference mean ms there."""

    threads: int
    fps: float | None
    fps_rounds: tuple[float, ...]
    inference_ms: float | None
    frames: int
    error: str | None = None
    instances: int = 1  # model instances running consecutive frames concurrently, each with ``threads``

    @property
    def label(self) -> str:
        return f"{self.threads}" if self.instances == 1 else f"{self.threads}x{self.instances}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    """The count chosen for the pipeline and every count's measurement."""

    threads: int
    trials: tuple[ThreadTrial, ...]
    frames_per_trial: int
    rounds: int
    reason: str
    instances: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "instances": self.instances, "frames_per_trial": self.frames_per_trial,
                "rounds": self.rounds, "reason": self.reason, "trials": [t.to_dict() for t in self.trials]}

    def summary(self) -> str:
        per = ", ".join(f"{t.label}: {t.fps:.1f}" if t.fps is not None else f"{t.label}: failed ({t.error})"
                        for t in self.trials)
        chosen = f"{self.threads} inference thread(s)" + (f" x {self.instances} instances" if self.instances > 1
                                                           else "")
        return (f"--threads auto chose {chosen} for the pipeline; every-frame FPS per threads[xinstances] (best of "
                f"{self.rounds} interleaved round(s) of {self.frames_per_trial} frames): {per}; {self.reason}")


def _trial(load_model: Callable[[int], Any], open_source: Callable[[], Source], layout: tuple[int, int],
           frames: int, options: RunOptions) -> RunReport:
    trial_options = dataclasses.replace(options, mode="every-frame", max_frames=frames, duration_s=None)
    threads, instances = layout
    models: list[Any] = []
    try:
        models.extend(load_model(threads) for _ in range(instances))
        return Pipeline(models[0], open_source(), (), trial_options, threads=threads, replicas=models[1:]).run()
    finally:
        for model in models:
            close = getattr(model, "close", None)
            if close is not None:
                close()


def _layouts(candidates: Sequence[int | tuple[int, int]] | None) -> tuple[tuple[int, int], ...]:
    if candidates is None:
        return layout_candidates()
    layouts = tuple(dict.fromkeys((c, 1) if isinstance(c, int) else tuple(c) for c in candidates))
    if not layouts or any(len(c) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in c)
                          for c in layouts):
        raise UsageError(f"thread candidates must be positive thread counts or (threads, instances) pairs, got "
                         f"{list(candidates)}")
    return layouts


def choose_pipeline_threads(load_model: Callable[[int], Any], open_source: Callable[[], Source],
                            candidates: Sequence[int | tuple[int, int]] | None = None, frames: int = 90,
                            rounds: int = 2, options: RunOptions | None = None) -> ThreadChoice:
    """Measure the every-frame pipeline on the first ``frames`` frames for each candidate; keep the fastest.

    A candidate is a thread count (one model instance) or a (threads, instances) pair; by default
    ``layout_candidates()``: 1..cores threads, then 2..cores single-threaded instances.
    ``load_model(threads)`` returns a freshly loaded model (closed after its trial); ``open_source()``
    a new, unopened Source on the real input (each trial reads from its start). Rounds run the
    candidates in alternating order and keep each one's best FPS, so load from other processes
    does not favour whichever ran first. A candidate using more cores (threads x instances) wins
    only if it beats the best cheaper one by more than ``PREFER_FEWER``: otherwise the cores are
    left to the rest of the machine.
    """
    layouts = _layouts(candidates)
    if frames < 3 or rounds < 1:
        raise UsageError(f"a thread trial needs at least 3 frames and 1 round, got frames={frames}, rounds={rounds}")
    options = options or RunOptions()
    fps: dict[tuple[int, int], list[float]] = {c: [] for c in layouts}
    inference: dict[tuple[int, int], float] = {}
    processed = dict.fromkeys(layouts, 0)
    errors: dict[tuple[int, int], str] = {}
    for r in range(rounds):
        for c in layouts if r % 2 == 0 else reversed(layouts):
            if c in errors:
                continue
            try:
                report = _trial(load_model, open_source, c, frames, options)
            except EdgeqError as exc:
                errors[c] = str(exc)
                continue
            if report.frames_processed < 3 or report.fps != report.fps:
                errors[c] = (f"only {report.frames_processed} frame(s) processed "
                             f"(stop: {report.stop_reason.value}{'; ' + report.failure if report.failure else ''})")
                continue
            fps[c].append(report.fps)
            processed[c] = report.frames_processed
            if report.fps >= max(fps[c]):
                inference[c] = report.stages["inference"].mean
    trials = tuple(ThreadTrial(c[0], max(fps[c]) if fps[c] and c not in errors else None, tuple(fps[c]),
                               inference.get(c), processed[c], errors.get(c), c[1]) for c in layouts)
    return _pick(trials, frames, rounds)


def _pick(trials: tuple[ThreadTrial, ...], frames: int, rounds: int) -> ThreadChoice:
    measured = sorted((t for t in trials if t.fps is not None), key=lambda t: (t.threads * t.instances, t.instances))
    if not measured:
        details = "; ".join(f"{t.label} thread(s): {t.error}" for t in trials)
        raise EdgeqError(f"--threads auto: no thread count could be measured on this source ({details}); "
                         "give --threads N instead")
    best = measured[0]
    for t in measured[1:]:
        if t.fps > best.fps * (1.0 + PREFER_FEWER):
            best = t
    fastest = max(measured, key=lambda t: t.fps)
    if fastest is best:
        reason = "the fastest"
    else:
        reason = (f"within {PREFER_FEWER:.0%} of the fastest ({fastest.label}: {fastest.fps:.1f}) using fewer "
                  "cores, leaving them to the rest of the machine")
    return ThreadChoice(best.threads, trials, frames, rounds, reason, best.instances)
