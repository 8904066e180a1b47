"""Mixed precision with an accuracy target: keep the fewest layers in float that meet the budget.

1. Quantize fully; measure the top-1 drop against the float model on the evaluation data.
2. If it exceeds the budget, rank the activation tensors by how much keeping each one alone in
   float (its producer and consumers denylisted in TFLite's quantizer) restores the output SQNR
   on a subset of the data.
3. Keep the ranked tensors float one more at a time, re-evaluate on all the data, and stop at
   the first model within budget, or report the best reachable model and by how much it misses.

The float reference is the calibrated model itself (the float graph), so numbers compare like
with like. Per-layer int16 is not an option here: TFLite's quantizer cannot mix int16 and int8
activations in one model (the int16x8 recipe quantizes the whole model).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..convert.quantize import CalibratedModel, Layer
from ..convert.recipes import RECIPES, Recipe
from ..errors import UsageError
from ..preprocess import Preprocess
from .data import EvalData
from .evaluate import sqnr_db
from .runners import TFLiteRunner

log = logging.getLogger(__name__)

EDGE_TPU_NOTE = ("layers kept in float do not run on the Edge TPU: the compiler maps ops up to the first float "
                 "op and everything after it runs on the CPU")


@dataclasses.dataclass(frozen=True)
class Score:
    top1: float | None       # percent (None: unlabelled)
    agreement: float         # percent top-1 agreement with the float reference
    sqnr_db: float           # SQNR of the first output vs the float reference
    drop: float              # points lost: top-1 drop, or disagreement when unlabelled

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "agreement": round(self.agreement, 3),
                "sqnr_db": round(self.sqnr_db, 3) if math.isfinite(self.sqnr_db) else "inf",
                "drop": round(self.drop, 3)}


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    layer: Layer
    sqnr_db: float           # output SQNR with this tensor alone kept float
    gain_db: float           # ... minus the fully quantized model's output SQNR
    drop: float              # points lost on the sensitivity subset with this tensor alone float

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer.name, "op": self.layer.op, "float_nodes": list(self.layer.float_nodes),
                "sqnr_db": round(self.sqnr_db, 3), "gain_db": round(self.gain_db, 3), "drop": round(self.drop, 3)}


@dataclasses.dataclass(frozen=True)
class SearchStep:
    float_layers: tuple[str, ...]
    float_nodes: tuple[str, ...]
    score: Score
    size_bytes: int
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return {"float_layers": list(self.float_layers), "float_nodes": list(self.float_nodes),
                **self.score.to_dict(), "size_bytes": self.size_bytes, "met": self.met}


@dataclasses.dataclass(frozen=True)
class MixedPrecisionResult:
    target: float
    metric: str              # "top1" or "agreement"
    reference: Score
    steps: tuple[SearchStep, ...]
    chosen: int              # index into steps
    ranking: tuple[LayerSensitivity, ...]
    recipe: Recipe
    model: bytes = dataclasses.field(repr=False, default=b"")

    @property
    def met(self) -> bool:
        return self.steps[self.chosen].met

    @property
    def miss(self) -> float:
        """Points over budget of the chosen model (0 when the target is met)."""
        return max(0.0, self.steps[self.chosen].score.drop - self.target)

    def to_dict(self) -> dict[str, Any]:
        return {"target_drop": self.target, "metric": self.metric, "met": self.met, "miss": round(self.miss, 3),
                "reference": self.reference.to_dict(), "chosen_step": self.chosen,
                "steps": [s.to_dict() for s in self.steps], "ranking": [r.to_dict() for r in self.ranking],
                "recipe": self.recipe.to_dict()}


class Scorer:
    """Scores candidate models against the float reference on preprocessed, cached evaluation data."""

    def __init__(self, reference: bytes, data: EvalData | np.ndarray, pre: Preprocess | None,
                 labels: Sequence[str] = (), batch: int = 512):
        """data: labelled/unlabelled EvalData (preprocessed with `pre`), or float tensors [N,H,W,C]."""
        self.pre = pre
        self.batch = batch
        if isinstance(data, np.ndarray):
            self.pixels = data
        else:
            self.pixels = np.stack([pre.to_pixels(img, data.input_color)[0] for _, img in data.images()])
        ref_out = self._run(reference)
        n_classes = int(np.prod(ref_out.shape[1:]))
        labelled = isinstance(data, EvalData) and data.labelled
        self.labels = data.with_model_classes(labels, n_classes).labels if labelled else None
        self.ref_out = ref_out
        self.ref_class = np.argmax(ref_out, axis=1)
        self.reference = self._score(ref_out, None)

    def _run(self, model: bytes, n: int | None = None) -> np.ndarray:
        runner = TFLiteRunner.open(model, batch=self.batch, name="<candidate>")
        try:
            px = self.pixels[:n] if n else self.pixels
            run = ((lambda chunk: runner.predict(chunk, self.pre)) if self.pixels.dtype == np.uint8
                   else runner.predict_tensors)
            parts = [run(px[i:i + self.batch])[0] for i in range(0, len(px), self.batch)]
        finally:
            runner.close()
        out = np.concatenate(parts)
        return out.reshape(len(out), -1)

    def _score(self, out: np.ndarray, ref_top1: float | None) -> Score:
        n = len(out)
        cls = np.argmax(out, axis=1)
        agreement = 100.0 * float(np.mean(cls == self.ref_class[:n]))
        ref = self.ref_out[:n].astype(np.float64)
        err = float(np.sum((ref - out) ** 2))
        sq = sqnr_db(float(np.sum(ref * ref)), err)
        if self.labels is not None:
            top1 = 100.0 * float(np.mean(cls == self.labels[:n]))
            base = ref_top1 if ref_top1 is not None else top1
            return Score(top1, agreement, sq, base - top1)
        return Score(None, agreement, sq, 100.0 - agreement)

    def score(self, model: bytes, n: int | None = None) -> Score:
        n = min(n or len(self.pixels), len(self.pixels))
        ref_top1 = (100.0 * float(np.mean(self.ref_class[:n] == self.labels[:n]))
                    if self.labels is not None else None)
        return self._score(self._run(model, n), ref_top1)


def rank_layers(cal: CalibratedModel, scorer: Scorer, n: int, base: Score,
                progress: Callable[[str], None] | None = None) -> list[LayerSensitivity]:
    """Each activation tensor kept float alone, scored on the first n samples; best gain first."""
    out = []
    for layer in cal.layers():
        s = scorer.score(cal.quantize(layer.float_nodes), n)
        out.append(LayerSensitivity(layer, s.sqnr_db, s.sqnr_db - base.sqnr_db, s.drop))
        if progress:
            progress(f"  {layer.op} {layer.name[:60]}: output SQNR {s.sqnr_db:.1f} dB alone float")
    out.sort(key=lambda r: (-r.gain_db, r.drop))
    return out


def search_mixed_precision(cal: CalibratedModel, data: EvalData, pre: Preprocess, max_drop: float, *,
                           labels: Sequence[str] = (), max_steps: int | None = None,
                           sensitivity_samples: int = 2000,
                           progress: Callable[[str], None] | None = None) -> MixedPrecisionResult:
    """Greedy, one layer at a time, most sensitive first; stops at the first model within budget."""
    if max_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0 points, got {max_drop}")
    say = progress or (lambda msg: None)
    scorer = Scorer(cal.data, data, pre, labels)
    metric = "top1" if scorer.labels is not None else "agreement"
    model = cal.quantize(cal.recipe.float_nodes, cal.recipe.float_ops)
    steps = [_step(scorer, model, (), tuple(cal.recipe.float_nodes), max_drop)]
    say(f"full int8: {_describe(steps[0].score, metric)}")
    ranking: list[LayerSensitivity] = []
    if not steps[0].met:
        n = min(sensitivity_samples, len(scorer.pixels))
        say(f"ranking {len(cal.layers())} activation tensors by sensitivity on {n} samples")
        ranking = rank_layers(cal, scorer, n, scorer.score(model, n), say)
        limit = len(ranking) if max_steps is None else min(max_steps, len(ranking))
        layers: list[str] = []
        nodes: list[str] = list(cal.recipe.float_nodes)
        for r in ranking[:limit]:
            layers.append(r.layer.name)
            nodes.extend(x for x in r.layer.float_nodes if x not in nodes)
            model = cal.quantize(nodes, cal.recipe.float_ops)
            steps.append(_step(scorer, model, tuple(layers), tuple(nodes), max_drop))
            say(f"+ float {r.layer.op} {r.layer.name[:60]}: {_describe(steps[-1].score, metric)}")
            if steps[-1].met:
                break
    met_steps = [i for i, s in enumerate(steps) if s.met]
    chosen = met_steps[0] if met_steps else min(range(len(steps)), key=lambda i: (steps[i].score.drop, i))
    step = steps[chosen]
    best_model = cal.quantize(step.float_nodes, cal.recipe.float_ops)
    why = (f"mixed precision for a {metric} drop <= {max_drop:g} points on {data.source} ({len(scorer.pixels)} "
           f"samples): full int8 lost {steps[0].score.drop:.2f}; kept float {len(step.float_layers)} activation "
           f"tensor(s) {list(step.float_layers)} (most sensitive first, by output SQNR gain) -> "
           f"{step.score.drop:.2f} points"
           + ("" if step.met else f", MISSES the target by {step.score.drop - max_drop:.2f}"))
    recipe = cal.recipe.replace(notes=why)  # the "why" is saved even when full int8 already meets the budget
    if step.float_nodes:
        base = RECIPES[recipe.name].description if recipe.name in RECIPES else recipe.description
        recipe = recipe.replace(float_nodes=step.float_nodes,
                                description=f"{base}; {len(step.float_nodes)} op(s) kept in float (mixed precision)")
    return MixedPrecisionResult(max_drop, metric, scorer.reference, tuple(steps), chosen, tuple(ranking), recipe,
                                best_model)


def _step(scorer: Scorer, model: bytes, layers: tuple[str, ...], nodes: tuple[str, ...], target: float) -> SearchStep:
    s = scorer.score(model)
    return SearchStep(layers, nodes, s, len(model), s.drop <= target)


def _describe(s: Score, metric: str) -> str:
    head = f"top-1 {s.top1:.2f}%" if s.top1 is not None else f"agreement {s.agreement:.2f}%"
    return f"{head}, drop {s.drop:.2f} points ({metric}), output SQNR {s.sqnr_db:.1f} dB"


def format_search(d: dict[str, Any]) -> str:
    """The search log (MixedPrecisionResult.to_dict()) as the lines `edgeq convert` prints."""
    ref = d["reference"]
    head = f"float top-1 {ref['top1']:.2f}%" if ref.get("top1") is not None else "float reference"
    lines = [f"accuracy budget: {d['metric']} drop <= {d['target_drop']:g} points ({head})"]
    for i, s in enumerate(d["steps"]):
        what = "full int8" if not s["float_layers"] else f"+ float {s['float_layers'][-1].split(';')[0]}"
        mark = " <- chosen" if i == d["chosen_step"] else ""
        lines.append(f"  step {i}: {what}: drop {s['drop']:.2f}, agreement {s['agreement']:.2f}%, "
                     f"{s['size_bytes'] / 1024:.1f} KiB{mark}")
    lines.append("  target met" if d["met"] else f"  target MISSED by {d['miss']:.2f} points (best reachable shown)")
    return "\n".join(lines)
