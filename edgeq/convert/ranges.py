"""Activation range methods: what int8 range each activation tensor gets.

TFLite records the min/max seen during calibration. One outlier value then sets the scale for
the whole tensor and the ordinary values lose resolution. The alternatives here build a
histogram of every activation over the calibration data (running the calibrated float model
with all tensors preserved) and choose a narrower range:

- ``percentile``: clip to the 0.01st and 99.99th percentiles;
- ``mse``: the range that minimises the expected squared error of int8 quantization
  (clipping error + rounding error step²/12), searched over the histogram.

The new ranges are written into the calibrated model and quantized by TFLite's own quantizer.
``minmax`` (TFLite's choice) stays the default; ``auto`` measures all three on held-out data and
keeps the best (``edgeq.convert.select``): see the README's accuracy table for when the others win.

``RANGE_METHODS`` maps each name (``--range-method``, ``Recipe.range_method``) to its function,
``(histogram, recorded min, recorded max) -> (min, max)``, as ai-edge-quantizer's algorithm
registry does: a new method is one function and one entry.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import UsageError
from ..tflite_format import load_model_file
from .quantize import FIXED_RANGE_OPS, CalibratedModel, input_batches
from .recipes import Recipe

log = logging.getLogger(__name__)

BINS = 2048
PERCENTILE = 99.99

RangeFunction = Callable[[np.ndarray, float, float], tuple[float, float]]
"""(histogram of BINS bins over [lo, hi], lo, hi) -> the (min, max) the tensor is quantized to."""


def adjustable_tensors(cal: CalibratedModel) -> dict[int, tuple[float, float]]:
    """Recorded ranges we may change: op outputs, not the model input/output nor fixed-scale ops."""
    _, mf = load_model_file(cal.data)
    sg = mf.main
    fixed = {o for op in sg.operators if op.op in FIXED_RANGE_OPS for o in op.outputs}
    produced = {o for op in sg.operators for o in op.outputs}
    skip = set(sg.inputs) | set(sg.outputs) | fixed
    return {i: r for i, r in cal.recorded_ranges().items() if i in produced and i not in skip and r[1] > r[0]}


def collect_histograms(cal: CalibratedModel, samples: Callable[[], Iterable[np.ndarray]],
                       ranges: dict[int, tuple[float, float]]) -> dict[int, np.ndarray]:
    """Histogram (BINS bins over the recorded range) of each tensor over the calibration samples."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # preserving all tensors is the point here, not a debugging accident
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=cal.data, experimental_preserve_all_tensors=True, num_threads=1)
    inp = interp.get_input_details()[0]
    hists = {i: np.zeros(BINS, np.int64) for i in ranges}
    shape = None
    for x in samples():
        if shape != x.shape:
            interp.resize_tensor_input(inp["index"], list(x.shape), strict=False)
            interp.allocate_tensors()
            shape = x.shape
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        for i, (lo, hi) in ranges.items():
            v = interp.get_tensor(i)
            hists[i] += np.histogram(v, bins=BINS, range=(lo, hi))[0]
    return hists


def minmax_range(hist: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """TFLite's own choice: the recorded min/max, unchanged."""
    return lo, hi


def percentile_range(hist: np.ndarray, lo: float, hi: float, pct: float = PERCENTILE) -> tuple[float, float]:
    edges = np.linspace(lo, hi, BINS + 1)
    cdf = np.cumsum(hist) / max(1, hist.sum())
    tail = (100.0 - pct) / 100.0
    new_lo = edges[int(np.searchsorted(cdf, tail))] if lo < 0 else lo
    new_hi = edges[min(BINS, int(np.searchsorted(cdf, 1.0 - tail)) + 1)]
    return float(min(new_lo, 0.0)), float(max(new_hi, 0.0))


def mse_range(hist: np.ndarray, lo: float, hi: float, levels: int = 256, grid: int = 40) -> tuple[float, float]:
    """Range minimising expected int8 quantization MSE over the histogram (clip + rounding error)."""
    centers = (np.linspace(lo, hi, BINS + 1)[:-1] + np.linspace(lo, hi, BINS + 1)[1:]) / 2
    w = hist.astype(np.float64)
    if w.sum() == 0:
        return lo, hi
    fracs = np.linspace(0.05, 1.0, grid)
    los = [lo * f for f in fracs] if lo < 0 else [lo]
    best = (np.inf, lo, hi)
    for a in los:
        for f in fracs:
            b = hi * f if hi > 0 else hi
            if b <= a:
                continue
            step = (b - a) / (levels - 1)
            clipped = np.clip(centers, a, b)
            err = np.sum(w * ((centers - clipped) ** 2 + ((centers >= a) & (centers <= b)) * step * step / 12))
            if err < best[0]:
                best = (err, a, b)
    return float(min(best[1], 0.0)), float(max(best[2], 0.0))


RANGE_METHODS: dict[str, RangeFunction] = {"minmax": minmax_range, "percentile": percentile_range, "mse": mse_range}


def range_method(name: str) -> RangeFunction:
    """The function registered under `name`, or a UsageError naming the valid ones."""
    try:
        return RANGE_METHODS[name]
    except KeyError:
        raise UsageError(f"unknown range method {name!r}; valid range methods: {', '.join(RANGE_METHODS)}") from None


AUTO = "auto"
"""Not a function: choose among RANGE_METHODS by measurement on held-out data (``edgeq.convert.select``)."""


def check_range_method(name: str) -> str:
    if name != AUTO:
        range_method(name)
    return name


def compute_ranges(cal: CalibratedModel, method: str,
                   samples: Callable[[], Iterable[np.ndarray]]) -> dict[int, tuple[float, float]]:
    """New {tensor index: (min, max)} for the adjustable tensors under `method`."""
    choose = range_method(method)
    if choose is minmax_range:  # the recorded ranges already are min/max: no histograms to collect
        return {}
    ranges = adjustable_tensors(cal)
    hists = collect_histograms(cal, samples, ranges)
    return {i: choose(hists[i], lo, hi) for i, (lo, hi) in ranges.items()}


def apply_range_method(cal: CalibratedModel, method: str,
                       samples: Callable[[], Iterable[np.ndarray]]) -> CalibratedModel:
    new = compute_ranges(cal, method, samples)
    if not new:
        return cal
    old = cal.recorded_ranges()
    narrowed = sum(1 for i, r in new.items() if (r[1] - r[0]) < 0.999 * (old[i][1] - old[i][0]))
    log.info("range method %s: narrowed %d of %d activation ranges", method, narrowed, len(new))
    return cal.with_ranges(new)


def calibrate(tf: Any, converter: Any, rec: Recipe, rep: Callable | None) -> CalibratedModel:
    """Calibrate once with the recipe's range method applied: ready to quantize with any float layers."""
    cal = CalibratedModel.calibrate(tf, converter, rec)
    if rec.range_method not in ("minmax", AUTO):  # auto: the caller measures (edgeq.convert.select)
        cal = apply_range_method(cal, rec.range_method, input_batches(rep))
    return cal
