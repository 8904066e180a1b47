"""What ``edgeq tune`` found across model-file variants: one outcome per variant, ranked, and the table."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from ..tune import TuneCandidate, TuneResult

# Variant states: measured and ranked, or why not.
MEASURED, PRUNED, SKIPPED, FAILED = "measured", "pruned", "skipped", "failed"
# Accuracy verdicts of measured variants.
WITHIN, OVER, NOT_EVALUATED = "within budget", "over budget", "not evaluated: slower than the winner"
NOT_MEASURABLE = "accuracy not measurable"


@dataclasses.dataclass(frozen=True)
class VariantOutcome:
    """One variant: its recipe, how it fared (state and why), its runtime search and its accuracy."""

    name: str
    recipe: dict[str, Any]
    state: str                                  # measured | pruned | skipped | failed
    reason: str = ""                            # why pruned/skipped/failed, or a note
    size_bytes: int = 0
    runtime: TuneResult | None = None           # the runtime search of this variant's file (measured)
    quick_p50_ms: float | None = None           # the quick timing that pruned it (pruned)
    side_by_side_ms: float | None = None        # best p50 when the fastest variants were re-timed side by side
    accuracy_drop: float | None = None          # top-1 points vs the float model (evaluated)
    accuracy: str = ""                          # within budget | over budget | not evaluated ... | ""
    build_s: float = 0.0

    @property
    def best(self) -> TuneCandidate | None:
        return self.runtime.winner if self.runtime is not None else None

    @property
    def p50_ms(self) -> float | None:
        return self.best.p50_ms if self.best is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe, "state": self.state, "reason": self.reason,
                "size_bytes": self.size_bytes, "best": self.best.to_dict() if self.best else None,
                "runtime_search": self.runtime.to_dict() if self.runtime is not None else None,
                "quick_p50_ms": self.quick_p50_ms, "side_by_side_ms": self.side_by_side_ms,
                "accuracy_drop": self.accuracy_drop, "accuracy": self.accuracy,
                "build_s": round(self.build_s, 3)}


@dataclasses.dataclass(frozen=True)
class VariantTuneResult:
    """Every variant (measured ones ranked fastest first, the fastest few re-timed side by side; then the
    others), the winner and the runtime configuration written into its metadata."""

    model: str
    variants: tuple[VariantOutcome, ...]
    winner_name: str
    runtime: dict[str, Any]
    output: str | None = None
    max_accuracy_drop: float | None = None
    eval_samples: int = 0
    reference_top1: float | None = None         # the float model's top-1 on the eval data (percent)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    final_runtime: Any = None   # the winner's full runtime search (edgeq.tune's TuneResult), when it ran

    @property
    def ranked(self) -> tuple[VariantOutcome, ...]:
        return tuple(v for v in self.variants if v.state == MEASURED)

    @property
    def winner(self) -> VariantOutcome:
        return next(v for v in self.variants if v.name == self.winner_name)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "winner": self.winner_name, "runtime": self.runtime, "output": self.output,
                "max_accuracy_drop": self.max_accuracy_drop, "eval_samples": self.eval_samples,
                "reference_top1": self.reference_top1, "timings": self.timings, "notes": list(self.notes),
                "variants": [v.to_dict() for v in self.variants],
                "final_runtime": None if self.final_runtime is None else self.final_runtime.to_dict()}


def _drop(v: VariantOutcome) -> str:
    if v.accuracy_drop is not None:
        return f"{v.accuracy_drop:+.2f}"
    return "-"


def format_table(result: VariantTuneResult) -> str:
    """The ranked table (one row per measured variant, its best runtime configuration), then the
    variants not measured and why, notes, and the winner."""
    head = (f"{'rank':>4} {'variant':<26} {'delegate':<10} {'thr':>3} {'p50 ms':>9} {'sxs ms':>8} {'p99 ms':>9} "
            f"{'init ms':>8} {'size KB':>8} {'drop pt':>8}  accuracy")
    lines = [head, "-" * len(head)]
    for i, v in enumerate(result.ranked, 1):
        b = v.best
        sxs = f"{v.side_by_side_ms:8.3f}" if v.side_by_side_ms is not None else f"{'-':>8}"
        lines.append(f"{i:>4} {v.name:<26} {b.delegate:<10} {b.threads or '-':>3} {b.p50_ms:9.3f} {sxs} "
                     f"{b.p99_ms:9.3f} {b.init_ms:8.1f} {v.size_bytes / 1024:8.1f} {_drop(v):>8}  {v.accuracy}")
    for v in result.variants:
        if v.state != MEASURED:
            lines.append(f"   - {v.name:<26} {v.state}: {v.reason}")
    if any(v.side_by_side_ms is not None for v in result.ranked):
        lines.append("sxs: the fastest variants re-timed side by side (interleaved rounds, best p50); they are "
                     "ranked by it")
    lines += [f"note: {n}" for n in result.notes]
    if result.max_accuracy_drop is not None and result.reference_top1 is not None:
        lines.append(f"accuracy: top-1 drop vs the float model on {result.eval_samples} samples (float top-1 "
                     f"{result.reference_top1:.2f} %), budget {result.max_accuracy_drop:g} points")
    w, f = result.winner, result.final_runtime
    b = w.best if f is None else f.winner
    lines += [f"warning: {w}" for w in (f.warnings if f is not None else ())]
    if f is not None and f.pipeline is not None:
        lines.append("pipeline: " + f.pipeline.summary().replace("--threads auto chose", "edgeq run gets", 1))
    lines.append(f"winner: {w.name} on {b.label} with {b.threads or 'default'} thread(s), p50 {b.p50_ms:.3f} ms"
                 + (f" -> {pathlib.Path(result.output).name} (its runtime configuration is in the metadata: "
                    "edgeq.load uses it)" if result.output else " (report only: give -o to keep it)"))
    return "\n".join(lines)
