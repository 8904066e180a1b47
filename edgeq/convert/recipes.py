"""Named quantization recipes: what the converter does, saved beside the model and embedded in it.

A recipe is plain data (a frozen dataclass that round-trips through JSON), so a conversion can
be reproduced exactly with ``edgeq convert --recipe-file model.recipe.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from ..errors import UsageError


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    activations: str            # int8 | int16 | float32 | float16
    weights: str                # int8 | int4 | float16 | float32
    io_dtype: str               # int8 | uint8 | int16 | float32
    needs_calibration: bool
    full_integer: bool
    per_channel: bool = True
    float_io: bool = False
    allow_float_fallback: bool = False
    # Mixed precision (issue "accuracy"): layers kept in float by the quantization debugger.
    float_nodes: tuple[str, ...] = ()
    float_ops: tuple[str, ...] = ()
    range_method: str = "minmax"
    notes: str = ""

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    @property
    def effective_io_dtype(self) -> str:
        return "float32" if self.float_io or not self.full_integer else self.io_dtype

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["float_nodes"], d["float_ops"] = list(self.float_nodes), list(self.float_ops)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"recipe has unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        base = RECIPES.get(d.get("name", ""))
        merged = {**(base.to_dict() if base else {}), **d}
        missing = known - set(merged)
        if missing:
            raise UsageError(f"recipe {d.get('name')!r} is missing {sorted(missing)} and is not a named recipe "
                             f"({', '.join(RECIPES)})")
        merged["float_nodes"] = tuple(merged.get("float_nodes") or ())
        merged["float_ops"] = tuple(merged.get("float_ops") or ())
        return cls(**merged)

    def save(self, path: str | os.PathLike, *, exclusive: bool = False) -> pathlib.Path:
        """Write the recipe as JSON (atomically; ``exclusive``: fail if ``path`` exists)."""
        from ..fileio import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n", exclusive=exclusive)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        p = pathlib.Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise UsageError(f"recipe file not found: {p}") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read recipe file {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError(f"recipe file {p} must hold a JSON object")
        data = data.get("recipe", data)
        return cls.from_dict(data)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("int8", "full integer, int8 weights and activations, int8 input/output",
           "int8", "int8", "int8", needs_calibration=True, full_integer=True),
    Recipe("uint8", "full integer with uint8 input/output (classic Edge TPU / microcontroller choice)",
           "int8", "int8", "uint8", needs_calibration=True, full_integer=True),
    Recipe("int16x8", "int16 activations, int8 weights (more accurate, slower; few accelerators run it)",
           "int16", "int8", "int16", needs_calibration=True, full_integer=True),
    Recipe("float16", "float16 weights, float computation (GPU-friendly, 2x smaller)",
           "float32", "float16", "float32", needs_calibration=False, full_integer=False),
    Recipe("dynamic", "int8 weights, float activations quantized on the fly at run time",
           "float32", "int8", "float32", needs_calibration=False, full_integer=False),
    Recipe("float32", "no quantization: the float reference, with the same embedded contract (for eval/bench)",
           "float32", "float32", "float32", needs_calibration=False, full_integer=False),
    # 4-bit weights through ai-edge-quantizer (a Keras/SavedModel source goes through a float .tflite first)
    Recipe("int4-weights", "int4 weights (per channel) unpacked to float at load; float computation: size only",
           "float32", "int4", "float32", needs_calibration=False, full_integer=False),
    Recipe("int4-dynamic", "int4 weights, activations quantized on the fly (LiteRT's int4 kernels: "
           "FULLY_CONNECTED, CONV_2D...)", "float32", "int4", "float32", needs_calibration=False, full_integer=False),
)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}") from None
