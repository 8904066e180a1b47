"""Measurement: per-stage latency distributions, FPS from timestamps, CPU utilisation.

FPS is always (N - 1) / (t_last - t_first): N frames span N - 1 intervals. Distributions keep
an exact count and mean plus a bounded uniform reservoir for percentiles, so a run of any
length uses bounded memory (exact percentiles up to ``RESERVOIR`` samples).
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from typing import Any

import numpy as np

RESERVOIR = 100_000
STAGES = ("capture", "preprocess", "inference", "postprocess", "sink")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Summary of a latency distribution in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LatencyRecorder:
    """Collects samples (ms); exact count/mean/max, reservoir-sampled percentiles."""

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.capacity = capacity
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._samples: list[float] = []
        self._rng = random.Random(seed)

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        self.maximum = max(self.maximum, ms)
        if len(self._samples) < self.capacity:
            self._samples.append(ms)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self._samples[j] = ms

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def summary(self) -> Distribution:
        if not self.count:
            nan = float("nan")
            return Distribution(0, nan, nan, nan, nan, nan)
        p50, p95, p99 = np.percentile(np.asarray(self._samples), [50, 95, 99])
        return Distribution(self.count, self.total / self.count, float(p50), float(p95), float(p99), self.maximum)


def rate(count: int, first: float | None, last: float | None) -> float:
    """Events per second from the first and last timestamps of ``count`` events (count - 1 intervals)."""
    if count < 2 or first is None or last is None or last <= first:
        return float("nan")
    return (count - 1) / (last - first)


class RateMeter:
    """FPS of a stream of events from their timestamps, overall and over a recent window."""

    def __init__(self, window: int = 30) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self._recent: list[float] = []
        self._window = window

    def tick(self, t: float) -> None:
        if self.first is None:
            self.first = t
        self.last = t
        self.count += 1
        self._recent.append(t)
        if len(self._recent) > self._window:
            del self._recent[0]

    @property
    def fps(self) -> float:
        return rate(self.count, self.first, self.last)

    @property
    def recent_fps(self) -> float:
        r = self._recent
        return rate(len(r), r[0] if r else None, r[-1] if r else None)


class CpuMeter:
    """Process CPU time over wall time: 100 % = one core fully busy."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = _cpu_seconds()

    def summary(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        cpu = _cpu_seconds() - self._c0
        cores = os.cpu_count() or 1
        pct = 100.0 * cpu / wall if wall > 0 else float("nan")
        return {"process_percent": pct, "machine_percent": pct / cores, "cores": cores,
                "cpu_seconds": cpu, "wall_seconds": wall}


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system
