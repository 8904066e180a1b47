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
        self.last = float("nan")
        self._samples: list[float] = []
        self._rng = random.Random(seed)

    def add(self, ms: float) -> None:
        self.last = ms
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


class Timeline:
    """Per-interval counts over a run, for plots of FPS, frame age and drops over time.

    One bin per ``bin_s`` seconds since the start; past ``max_bins`` bins, neighbours are merged and
    the bin width doubles, so memory stays bounded however long the run is.
    """

    def __init__(self, start: float, bin_s: float = 0.25, max_bins: int = 480) -> None:
        self.start = start
        self.bin_s = bin_s
        self.max_bins = max_bins
        self._frames: list[int] = []
        self._age_sum: list[float] = []
        self._inference_sum: list[float] = []
        self._dropped: list[int] = []  # cumulative drops at the bin's last result
        self._last = start

    def add(self, t: float, age_ms: float, inference_ms: float, dropped: int) -> None:
        self._last = max(self._last, t)
        i = max(0, int((t - self.start) / self.bin_s))
        while i >= self.max_bins:
            self._halve()
            i = max(0, int((t - self.start) / self.bin_s))
        while len(self._frames) <= i:
            self._frames.append(0)
            self._age_sum.append(0.0)
            self._inference_sum.append(0.0)
            self._dropped.append(self._dropped[-1] if self._dropped else 0)
        self._frames[i] += 1
        self._age_sum[i] += age_ms
        self._inference_sum[i] += inference_ms
        self._dropped[i] = dropped

    def _halve(self) -> None:
        def pairs(xs: list) -> list:
            return [xs[k] + (xs[k + 1] if k + 1 < len(xs) else 0) for k in range(0, len(xs), 2)]

        self._dropped = [self._dropped[min(k + 1, len(self._dropped) - 1)] for k in range(0, len(self._dropped), 2)]
        self._frames, self._age_sum, self._inference_sum = (pairs(self._frames), pairs(self._age_sum),
                                                            pairs(self._inference_sum))
        self.bin_s *= 2

    def to_dict(self) -> dict[str, Any]:
        """Bin start times (s), processed FPS, mean frame age and inference (ms; None for an empty bin), drops.

        The last bin is usually partial: its FPS is over the time up to the last result in it, or None
        when that is under half a bin (one frame just after a bin edge says nothing about the rate).
        """
        def mean(sums: list[float]) -> list[float | None]:
            return [round(s / n, 3) if n else None for s, n in zip(sums, self._frames)]

        fps: list[float | None] = [round(n / self.bin_s, 3) for n in self._frames]
        if fps:
            width = self._last - self.start - (len(fps) - 1) * self.bin_s
            fps[-1] = round(self._frames[-1] / width, 3) if width >= self.bin_s / 2 else None
        return {"bin_s": self.bin_s, "t_s": [round(k * self.bin_s, 3) for k in range(len(self._frames))],
                "fps": fps, "age_ms": mean(self._age_sum),
                "inference_ms": mean(self._inference_sum), "dropped": list(self._dropped)}
