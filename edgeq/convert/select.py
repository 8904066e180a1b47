"""``--range-method auto``: choose the activation range method by measurement, not by habit.

Calibrate once (TFLite's min/max), derive the percentile and MSE-optimal ranges from one pass of
activation histograms, quantize each candidate and score it against the float graph on data the
calibration did not see: the evaluation data when a caller has some (``convert_to_budget``), else
a held-out slice of the calibration source (the items beyond ``--num-samples``). The winner has
the smallest drop (top-1 drop on labelled data, disagreement with float otherwise), ties broken
by the higher output SQNR; the recipe records it and the scores of every candidate.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from .calibration import CalibrationDataset
from .quantize import CalibratedModel
from .ranges import AUTO, RANGE_METHODS, adjustable_tensors, collect_histograms, minmax_range

__all__ = ["AUTO", "RangeSelection", "heldout_dataset", "heldout_tensors", "select_range_method", "tensor_scorer"]
HELDOUT_SAMPLES = 500

ScoreFunction = Callable[[bytes], tuple[float, float]]
"""candidate .tflite -> (drop in points against float, output SQNR in dB)."""


@dataclasses.dataclass(frozen=True)
class RangeCandidate:
    method: str
    drop: float          # points: top-1 drop, or 100 - agreement with float
    sqnr_db: float
    chosen: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "drop": round(self.drop, 3),
                "sqnr_db": round(self.sqnr_db, 3) if math.isfinite(self.sqnr_db) else "inf", "chosen": self.chosen}


@dataclasses.dataclass(frozen=True)
class RangeSelection:
    """What ``auto`` measured: every candidate's score and where it was measured."""

    candidates: tuple[RangeCandidate, ...]
    measured_on: str
    samples: int

    @property
    def chosen(self) -> str:
        return next(c.method for c in self.candidates if c.chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "measured_on": self.measured_on, "samples": self.samples,
                "candidates": [c.to_dict() for c in self.candidates]}

    def describe(self) -> str:
        parts = [f"{c.method} drop {c.drop:.2f} / {c.sqnr_db:.1f} dB" for c in self.candidates]
        return (f"range method {self.chosen} chosen by measurement on {self.measured_on} ({self.samples} samples): "
                + "; ".join(parts))


def select_range_method(cal: CalibratedModel, samples: Callable[[], Iterable[np.ndarray]], score: ScoreFunction,
                        measured_on: str, n: int, methods: Sequence[str] = tuple(RANGE_METHODS)
                        ) -> tuple[CalibratedModel, RangeSelection]:
    """The calibrated model with the best-measured ranges applied, and the measurements.

    cal: calibrated with min/max; samples: the calibration inputs (for the histograms)."""
    adjustable = adjustable_tensors(cal)
    hists = collect_histograms(cal, samples, adjustable)
    scored = []
    for method in methods:
        fn = RANGE_METHODS[method]
        variant = cal if fn is minmax_range else cal.with_ranges(
            {i: fn(hists[i], lo, hi) for i, (lo, hi) in adjustable.items()})
        drop, sq = score(variant.quantize(cal.recipe.float_nodes, cal.recipe.float_ops))
        scored.append((method, variant, drop, sq))
    best = min(scored, key=lambda t: (round(t[2], 6), -t[3] if math.isfinite(t[3]) else -1e9))
    cands = tuple(RangeCandidate(m, d, s, m == best[0]) for m, _, d, s in scored)
    chosen = CalibratedModel(cal.tf, best[1].data, cal.recipe.replace(range_method=best[0]))
    return chosen, RangeSelection(cands, measured_on, n)


def heldout_dataset(dataset: CalibrationDataset | None, limit: int = HELDOUT_SAMPLES) -> CalibrationDataset:
    """The calibration source sampled further: its items beyond the calibration ones are held out.

    The sampling is a seeded permutation, so a larger sample with the same seed starts with the same
    items: its tail is disjoint from the calibration set. Cheap (no decoding): checked before TensorFlow."""
    if dataset is None:
        raise UsageError("--range-method auto needs calibration data")
    if dataset.kind not in ("folder", "glob", "array"):
        raise UsageError(f"--range-method auto needs held-out data, and a {dataset.kind} calibration source has "
                         "none: give evaluation data, or an image folder/glob/array calibration source")
    more = CalibrationDataset(dataset.source, dataset.preprocess, num_samples=len(dataset) + limit,
                              seed=dataset.seed, transform=dataset.transform, input_color=dataset.input_color)
    if len(more) <= len(dataset) or more.items[:len(dataset)] != dataset.items:
        raise UsageError(f"--range-method auto measures on held-out data, and {dataset.describe()} has no items "
                         f"beyond the {len(dataset)} used for calibration: lower --num-samples, add images, or "
                         "give evaluation data (convert --max-accuracy-drop ... --eval-data)")
    return more


def heldout_tensors(dataset: CalibrationDataset, limit: int = HELDOUT_SAMPLES) -> np.ndarray:
    """Preprocessed calibration items the calibration did not use (those beyond --num-samples)."""
    more = heldout_dataset(dataset, limit)
    tensors = list(more)[len(dataset):] if not dataset.skipped else _tail(more, dataset)
    if not tensors:
        raise UsageError(f"--range-method auto: the held-out items of {dataset.describe()} are unreadable")
    return np.stack(tensors).astype(np.float32)


def _tail(more: CalibrationDataset, dataset: CalibrationDataset) -> list[np.ndarray]:
    """Held-out samples when some calibration items were skipped (positions shift then)."""
    extra = CalibrationDataset(more.source, more.preprocess, num_samples=len(more), seed=more.seed,
                               transform=more.transform, input_color=more.input_color)
    extra._items = list(more.items[len(dataset):])  # noqa: SLF001 - the held-out items only
    return list(extra)


def tensor_scorer(reference: bytes, inputs: np.ndarray) -> ScoreFunction:
    """Score candidates on ready float input tensors against the float reference: (disagreement, SQNR)."""
    ref = run_tensors(reference, inputs)
    ref_cls = np.argmax(ref, axis=1)
    signal = float(np.sum(ref.astype(np.float64) ** 2))

    def score(model: bytes) -> tuple[float, float]:
        out = run_tensors(model, inputs)
        noise = float(np.sum((ref.astype(np.float64) - out) ** 2))
        sq = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
        return 100.0 * float(np.mean(np.argmax(out, axis=1) != ref_cls)), sq
    return score


def run_tensors(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """First output, dequantized and flattened per sample, of a single-input .tflite on float inputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model, num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *inputs.shape[1:]], strict=False)
    interp.allocate_tensors()
    scale, zp = inp["quantization"]
    results = []
    for x in inputs:
        v = x[None]
        if inp["dtype"] in (np.int8, np.uint8):
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / scale + zp), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        oscale, ozp = out["quantization"]
        if out["dtype"] in (np.int8, np.uint8):
            y = (y - ozp) * oscale
        results.append(y.reshape(-1))
    return np.stack(results)
