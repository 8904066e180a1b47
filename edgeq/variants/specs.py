"""Which model-file variants ``edgeq tune`` searches, and which of them change what the model computes.

A variant is a recipe (``edgeq.convert.recipes``): the int8-activation family (int8/uint8/float model
I/O x per-channel/per-tensor weights) comes from one calibration; int16x8 reuses that calibration;
float16, dynamic and float32 come from the same SavedModel export without calibration.

Only model I/O types leave the arithmetic unchanged. A uint8 I/O tensor has the int8 tensor's scale and
its zero point + 128, and the added QUANTIZE op maps one onto the other exactly. With float I/O the model's
first op is a QUANTIZE with the input tensor's scale and zero point: the same rounding the runtime applies
to float pixels before feeding an int8 input, moved inside the graph; a DEQUANTIZE at the output is the
dequantization the runtime does otherwise. Every other tensor keeps its scale and zero point (the same
calibrated ranges), so every interior op computes the same integers. Everything else (per-tensor weights,
other activation/weight types) changes the numbers and needs an accuracy measurement.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..convert.plan import make_recipe
from ..convert.recipes import Recipe

NEEDS_EVAL = "changes what the model computes: needs --eval-data and --max-accuracy-drop"
NO_TFLITE_ROUTE = "not available for a float .tflite source (ai-edge-quantizer has no such recipe here)"


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """One model-file variant: its name, the recipe that makes it, and whether it computes what int8 does."""

    name: str
    recipe: Recipe
    same_arithmetic: bool      # True: only the I/O types differ from the default int8 model

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe.to_dict(), "same_arithmetic": self.same_arithmetic}


def variant_name(rec: Recipe) -> str:
    """'int8', 'int8 uint8-io', 'int8 per-tensor float-io', ..., or the recipe name for the others."""
    if rec.activations != "int8" or not rec.needs_calibration:
        return rec.name
    parts = ["int8"] + ([] if rec.per_channel else ["per-tensor"])
    io = rec.effective_io_dtype
    if io != "int8":
        parts.append("float-io" if io == "float32" else f"{io}-io")
    return " ".join(parts)


def _int8_family(per_tensor: bool) -> list[VariantSpec]:
    recipes = [make_recipe("int8", per_tensor=per_tensor), make_recipe("uint8", per_tensor=per_tensor),
               make_recipe("int8", per_tensor=per_tensor, float_io=True)]
    return [VariantSpec(variant_name(r), r, not per_tensor) for r in recipes]


def variant_specs(source_kind: str) -> list[VariantSpec]:
    """Every variant, in the order they are measured: float32 first (the accuracy reference, within any
    budget, so it bounds the pruning), then the int8 family (one calibration), then the others, slowest
    to build or to run last (int16x8 runs outside XNNPACK and is usually pruned by a quick timing)."""
    others = [VariantSpec(n, make_recipe(n), False) for n in ("float16", "dynamic", "int16x8")]
    return [VariantSpec("float32", make_recipe("float32"), False), *_int8_family(False), *_int8_family(True),
            *others]


def unavailable(spec: VariantSpec, source_kind: str) -> str | None:
    """Why this source cannot make the variant, or None."""
    if source_kind == "tflite_file" and spec.recipe.name in ("float16", "dynamic"):
        return NO_TFLITE_ROUTE
    return None


def plan_variants(source_kind: str, with_accuracy: bool) -> tuple[list[VariantSpec], list[tuple[VariantSpec, str]]]:
    """(the variants to search, [(variant, why skipped)]): without an accuracy budget only those that
    compute what int8 computes."""
    search, skipped = [], []
    for spec in variant_specs(source_kind):
        why = unavailable(spec, source_kind) or (None if with_accuracy or spec.same_arithmetic else NEEDS_EVAL)
        if why:
            skipped.append((spec, why))
        else:
            search.append(spec)
    return search, skipped
