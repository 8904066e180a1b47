"""``edgeq eval``: how near are the quantized model's answers to the float model's, and to the truth?

Every model sees the same preprocessed pixels (one ``Preprocess`` contract for all), batch by
batch; statistics are accumulated as they stream, so memory does not grow with the data set.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from ..preprocess import Preprocess, resolve_preprocess
from .data import EvalData, read_eval_data
from .runners import ModelRunner, open_runner
from .stats import DropInterval, drop_interval, resolution_note

NOISY_CI_WIDTH = 1.0   # points: a drop whose CI is wider than this gets a resolution warning
MIN_SAMPLES = 1000     # below: one point is under 10 samples, whatever the interval says (0 of 100 is not 0%)


@dataclasses.dataclass(frozen=True)
class ModelAccuracy:
    path: str
    size_bytes: int
    top1: float | None          # percent, None when the data is unlabelled
    top5: float | None          # percent, None when unlabelled or fewer than 5 classes
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OutputComparison:
    name: str
    sqnr_db: float              # 10 log10(signal power / error power); inf when identical
    cosine: float               # mean over samples of the cosine similarity of flattened outputs
    max_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Comparison:
    candidate: str
    reference: str
    agreement: float            # percent of samples whose top-1 class matches the reference's
    outputs: tuple[OutputComparison, ...]
    size_bytes: int
    reference_size_bytes: int
    top1_drop: float | None     # reference top-1 minus candidate top-1, in points
    drop_ci: DropInterval | None = None   # bootstrap CI of the top-1 drop (labelled) or of the disagreement

    @property
    def sqnr_db(self) -> float:
        """The worst output's SQNR (the number to watch)."""
        return min(o.sqnr_db for o in self.outputs)

    @property
    def cosine(self) -> float:
        return min(o.cosine for o in self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max(o.max_abs_error for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "reference": self.reference, "agreement": self.agreement,
                "sqnr_db": _finite(self.sqnr_db), "cosine": self.cosine, "max_abs_error": self.max_abs_error,
                "top1_drop": self.top1_drop, "drop_ci": self.drop_ci.to_dict() if self.drop_ci else None,
                "size_bytes": self.size_bytes,
                "size_ratio": round(self.reference_size_bytes / self.size_bytes, 3) if self.size_bytes else None,
                "outputs": [{**o.to_dict(), "sqnr_db": _finite(o.sqnr_db)} for o in self.outputs]}


@dataclasses.dataclass(frozen=True)
class EvalReport:
    data: str
    samples: int
    labelled: bool
    preprocess: Preprocess
    models: tuple[ModelAccuracy, ...]        # reference first
    comparisons: tuple[Comparison, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "samples": self.samples, "labelled": self.labelled,
                "preprocess": self.preprocess.to_dict(), "models": [m.to_dict() for m in self.models],
                "comparisons": [c.to_dict() for c in self.comparisons], "warnings": list(self.warnings)}


def _finite(x: float) -> float | str:
    return x if math.isfinite(x) else "inf"


class _ComparisonStats:
    """Streaming sums for one candidate against the reference."""

    def __init__(self, n_outputs: int):
        self.agree = 0
        self.count = 0
        self.disagree: list[np.ndarray] = []   # per sample, for the bootstrap interval
        self.signal = np.zeros(n_outputs)
        self.noise = np.zeros(n_outputs)
        self.cos_sum = np.zeros(n_outputs)
        self.max_abs = np.zeros(n_outputs)

    def update(self, ref: list[np.ndarray], cand: list[np.ndarray]) -> None:
        n = len(ref[0])
        self.count += n
        same = _argmax(ref[0]) == _argmax(cand[0])
        self.agree += int(np.sum(same))
        self.disagree.append(~same)
        for k, (r, c) in enumerate(zip(ref, cand)):
            r2, c2 = r.reshape(n, -1).astype(np.float64), c.reshape(n, -1).astype(np.float64)
            d = r2 - c2
            self.signal[k] += float(np.sum(r2 * r2))
            self.noise[k] += float(np.sum(d * d))
            self.max_abs[k] = max(self.max_abs[k], float(np.max(np.abs(d))) if d.size else 0.0)
            denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(c2, axis=1)
            both_zero = (denom == 0) & (np.abs(d).sum(axis=1) == 0)
            cos = np.where(denom > 0, np.sum(r2 * c2, axis=1) / np.where(denom > 0, denom, 1), both_zero * 1.0)
            self.cos_sum[k] += float(np.sum(cos))


def _argmax(y: np.ndarray) -> np.ndarray:
    return np.argmax(y.reshape(len(y), -1), axis=1)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    if noise_power == 0:
        return math.inf
    if signal_power == 0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def common_preprocess(runners: Sequence[ModelRunner], options: dict[str, Any] | None,
                      warnings: list[str]) -> Preprocess:
    """The one contract every model is fed with: a candidate's embedded one (all must agree; options are
    then ignored, since each model must see what it was calibrated on), else one from the options."""
    embedded = [r for r in list(runners[1:]) + [runners[0]] if r.preprocess is not None]
    for r in embedded[1:]:
        if r.preprocess != embedded[0].preprocess:
            raise UsageError(f"{embedded[0].path} embeds preprocessing {embedded[0].preprocess.describe()} but "
                             f"{r.path} embeds {r.preprocess.describe()}; every model must take the same "
                             "preprocessing: compare models converted with the same options")
    source = embedded[0] if embedded else runners[0]
    resolved = resolve_preprocess(source.input_shape, options, embedded=source.preprocess, model=str(source.path),
                                  options_override_embedded=False)
    warnings.extend(resolved.warnings)
    return resolved.preprocess


def _check_shapes(runners: Sequence[ModelRunner], pre: Preprocess) -> None:
    want = (pre.height, pre.width, pre.channels)
    for r in runners:
        if tuple(r.input_shape[1:]) != want:
            raise UsageError(f"{r.path} takes input {list(r.input_shape[1:])} but the preprocessing gives "
                             f"{list(want)}; all models must take the same input")


def evaluate(reference: Any, candidates: Sequence[Any], data: EvalData | str | os.PathLike, *,
             preprocess_options: dict[str, Any] | None = None, batch: int = 256, num_threads: int | None = None,
             limit: int | None = None, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Evaluate float REFERENCE and quantized CANDIDATES on the same data.

    reference/candidates: paths (.tflite, .keras/.h5, SavedModel dir), .tflite bytes, an in-memory Keras
    model (reference) or open runners.
    """
    if not candidates:
        raise UsageError("give at least one CANDIDATE model to compare with the reference")
    dataset = data if isinstance(data, EvalData) else read_eval_data(data)
    dataset = dataset.subset(limit, seed)
    if len(dataset) == 0:
        raise DataError(f"evaluation data {dataset.source} is empty")
    warnings: list[str] = []
    runners = [_as_runner(m, num_threads, batch, i) for i, m in enumerate([reference, *candidates])]
    try:
        return _evaluate(runners, dataset, preprocess_options, batch, progress, warnings)
    finally:
        for r in runners:
            r.close()


def _as_runner(model: Any, num_threads: int | None, batch: int, i: int) -> ModelRunner:
    if hasattr(model, "predict") and hasattr(model, "preprocess") and hasattr(model, "close"):
        return model  # already a ModelRunner (a Keras model has predict/input_shape too, but no preprocess)
    return open_runner(model, num_threads=num_threads, batch=batch, name=None if not isinstance(model, bytes)
                       else f"<model {i}>")


def _evaluate(runners: list[ModelRunner], dataset: EvalData, preprocess_options: dict[str, Any] | None,
              batch: int, progress: Callable[[int, int], None] | None, warnings: list[str]) -> EvalReport:
    pre = common_preprocess(runners, preprocess_options, warnings)
    _check_shapes(runners, pre)
    labels_src = next((r.labels for r in runners if r.labels), ())
    ref = runners[0]
    correct1 = np.zeros(len(runners), np.int64)
    correct5 = np.zeros(len(runners), np.int64)
    stats: list[_ComparisonStats] | None = None
    hits: list[list[np.ndarray]] = [[] for _ in runners]   # per model, per sample top-1 correct (labelled)
    num_classes = 0
    total = len(dataset)
    done = 0
    pending: list[np.ndarray] = []
    indices: list[int] = []

    def flush() -> None:
        nonlocal stats, num_classes, dataset, done
        pixels = np.stack(pending)
        outs = [r.predict(pixels, pre) for r in runners]
        if stats is None:
            num_classes = int(np.prod(outs[0][0].shape[1:]))
            for r, o in zip(runners, outs):
                if len(o) != len(outs[0]) or any(a.shape[1:] != b.shape[1:] for a, b in zip(o, outs[0])):
                    raise UsageError(f"{r.path} has outputs {[list(a.shape[1:]) for a in o]} but the reference "
                                     f"{ref.path} has {[list(a.shape[1:]) for a in outs[0]]}; they cannot be compared")
            if dataset.labelled:
                order_warning = dataset.name_order_warning(labels_src)
                if order_warning:
                    warnings.append(order_warning)
                dataset = dataset.with_model_classes(labels_src, num_classes)
            stats = [_ComparisonStats(len(outs[0])) for _ in runners[1:]]
        if dataset.labelled:
            y = dataset.labels[np.asarray(indices)]
            for m, o in enumerate(outs):
                scores = o[0].reshape(len(y), -1)
                hit = np.argmax(scores, axis=1) == y
                hits[m].append(hit)
                correct1[m] += int(np.sum(hit))
                if num_classes >= 5:
                    top5 = np.argpartition(-scores, 4, axis=1)[:, :5]
                    correct5[m] += int(np.sum(np.any(top5 == y[:, None], axis=1)))
        for s, o in zip(stats, outs[1:]):
            s.update(outs[0], o)
        done += len(pending)
        pending.clear()
        indices.clear()
        if progress is not None:
            progress(done, total)

    for i, img in dataset.images():
        pending.append(pre.to_pixels(img, dataset.input_color)[0])
        indices.append(i)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return _report(runners, dataset, pre, correct1, correct5, num_classes, stats or [], warnings,
                   [np.concatenate(h) if h else np.zeros(0, bool) for h in hits])


def _report(runners: list[ModelRunner], dataset: EvalData, pre: Preprocess, correct1: np.ndarray,
            correct5: np.ndarray, num_classes: int, stats: list[_ComparisonStats],
            warnings: list[str], hits: list[np.ndarray] | None = None) -> EvalReport:
    n = len(dataset)
    models = []
    for m, r in enumerate(runners):
        top1 = 100.0 * correct1[m] / n if dataset.labelled else None
        top5 = 100.0 * correct5[m] / n if dataset.labelled and num_classes >= 5 else None
        models.append(ModelAccuracy(r.path, r.size_bytes, top1, top5, n))
    names = [getattr(s, "name", f"output{k}") for k, s in enumerate(getattr(runners[0], "outputs", ()) or ())]
    comps = []
    for m, s in enumerate(stats, 1):
        outs = tuple(OutputComparison(names[k] if k < len(names) else f"output{k}",
                                      sqnr_db(s.signal[k], s.noise[k]), float(s.cos_sum[k] / s.count),
                                      float(s.max_abs[k])) for k in range(len(s.signal)))
        drop = models[0].top1 - models[m].top1 if dataset.labelled else None
        lost = (hits[0].astype(np.int8) - hits[m].astype(np.int8) if dataset.labelled and hits
                else np.concatenate(s.disagree).astype(np.int8))
        ci = drop_interval(lost)
        comps.append(Comparison(runners[m].path, runners[0].path, 100.0 * s.agree / s.count, outs,
                                runners[m].size_bytes, runners[0].size_bytes, drop, ci))
        if ci.high - ci.low > NOISY_CI_WIDTH or n < MIN_SAMPLES:
            what = "top-1 drop" if dataset.labelled else "disagreement with the reference"
            warnings.append(f"{resolution_note(n)}: the {what} of {runners[m].path} is {ci.describe()}; "
                            "differences inside that interval are noise: evaluate on more samples")
    if not dataset.labelled:
        warnings.append(f"{dataset.source} has no labels: reporting agreement with the reference only")
    return EvalReport(dataset.source, n, dataset.labelled, pre, tuple(models), tuple(comps), tuple(warnings))


def format_report(r: EvalReport) -> str:
    lines = [f"{r.samples} samples from {r.data} ({'labelled' if r.labelled else 'unlabelled'}), "
             f"preprocessing {r.preprocess.describe()}"]
    lines.append(f"{'model':<48} {'size KiB':>9} {'top-1 %':>8} {'top-5 %':>8}")
    for m in r.models:
        def f(v):
            return (f"{v:8.2f}" if v is not None else f"{'-':>8}")
        lines.append(f"{_short(m.path):<48} {m.size_bytes / 1024:9.1f} {f(m.top1)} {f(m.top5)}")
    if r.comparisons:
        lines.append(f"{'vs reference':<48} {'agree %':>8} {'drop pt':>8} {'SQNR dB':>8} {'cosine':>8} {'max|err|':>9}")
    for c in r.comparisons:
        drop = f"{c.top1_drop:8.2f}" if c.top1_drop is not None else f"{'-':>8}"
        lines.append(f"{_short(c.candidate):<48} {c.agreement:8.2f} {drop} {c.sqnr_db:8.2f} {c.cosine:8.5f} "
                     f"{c.max_abs_error:9.4g}")
        if c.drop_ci is not None:
            what = "top-1 drop" if c.top1_drop is not None else "disagreement"
            lines.append(f"    {what} {c.drop_ci.describe()}; {resolution_note(c.drop_ci.samples)}")
        if len(c.outputs) > 1:
            for o in c.outputs:
                lines.append(f"    {o.name}: SQNR {o.sqnr_db:.2f} dB, cosine {o.cosine:.5f}, "
                             f"max|err| {o.max_abs_error:.4g}")
    return "\n".join(lines)


def _short(path: str, width: int = 48) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1):]
