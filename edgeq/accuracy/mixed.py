"""Mixed precision with an accuracy target: keep in float only what measurably helps.

1. Quantize fully; measure the drop against the float model on the evaluation data (top-1 drop,
   or the disagreement with float when the data has no labels: ``--max-agreement-drop``).
2. If it exceeds the budget, rank the activation tensors by measured sensitivity: the model's
   output SQNR when that tensor alone is kept float (what ``edgeq analyze`` reports).
3. Try the candidates most sensitive first, alone and then in groups of neighbours in the
   ranking. A change is kept only if it lowers the drop by at least one sample and the model stays
   cheaper than the float model (size and measured latency); otherwise it is undone. The search
   stops at the first kept state within budget, or when nothing more helps, and then reports the
   best reachable model and by how much it misses.

Every state kept is better than the one before, so the reported model is the best one found. The
float reference is the calibrated model itself (the float graph), so numbers compare like with
like. Per-layer int16 is not an option: TFLite's quantizer cannot mix int16 and int8 activations.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..convert.quantize import CalibratedModel, Layer
from ..convert.recipes import Recipe
from ..errors import UsageError
from ..preprocess import Preprocess
from .data import EvalData
from .evaluate import sqnr_db
from .runners import TFLiteRunner
from .stats import DropInterval, budget_warning, drop_interval, resolution_note

log = logging.getLogger(__name__)

LATENCY_ALLOWANCE = 1.5   # timing noise of a shared host: only gross slow-downs are refused
EDGE_TPU_NOTE = ("layers kept in float do not run on the Edge TPU: the compiler maps ops up to the first float "
                 "op and everything after it runs on the CPU")
METRICS = ("top1", "agreement")


@dataclasses.dataclass(frozen=True)
class Score:
    top1: float | None       # percent (None: unlabelled)
    agreement: float         # percent top-1 agreement with the float reference
    sqnr_db: float           # SQNR of the first output vs the float reference
    drop: float              # points lost: top-1 drop, or disagreement (metric "agreement")

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
class Cost:
    """What a model costs to ship and run: bytes and median single-sample latency (1 thread)."""

    size_bytes: int
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"size_bytes": self.size_bytes, "latency_ms": round(self.latency_ms, 4)}


@dataclasses.dataclass(frozen=True)
class SearchStep:
    """One state tried: the tensors kept float, its score, and whether the search kept it."""

    float_layers: tuple[str, ...]
    float_nodes: tuple[str, ...]
    score: Score
    size_bytes: int
    met: bool
    kept: bool = True
    tried: tuple[str, ...] = ()     # the tensor(s) this step added to the previous kept state
    reason: str = ""                # why it was kept or undone

    def to_dict(self) -> dict[str, Any]:
        return {"float_layers": list(self.float_layers), "float_nodes": list(self.float_nodes),
                **self.score.to_dict(), "size_bytes": self.size_bytes, "met": self.met, "kept": self.kept,
                "tried": list(self.tried), "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class MixedPrecisionResult:
    target: float
    metric: str              # "top1" or "agreement"
    reference: Score
    steps: tuple[SearchStep, ...]
    chosen: int              # index into steps: the last kept state (the best found)
    ranking: tuple[LayerSensitivity, ...]
    recipe: Recipe
    model: bytes = dataclasses.field(repr=False, default=b"")
    interval: DropInterval | None = None     # bootstrap CI of the chosen model's drop
    costs: dict[str, Cost] = dataclasses.field(default_factory=dict)   # float, int8, int8_float_io, chosen
    notes: tuple[str, ...] = ()               # resolution, guard and honesty notes (also warned)

    @property
    def met(self) -> bool:
        return self.steps[self.chosen].met

    @property
    def miss(self) -> float:
        """Points over budget of the chosen model (0 when the target is met)."""
        return max(0.0, self.steps[self.chosen].score.drop - self.target)

    @property
    def float_op_count(self) -> int:
        return len(self.steps[self.chosen].float_nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"target_drop": self.target, "metric": self.metric, "met": self.met, "miss": round(self.miss, 3),
                "reference": self.reference.to_dict(), "chosen_step": self.chosen,
                "float_op_count": self.float_op_count, "recipe_name": self.recipe.name,
                "interval": self.interval.to_dict() if self.interval else None,
                "resolution": resolution_note(self.interval.samples) if self.interval else None,
                "costs": {k: c.to_dict() for k, c in self.costs.items()}, "notes": list(self.notes),
                "steps": [s.to_dict() for s in self.steps], "ranking": [r.to_dict() for r in self.ranking],
                "recipe": self.recipe.to_dict()}


class Scorer:
    """Scores candidate models against the float reference on preprocessed, cached evaluation data."""

    def __init__(self, reference: bytes, data: EvalData | np.ndarray, pre: Preprocess | None,
                 labels: Sequence[str] = (), batch: int = 512, metric: str | None = None):
        """data: labelled/unlabelled EvalData (preprocessed with `pre`), or float tensors [N,H,W,C].
        metric: "top1" (needs labels) or "agreement"; None picks top1 when labelled."""
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
        self.metric = metric or ("top1" if self.labels is not None else "agreement")
        if self.metric not in METRICS:
            raise UsageError(f"unknown accuracy metric {self.metric!r}; expected one of {', '.join(METRICS)}")
        if self.metric == "top1" and self.labels is None:
            raise UsageError("the evaluation data has no labels, so a top-1 drop cannot be measured: use "
                             "--max-agreement-drop (top-1 agreement with the float model) instead")
        self.ref_out = ref_out
        self.ref_class = np.argmax(ref_out, axis=1)
        self.reference = self._score(ref_out)

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

    def _lost(self, out: np.ndarray) -> np.ndarray:
        """Per sample: 1 where the candidate loses a point the reference had (top-1), or disagrees."""
        n = len(out)
        cls = np.argmax(out, axis=1)
        if self.metric == "top1" and self.labels is not None:
            return (self.ref_class[:n] == self.labels[:n]).astype(np.int8) - (cls == self.labels[:n]).astype(np.int8)
        return (cls != self.ref_class[:n]).astype(np.int8)

    def _score(self, out: np.ndarray) -> Score:
        n = len(out)
        cls = np.argmax(out, axis=1)
        agreement = 100.0 * float(np.mean(cls == self.ref_class[:n]))
        ref = self.ref_out[:n].astype(np.float64)
        sq = sqnr_db(float(np.sum(ref * ref)), float(np.sum((ref - out) ** 2)))
        top1 = 100.0 * float(np.mean(cls == self.labels[:n])) if self.labels is not None else None
        return Score(top1, agreement, sq, 100.0 * float(np.mean(self._lost(out))))

    def score(self, model: bytes, n: int | None = None) -> Score:
        n = min(n or len(self.pixels), len(self.pixels))
        return self._score(self._run(model, n))

    def interval(self, model: bytes) -> DropInterval:
        """The drop of `model` on all the data with its bootstrap confidence interval."""
        return drop_interval(self._lost(self._run(model)))


def latency_ms(model: bytes, runs: int = 20, repeats: int = 5) -> float:
    """Single-sample latency on 1 thread (XNNPACK): the lowest of `repeats` medians of `runs` (robust to
    the other processes of a shared machine), for the cost guard."""
    from ..runtime import load

    m = load(model, num_threads=1)
    try:
        spec = m.inputs[0]
        x = np.zeros(spec.shape, spec.dtype)
        for _ in range(3):
            m.run(x)
        medians = []
        for _ in range(repeats):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                m.run(x)
                times.append(time.perf_counter() - t0)
            medians.append(float(np.median(times)))
    finally:
        m.close()
    return 1000.0 * min(medians)


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


def candidate_moves(ranking: Sequence[LayerSensitivity], group_sizes: Sequence[int] = (2, 3)
                    ) -> list[tuple[LayerSensitivity, ...]]:
    """Moves to try, most sensitive first: every tensor whose floating alone raised the output SQNR,
    then groups of neighbours in that order (tensors that only help together)."""
    useful = [r for r in ranking if r.gain_db > 0]
    moves: list[tuple[LayerSensitivity, ...]] = [(r,) for r in useful]
    for k in group_sizes:
        moves += [tuple(useful[i:i + k]) for i in range(len(useful) - k + 1)]
    return moves


class _Search:
    """The greedy search's state: the kept float tensors, the steps tried, the cost guard."""

    def __init__(self, cal: CalibratedModel, scorer: Scorer, max_drop: float, say: Callable[[str], None]):
        self.cal, self.scorer, self.max_drop, self.say = cal, scorer, max_drop, say
        int8_io = cal.with_recipe(cal.recipe.replace(float_io=True)).quantize()
        self.costs = {"float": Cost(cal.float_size, latency_ms(cal.data)),
                      "int8_float_io": Cost(len(int8_io), latency_ms(int8_io))}
        # the guard: never bigger than float, never slower than the slower of float and int8-with-float-I/O
        self.max_size = self.costs["float"].size_bytes
        self.max_ms = LATENCY_ALLOWANCE * max(c.latency_ms for c in self.costs.values())
        self.layers: list[str] = []
        self.nodes: list[str] = list(cal.recipe.float_nodes)
        self.steps: list[SearchStep] = []
        self.chosen = 0
        self.sample = 100.0 / len(scorer.pixels)   # one sample, in points

    def quantize(self, nodes: Sequence[str]) -> bytes:
        return self.cal.quantize(nodes, self.cal.recipe.float_ops)

    def start(self) -> SearchStep:
        model = self.quantize(self.nodes)
        s = self.scorer.score(model)
        step = SearchStep((), tuple(self.nodes), s, len(model), s.drop <= self.max_drop, True, (), "full int8")
        self.steps.append(step)
        return step

    def current(self) -> SearchStep:
        return self.steps[self.chosen]

    def try_move(self, move: tuple[LayerSensitivity, ...]) -> bool:
        """Add the move's tensors; keep the change only if it helps and stays cheaper than float."""
        names = [r.layer.name for r in move if r.layer.name not in self.layers]
        if not names:
            return False
        layers = self.layers + names
        nodes = list(self.nodes)
        for r in move:
            nodes.extend(x for x in r.layer.float_nodes if x not in nodes)
        model = self.quantize(nodes)
        s = self.scorer.score(model)
        cur = self.current().score
        reason = self._verdict(model, s, cur)
        kept = reason.startswith("kept")
        self.steps.append(SearchStep(tuple(layers), tuple(nodes), s, len(model), s.drop <= self.max_drop, kept,
                                     tuple(names), reason))
        self.say(f"{'+' if kept else 'x'} float {', '.join(n.split(';')[0][:50] for n in names)}: "
                 f"{_describe(s, self.scorer.metric)} -> {reason}")
        if kept:
            self.layers, self.nodes, self.chosen = layers, nodes, len(self.steps) - 1
        return kept

    def _verdict(self, model: bytes, s: Score, cur: Score) -> str:
        if s.drop > cur.drop - 0.5 * self.sample:
            return f"undone: drop {s.drop:.2f} is not below {cur.drop:.2f}"
        if len(model) >= self.max_size:
            return f"undone: {len(model)} bytes, not smaller than the float model's {self.max_size}"
        ms = latency_ms(model)
        if ms > self.max_ms:
            return (f"undone: {ms:.3f} ms, slower than {LATENCY_ALLOWANCE:g}x the float or int8-with-float-I/O "
                    f"model ({self.max_ms / LATENCY_ALLOWANCE:.3f} ms)")
        return f"kept: drop {cur.drop:.2f} -> {s.drop:.2f}"


def search_mixed_precision(cal: CalibratedModel, data: EvalData, pre: Preprocess, max_drop: float, *,
                           labels: Sequence[str] = (), metric: str | None = None, max_steps: int | None = None,
                           sensitivity_samples: int = 2000,
                           progress: Callable[[str], None] | None = None) -> MixedPrecisionResult:
    """Greedy with undo, most sensitive first, singles then groups; stops within budget or when nothing
    more helps. metric: "top1" (labelled data) or "agreement"; None: top1 when labelled.
    max_steps: the most moves to try after full int8 (None: all)."""
    if max_drop < 0:
        raise UsageError(f"the accuracy budget must be >= 0 points, got {max_drop}")
    say = progress or (lambda msg: None)
    scorer = Scorer(cal.data, data, pre, labels, metric=metric)
    search = _Search(cal, scorer, max_drop, say)
    first = search.start()
    say(f"full int8: {_describe(first.score, scorer.metric)}")
    ranking: list[LayerSensitivity] = []
    if not first.met:
        n = min(sensitivity_samples, len(scorer.pixels))
        say(f"ranking {len(cal.layers())} activation tensors by sensitivity (output SQNR) on {n} samples")
        ranking = rank_layers(cal, scorer, n, scorer.score(search.quantize(search.nodes), n), say)
        moves = candidate_moves(ranking)
        for move in moves[:len(moves) if max_steps is None else max_steps]:
            search.try_move(move)
            if search.current().met:
                break
    return _result(search, data, ranking)


def _result(search: _Search, data: EvalData, ranking: list[LayerSensitivity]) -> MixedPrecisionResult:
    """The chosen (best kept) model, its interval, costs, the honest notes and the recipe."""
    cal, scorer, max_drop = search.cal, search.scorer, search.max_drop
    step = search.current()
    best_model = search.quantize(step.float_nodes)
    interval = scorer.interval(best_model)
    first_model = search.quantize(search.steps[0].float_nodes)
    costs = {**search.costs, "int8": Cost(len(first_model), latency_ms(first_model)),
             "chosen": Cost(len(best_model), latency_ms(best_model))}
    notes = [n for n in (budget_warning(len(scorer.pixels), max_drop, interval),) if n]
    if costs["int8"].latency_ms > costs["float"].latency_ms:
        notes.append(f"on this host int8 ({costs['int8'].latency_ms:.3f} ms) is not faster than float "
                     f"({costs['float'].latency_ms:.3f} ms); int8 pays off on ARM/VNNI CPUs and NPUs, so measure "
                     "latency on the target (`edgeq bench`)")
    if step.met and interval.high > max_drop:
        notes.append(f"the budget is met on the measured drop ({interval.drop:.2f}), but its {interval.level:g}% "
                     f"CI reaches {interval.high:.2f} points, above the {max_drop:g}-point budget")
    undone = [s for s in search.steps if not s.kept]
    if not step.met:
        guarded = sum(1 for s in undone if s.met)
        notes.append(f"accuracy target missed: the best reachable model loses {step.score.drop:.2f} points "
                     f"({scorer.metric}), {step.score.drop - max_drop:.2f} over the {max_drop:g}-point budget; "
                     f"{len(undone)} change(s) were undone ({guarded} that met the budget but cost more than the "
                     "float model). No mixed model cheaper than float meets it: the float model (or `edgeq qat`) "
                     "is the honest answer")
    why = (f"mixed precision for a {scorer.metric} drop <= {max_drop:g} points on {data.source} "
           f"({resolution_note(len(scorer.pixels))}): full int8 lost {search.steps[0].score.drop:.2f}; kept float "
           f"{len(step.float_layers)} activation tensor(s) {list(step.float_layers)} ({len(step.float_nodes)} ops; "
           f"each kept only if it lowered the drop) -> {interval.describe()}"
           + ("" if step.met else f", MISSES the target by {step.score.drop - max_drop:.2f}"))
    recipe = cal.recipe.replace(notes=why)  # the "why" is saved even when full int8 already meets the budget
    if step.float_nodes:
        recipe = recipe.replace(
            name="mixed", float_nodes=step.float_nodes,
            description=f"{cal.recipe.name} with {len(step.float_nodes)} op(s) kept in float "
                        f"({len(step.float_layers)} tensor(s)); not full integer")
    return MixedPrecisionResult(max_drop, scorer.metric, scorer.reference, tuple(search.steps), search.chosen,
                                tuple(ranking), recipe, best_model, interval, costs, tuple(notes))


def _describe(s: Score, metric: str) -> str:
    head = f"top-1 {s.top1:.2f}%" if s.top1 is not None else f"agreement {s.agreement:.2f}%"
    return f"{head}, drop {s.drop:.2f} points ({metric}), output SQNR {s.sqnr_db:.1f} dB"


def format_search(d: dict[str, Any]) -> str:
    """The search log (MixedPrecisionResult.to_dict()) as the lines `edgeq convert` prints."""
    ref = d["reference"]
    head = f"float top-1 {ref['top1']:.2f}%" if ref.get("top1") is not None else "float reference"
    lines = [f"accuracy budget: {d['metric']} drop <= {d['target_drop']:g} points ({head})"]
    for i, s in enumerate(d["steps"]):
        tried = s.get("tried") or s["float_layers"][-1:]
        what = "full int8" if i == 0 else f"+ float {', '.join(t.split(';')[0] for t in tried)}"
        mark = " <- chosen" if i == d["chosen_step"] else ("" if s.get("kept", True) else " (undone)")
        lines.append(f"  step {i}: {what}: drop {s['drop']:.2f}, agreement {s['agreement']:.2f}%, "
                     f"{s['size_bytes'] / 1024:.1f} KiB{mark}")
    iv = d.get("interval")
    if iv:
        lines.append(f"  chosen: {d.get('recipe_name', '?')}, {d.get('float_op_count', 0)} float op(s); drop "
                     f"{iv['drop']:.2f} points, {iv['ci_level']:g}% CI {iv['ci_low']:.2f}..{iv['ci_high']:.2f} "
                     f"({d.get('resolution')})")
    costs = d.get("costs") or {}
    if costs:
        lines.append("  cost: " + ", ".join(f"{k} {c['size_bytes'] / 1024:.1f} KiB {c['latency_ms']:.3f} ms"
                                            for k, c in costs.items()))
    lines.append("  target met" if d["met"] else f"  target MISSED by {d['miss']:.2f} points (best reachable shown)")
    return "\n".join(lines)
