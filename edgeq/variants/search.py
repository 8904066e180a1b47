"""``edgeq tune MODEL -c CALIB``: the fastest model-file variant here, within an accuracy budget.

1. Build the variants from one export and one calibration (``build.py``), each as ``edgeq convert``
   writes it.
2. Measure each with the runtime search of ``edgeq.tune`` (delegate x threads, in child processes).
   A variant whose quick timing (a few runs, on the best variant's configuration) is already
   ``PRUNE_MARGIN`` x slower than the best admissible variant so far is not searched further.
   Admissible: any variant without an accuracy budget (they all compute what int8 computes); with a
   budget only float32, the reference, is known to be within it before evaluation.
3. With a budget, evaluate lazily in speed order (fastest first) against the float32 variant and stop
   at the first within budget: the rest are "not evaluated: slower than the winner".
4. Write the winner with its runtime configuration in the metadata (``edgeq.load`` then uses it).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..convert.plan import plan_conversion
from ..convert.source import describe_source_model
from ..errors import EdgeqError, UsageError
from ..fileio import check_outputs, private_tempdir, write_bytes_atomic
from ..metadata import read_metadata, with_edgeq_metadata
from ..preprocess import Preprocess
from ..tflite_format import load_model_file
from ..tune import TuneCandidate, TuneResult, tune
from .build import BuiltVariant, VariantBuilder, variant_builder
from .report import (
    FAILED,
    MEASURED,
    NOT_EVALUATED,
    NOT_MEASURABLE,
    OVER,
    PRUNED,
    SKIPPED,
    WITHIN,
    VariantOutcome,
    VariantTuneResult,
)
from .specs import VariantSpec, plan_variants

log = logging.getLogger(__name__)

PRUNE_MARGIN = 1.25   # a quick timing this much slower than the best admissible variant ends a variant's search
QUICK_RUNS, QUICK_WARMUP = 8, 2
QUICK_MIN_MS = 50.0   # a quick timing spans at least this much of the bound's latency (tiny models: more runs)
CONFIRM_TOP, CONFIRM_ROUNDS = 3, 2   # the fastest variants re-timed side by side before the ranking is final
TIE_GAIN = 0.03   # side by side, a variant must be more than 3 % faster than float32 to rank before it
DELEGATE_SPAN = 3.0   # delegates slower than this x the best on the first variant are not searched on the others
QUANTIZED_TYPES = frozenset({"INT8", "UINT8", "INT16", "INT4"})


def is_quantized_tflite(path: str | os.PathLike) -> bool:
    """A .tflite that already holds integer tensors (a converted model: only its runtime can be tuned)."""
    _, mf = load_model_file(path)
    return any(t.dtype in QUANTIZED_TYPES for sg in mf.subgraphs for t in sg.tensors)


def tune_variants(model: Any, calibration: Any = None, output: str | os.PathLike | None = None, *,
                  eval_data: Any = None, max_accuracy_drop: float | None = None,
                  threads: Sequence[int] | None = None, delegates: Sequence[str] | None = None,
                  runs: int = 50, warmup: int = 5, quick_runs: int = QUICK_RUNS, num_samples: int = 200,
                  seed: int = 0, labels: Sequence[str] | str | os.PathLike | None = None,
                  preprocess: Preprocess | None = None, preprocess_options: dict[str, Any] | None = None,
                  eval_limit: int | None = None, force: bool = False, prune: bool = True, quiet: bool = True,
                  info: Callable[[str], None] | None = None, pipeline: str | None = None,
                  pipeline_frames: int = 90) -> VariantTuneResult:
    """Search the model-file variants of a float MODEL (Keras .keras/.h5, SavedModel dir, .onnx, float
    .tflite) by measurement here: I/O types always; per-tensor weights and the int16x8/float16/dynamic/
    float32 recipes when ``eval_data`` (labelled) and ``max_accuracy_drop`` (top-1 points) are given.

    threads/delegates/runs/warmup/prune: the runtime search of each variant (``edgeq.tune``). quick_runs:
    the least runs of the quick timing that can prune a variant (0: no pruning). eval_limit: evaluate on a
    random subset. output: the winner, with its runtime configuration in the metadata; None: report only.
    info: one line per step (a search takes minutes). Each variant's runtime search covers delegate x
    threads; the winner's alone then gets the full one (delegate options, confirmation runs) and, with
    ``pipeline`` (a source), its every-frame pipeline layout for ``edgeq run`` (``edgeq.tune``).
    """
    started = time.perf_counter()
    say = info or log.info
    kind, desc = _check_source(model, calibration)
    data = _budget_data(eval_data, max_accuracy_drop, eval_limit, seed)
    if runs < 1 or warmup < 0 or quick_runs < 0:
        raise UsageError(f"runs must be >= 1, warmup and quick_runs >= 0; got {runs}, {warmup}, {quick_runs}")
    inputs = [x if isinstance(x, (str, os.PathLike)) else None for x in (model, calibration, eval_data, labels)]
    check_outputs(inputs, force=force, created={"output": output} if output is not None else None)
    specs, skipped = plan_variants(kind, data is not None)
    with private_tempdir("tune") as work:
        plan = plan_conversion(model, calibration, pathlib.Path(work) / "plan.tflite", recipe="int8", labels=labels,
                               num_samples=num_samples, seed=seed, save_recipe=False)
        with variant_builder(model, plan, preprocess, preprocess_options, quiet) as builder:
            search = _SpeedSearch(builder, threads, delegates, runs, warmup, quick_runs, data is not None, say,
                                  prune=prune)
            for spec in specs:
                search.visit(spec)
        measured = sorted((o for o in search.outcomes if o.state == MEASURED), key=lambda o: o.p50_ms)
        if not measured:
            raise EdgeqError(f"no variant of {desc} could be measured: "
                             + "; ".join(f"{o.name}: {o.reason}" for o in search.outcomes[:3]))
        measured = search.confirm(measured)
        notes = [*builder.notes, *search.notes]
        reference_top1, samples = None, 0
        if data is not None:
            measured, reference_top1, samples = _judge_accuracy(measured, search.built, data, builder,
                                                                max_accuracy_drop, notes, say)
        winner = _winner(measured, desc, max_accuracy_drop)
        final = search.final_runtime(search.built[winner.name].path, pipeline, pipeline_frames)
        runtime = dict((final or winner.runtime).runtime)
        if output is not None:
            _write_winner(search.built[winner.name].path, runtime, output, force)
    rest = [o for o in search.outcomes if o.state != MEASURED]
    rest += [VariantOutcome(spec.name, spec.recipe.to_dict(), SKIPPED, why) for spec, why in skipped]
    timings = {**builder.timings, "total_s": round(time.perf_counter() - started, 3)}
    return VariantTuneResult(desc, (*measured, *rest), winner.name, runtime, None if output is None else str(output),
                             None if data is None else max_accuracy_drop, samples, reference_top1, timings,
                             tuple(dict.fromkeys([*notes, *search.notes])),
                             final_runtime=final)


def _check_source(model: Any, calibration: Any) -> tuple[str, str]:
    """(kind, description) of a float source with calibration data; a quantized .tflite is refused."""
    kind, desc = describe_source_model(model)
    if kind == "tflite_file" and is_quantized_tflite(desc):
        raise UsageError(f"{desc} is already quantized: only its runtime can be tuned (edgeq.tune / `edgeq tune "
                         "MODEL` without -c); the recipe variants need the float source")
    if calibration is None:
        raise UsageError(f"{desc} is a float model: give calibration data (-c/--calibration: an image folder, glob, "
                         "video or .npy/.npz) to make its quantized variants")
    return kind, desc


def _sxs(o: VariantOutcome) -> float:
    return o.side_by_side_ms if o.side_by_side_ms is not None else o.p50_ms


def _winner(measured: list[VariantOutcome], desc: str, max_drop: float | None) -> VariantOutcome:
    """The fastest measured variant within the budget (without a budget: the fastest)."""
    winner = next((o for o in measured if o.accuracy in (WITHIN, "")), None)
    if winner is None:
        raise EdgeqError(f"no variant of {desc} is within {max_drop:g} points: "
                         + ", ".join(f"{o.name} {o.accuracy_drop:+.2f}" for o in measured
                                     if o.accuracy_drop is not None))
    return winner


def _budget_data(eval_data: Any, max_drop: float | None, limit: int | None, seed: int) -> Any:
    """The opened, labelled evaluation data when a budget is given (both or neither), else None."""
    if eval_data is None and max_drop is None:
        return None
    if max_drop is None:
        raise UsageError("--eval-data is used with --max-accuracy-drop POINTS (the top-1 drop allowed); give it")
    if eval_data is None:
        raise UsageError("--max-accuracy-drop needs --eval-data SRC (labelled images to measure the drop on)")
    if max_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0 points, got {max_drop}")
    from ..accuracy.data import read_eval_data

    data = read_eval_data(eval_data).subset(limit, seed)
    if not data.labelled:
        raise UsageError(f"{data.source} has no labels, so a top-1 drop cannot be measured: give labelled data "
                         "(class folders, a CSV/JSON list, IDX files)")
    return data


class _SpeedSearch:
    """Builds and measures variants one by one, pruning those a quick timing shows cannot win."""

    def __init__(self, builder: VariantBuilder, threads: Sequence[int] | None, delegates: Sequence[str] | None,
                 runs: int, warmup: int, quick_runs: int, with_accuracy: bool, say: Callable[[str], None], *,
                 prune: bool = True):
        self.builder, self.threads, self.delegates = builder, threads, delegates
        self.runs, self.warmup, self.quick_runs, self.with_accuracy, self.say = runs, warmup, quick_runs, \
            with_accuracy, say
        self.outcomes: list[VariantOutcome] = []
        self.built: dict[str, BuiltVariant] = {}
        self.notes: list[str] = []
        self.bound: tuple[str, TuneCandidate] | None = None   # the best admissible variant so far
        self.narrowed = False
        self.prune = prune   # thread-count pruning inside each runtime search

    def visit(self, spec: VariantSpec) -> None:
        try:
            built = self.builder.build(spec)
        except EdgeqError as exc:
            self.outcomes.append(VariantOutcome(spec.name, spec.recipe.to_dict(), FAILED, f"conversion: {exc}"))
            self.say(f"{spec.name}: conversion failed: {exc}")
            return
        self.built[spec.name] = built
        self.say(f"{spec.name}: built in {built.seconds:.1f} s, {built.size_bytes / 1024:.0f} KB")
        base = dict(name=spec.name, recipe=built.conversion.recipe.to_dict(), size_bytes=built.size_bytes,
                    build_s=built.seconds)
        pruned = self._quick_check(built)
        if isinstance(pruned, VariantOutcome):
            self.outcomes.append(dataclasses.replace(pruned, **base))
            return
        if not self.narrowed:  # the first variant: a quick look at every delegate, then only the contenders
            threads = [max(self.threads)] if self.threads else [os.cpu_count() or 1]
            probe, error = self._tune(built.path, threads, self.delegates, self.quick_runs or 1, QUICK_WARMUP)
            if probe is not None:
                self._narrow_delegates(spec.name, probe)
        result, error = self._tune(built.path, self.threads, self.delegates, self.runs, self.warmup)
        if result is None:
            self.outcomes.append(VariantOutcome(state=FAILED, reason=error, **base))
            return
        self.outcomes.append(VariantOutcome(state=MEASURED, runtime=result, **base))
        admissible = not self.with_accuracy or spec.recipe.name == "float32"
        if admissible and (self.bound is None or result.winner.p50_ms < self.bound[1].p50_ms):
            self.bound = (spec.name, result.winner)

    def confirm(self, measured: list[VariantOutcome]) -> list[VariantOutcome]:
        """The CONFIRM_TOP fastest variants timed again side by side (CONFIRM_ROUNDS interleaved rounds, each
        variant on its best configuration) and ordered by their best side-by-side p50: the runtime searches
        ran minutes apart, and a shared machine's load moves more than the gaps between close variants."""
        top = measured[:CONFIRM_TOP]
        if len(top) < 2:
            return measured
        seen: dict[str, list[float]] = {o.name: [] for o in top}
        for _ in range(CONFIRM_ROUNDS):
            for o in top:
                b = o.best
                r, _error = self._tune(self.built[o.name].path, [b.threads] if b.threads else None, [b.delegate],
                                       self.runs, self.warmup)
                if r is not None:
                    seen[o.name].append(r.winner.p50_ms)
        top = [dataclasses.replace(o, side_by_side_ms=min(seen[o.name])) if seen[o.name] else o for o in top]
        top.sort(key=_sxs)
        ref = next((o for o in top if o.name == "float32"), None)
        if ref is not None and ref is not top[0] and _sxs(ref) <= _sxs(top[0]) * (1.0 + TIE_GAIN):
            top.remove(ref)
            top.insert(0, ref)
            self.notes.append(f"float32 is within {TIE_GAIN:.0%} of {top[1].name} side by side (a tie on a shared "
                              "machine): ranked first, as it loses no accuracy")
        self.say("side by side: " + ", ".join(f"{o.name} {o.side_by_side_ms or o.p50_ms:.3f} ms" for o in top))
        return top + measured[CONFIRM_TOP:]

    def _narrow_delegates(self, name: str, result: TuneResult) -> None:
        """After a quick look at every delegate on the first variant, the runtime searches cover only the
        delegates that ran and came within DELEGATE_SPAN x of the best: a variant changes the arithmetic of
        one network, not which engine is an order of magnitude faster for it."""
        self.narrowed = True
        self.notes += [f"runtime search: skipped {w}: {y}" for w, y in result.skipped if "threads" not in w]
        best: dict[str, float] = {}
        for c in result.ranked:
            best[c.delegate] = min(best.get(c.delegate, c.p50_ms), c.p50_ms)
        fastest = result.winner.p50_ms
        keep = [d for d in (self.delegates or best) if d in best and best[d] <= fastest * DELEGATE_SPAN]
        for d in self.delegates or best:
            if d not in keep:
                why = (f"its best p50 on {name} was {best[d]:.3f} ms, over {DELEGATE_SPAN:g}x the best "
                       f"{fastest:.3f} ms" if d in best else f"it did not run on {name}")
                self.notes.append(f"delegate {d} not searched: a quick timing on {name}: {why}")
        self.delegates = keep

    def _quick_check(self, built: BuiltVariant) -> VariantOutcome | None:
        """A few runs on the best admissible variant's configuration: pruned when clearly slower. A shared
        machine's load comes and goes, so a verdict of "slower" is confirmed side by side: the bound and the
        candidate timed again back to back, and the candidate is pruned only if it is still slower."""
        if self.bound is None or self.quick_runs == 0:
            return None
        name, best = self.bound
        threads = [best.threads] if best.threads else [os.cpu_count() or 1]
        runs = min(max(self.quick_runs, math.ceil(QUICK_MIN_MS / max(best.p50_ms, 1e-3))), max(self.runs,
                                                                                               self.quick_runs))
        timings: list[float] = []
        for path in (built.path, self.built[name].path, built.path):
            quick, error = self._tune(path, threads, [best.delegate], runs, QUICK_WARMUP)
            if quick is None:
                return VariantOutcome(built.spec.name, {}, FAILED, error) if path == built.path else None
            timings.append(quick.winner.p50_ms)
            if len(timings) == 1 and timings[0] <= best.p50_ms * PRUNE_MARGIN:
                return None
        q, ref = min(timings[0], timings[2]), timings[1]
        if q <= ref * PRUNE_MARGIN:
            self.say(f"{built.spec.name}: not pruned: side by side {q:.3f} ms vs {ref:.3f} ms")
            return None
        who = "the float32 reference (within any budget)" if self.with_accuracy else name
        reason = (f"{runs}-run timings on {best.delegate}/{threads[0]} threads, side by side: p50 {q:.3f} ms, over "
                  f"{PRUNE_MARGIN:g}x the {ref:.3f} ms of {who}")
        self.say(f"{built.spec.name}: pruned: {reason}")
        return VariantOutcome(built.spec.name, {}, PRUNED, reason, quick_p50_ms=q)

    def final_runtime(self, path: pathlib.Path, pipeline: str | None, frames: int) -> TuneResult | None:
        """The winner's full runtime search: delegate options and confirmation runs (the per-variant searches
        leave them out: options move a variant's time far less than the variant itself), and the pipeline
        layout on ``pipeline``. None, with a note, when it fails: the variant search's configuration stands."""
        self.say(f"{path.stem}: the winner's full runtime search (delegate options, confirmation"
                 + (f", pipeline layout on {pipeline})" if pipeline else ")"))
        result, error = self._tune(path, self.threads, self.delegates, self.runs, self.warmup, full=True,
                                   pipeline=pipeline, pipeline_frames=frames)
        if result is None:
            self.notes.append(f"the winner's full runtime search failed ({error}): its variant search's "
                              "configuration is kept")
        return result

    def _tune(self, path: pathlib.Path, threads: Sequence[int] | None, delegates: Sequence[str] | None,
              runs: int, warmup: int, *, full: bool = False, **pipeline: Any) -> tuple[TuneResult | None, str]:
        name = path.stem

        def progress(c: TuneCandidate) -> None:
            state = f"error: {c.error}" if c.error else f"p50 {c.p50_ms:.3f} ms"
            self.say(f"  {name}: {c.label} threads={c.threads or '-'}: {state}")
        try:
            return tune(path, threads=threads, delegates=delegates, runs=runs, warmup=warmup, output=None,
                        prune=self.prune, progress=progress, search_options=full, confirm=3 if full else 0,
                        **pipeline), ""
        except EdgeqError as exc:
            return None, f"runtime search: {exc}"


def _judge_accuracy(measured: list[VariantOutcome], built: dict[str, BuiltVariant], data: Any,
                    builder: VariantBuilder, max_drop: float, notes: list[str],
                    say: Callable[[str], None]) -> tuple[list[VariantOutcome], float, int]:
    """Top-1 drop vs the float32 variant, fastest first, until one is within the budget."""
    from ..accuracy.mixed import Scorer
    from ..accuracy.stats import budget_warning

    if "float32" not in built:
        raise EdgeqError("the accuracy budget needs the float32 variant as its reference, and it could not be "
                         "converted: " + next((o.reason for o in measured if o.name == "float32"), "see above"))
    scorer = Scorer(built["float32"].path.read_bytes(), data, builder.preprocess, builder.plan.labels,
                    metric="top1")
    samples = len(scorer.pixels)
    warn = budget_warning(samples, max_drop)
    if warn:
        notes.append(warn)
    out, found = [], False
    for o in measured:
        if found:
            out.append(dataclasses.replace(o, accuracy=NOT_EVALUATED))
            continue
        try:
            drop = 0.0 if o.name == "float32" else scorer.score(built[o.name].path.read_bytes()).drop
        except EdgeqError as exc:  # e.g. an int16 input without quantization parameters to map pixels to
            say(f"{o.name}: cannot be evaluated: {exc}")
            out.append(dataclasses.replace(o, accuracy=f"{NOT_MEASURABLE}: {exc}"))
            continue
        found = drop <= max_drop
        say(f"{o.name}: top-1 drop {drop:+.2f} points -> {'within' if found else 'over'} the budget")
        out.append(dataclasses.replace(o, accuracy_drop=round(drop, 4), accuracy=WITHIN if found else OVER,
                                       reason="the accuracy reference" if o.name == "float32" else o.reason))
    return out, scorer.reference.top1, samples


def _write_winner(path: pathlib.Path, runtime: dict[str, Any], output: str | os.PathLike, force: bool) -> None:
    """The winner's file, with the runtime configuration its search chose in the metadata, written atomically."""
    data, mf = load_model_file(str(path))
    meta = dataclasses.replace(read_metadata(mf), runtime=runtime)
    write_bytes_atomic(output, with_edgeq_metadata(data, meta), exclusive=not force)


__all__ = ["PRUNE_MARGIN", "is_quantized_tflite", "tune_variants", "MEASURED", "PRUNED", "SKIPPED", "FAILED"]
