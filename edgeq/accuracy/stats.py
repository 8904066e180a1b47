"""How much a measured accuracy drop can be trusted: resolution and a paired bootstrap interval.

With N samples, one point is N/100 samples; a budget of 1 point on 100 images is one image, inside
the noise of any real measurement. The interval resamples the samples (paired: the reference and
the candidate see the same resample), so it is the uncertainty of the drop itself.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
CI_LEVEL = 95.0


@dataclasses.dataclass(frozen=True)
class DropInterval:
    """A drop in points with its bootstrap confidence interval, on `samples` samples."""

    drop: float
    low: float
    high: float
    samples: int
    level: float = CI_LEVEL

    def to_dict(self) -> dict[str, Any]:
        return {"drop": round(self.drop, 3), "ci_low": round(self.low, 3), "ci_high": round(self.high, 3),
                "ci_level": self.level, "samples": self.samples,
                "samples_per_point": round(self.samples / 100.0, 3)}

    def describe(self) -> str:
        return f"{self.drop:.2f} points ({self.level:g}% CI {self.low:.2f}..{self.high:.2f}, {self.samples} samples)"


def drop_interval(lost: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                  level: float = CI_LEVEL) -> DropInterval:
    """lost: per sample, reference-correct minus candidate-correct (top-1), or 1 where they disagree.

    Returns the drop (100 * mean) with a percentile bootstrap interval."""
    d = np.asarray(lost, np.float64).ravel()
    n = len(d)
    if n == 0:
        return DropInterval(0.0, 0.0, 0.0, 0, level)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bounded memory for large sets
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        means[start:start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return DropInterval(100.0 * float(d.mean()), 100.0 * float(lo), 100.0 * float(hi), n, level)


def resolution_note(samples: int) -> str:
    """'100 samples: 1 point = 1 sample' — what one point of accuracy means on this data."""
    per_point = samples / 100.0
    what = f"{per_point:g} sample" + ("" if per_point == 1 else "s")
    return f"{samples} samples: 1 point = {what}"


def budget_warning(samples: int, budget: float, interval: DropInterval | None = None) -> str | None:
    """A warning when the budget is inside the noise of the measurement, else None.

    Inside the noise: the budget is fewer than 10 samples, or the drop's confidence interval is wider
    than the budget."""
    width = (interval.high - interval.low) if interval is not None else 0.0
    if budget * samples / 100.0 >= 10 and width <= max(budget, 1e-9):
        return None
    ci = f"; the drop's {interval.level:g}% CI is {interval.low:.2f}..{interval.high:.2f} points" if interval else ""
    return (f"{resolution_note(samples)}: a {budget:g}-point budget is within the noise of this measurement{ci}. "
            "Give more evaluation samples (--eval-data) for a budget you can trust")
