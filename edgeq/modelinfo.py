"""``edgeq inspect``: what is inside any .tflite file, read from the file itself."""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

from .metadata import EdgeqMetadata, read_metadata
from .tflite_format import FLOAT_TYPES, ModelFile, TensorInfo, load_model_file

# Ops that only convert between representations: not float computation by themselves.
CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A model input/output as a user sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None
    shape_signature: tuple[int, ...] = ()
    index: int = -1

    @classmethod
    def from_tensor(cls, t: TensorInfo) -> TensorSpec:
        per_tensor = len(t.scale) == 1
        return cls(name=t.name, shape=t.shape, dtype=t.dtype.lower(),
                   scale=t.scale[0] if per_tensor else None,
                   zero_point=(t.zero_point[0] if t.zero_point else 0) if per_tensor else None,
                   shape_signature=t.shape_signature, index=t.index)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point,
                "shape_signature": list(self.shape_signature)}


@dataclasses.dataclass(frozen=True)
class ModelReport:
    path: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int]
    op_count: int
    full_integer: bool
    integer_io: bool
    float_ops: tuple[str, ...]
    float_tensors: tuple[str, ...]
    custom_ops: tuple[str, ...]
    metadata: EdgeqMetadata | None
    subgraphs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "size_bytes": self.size_bytes,
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
            "ops": dict(self.ops), "op_count": self.op_count,
            "full_integer": self.full_integer, "integer_io": self.integer_io,
            "float_ops": list(self.float_ops), "float_tensors": list(self.float_tensors),
            "custom_ops": list(self.custom_ops), "subgraphs": self.subgraphs,
            "metadata": self.metadata.to_dict() if self.metadata else None,
        }


def float_operators(mf: ModelFile) -> list[tuple[int, str]]:
    """(index, op name) of every operator that computes in floating point."""
    out = []
    for sg in mf.subgraphs:
        for op in sg.operators:
            if op.op in CONVERSION_OPS:
                continue
            for i in op.inputs + op.outputs:
                if i >= 0 and sg.tensors[i].dtype in FLOAT_TYPES:
                    out.append((op.index, op.op))
                    break
    return out


def inspect_model(model: str | os.PathLike | bytes) -> ModelReport:
    data, mf = load_model_file(model)
    sg = mf.main
    hist = collections.Counter(op.op for g in mf.subgraphs for op in g.operators)
    float_ops = float_operators(mf)
    float_tensors = tuple(t.name for g in mf.subgraphs for t in g.tensors
                          if t.dtype in FLOAT_TYPES and not t.is_constant)
    io = [sg.tensors[i] for i in sg.inputs + sg.outputs]
    return ModelReport(
        path=str(model) if not isinstance(model, (bytes, bytearray)) else "<bytes>",
        size_bytes=len(data),
        inputs=tuple(TensorSpec.from_tensor(sg.tensors[i]) for i in sg.inputs),
        outputs=tuple(TensorSpec.from_tensor(sg.tensors[i]) for i in sg.outputs),
        ops=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        op_count=sum(hist.values()),
        full_integer=not float_ops,
        integer_io=all(t.dtype not in FLOAT_TYPES for t in io),
        float_ops=tuple(f"{name}#{idx}" for idx, name in float_ops),
        float_tensors=float_tensors,
        custom_ops=mf.custom_ops,
        metadata=read_metadata(mf),
        subgraphs=len(mf.subgraphs),
    )


def format_report(r: ModelReport) -> str:
    lines = [f"{r.path}  ({r.size_bytes / 1024:.1f} KiB, {r.op_count} ops, {r.subgraphs} subgraph(s))"]
    for title, specs in (("inputs", r.inputs), ("outputs", r.outputs)):
        lines.append(f"{title}:")
        for t in specs:
            q = f" scale={t.scale:.6g} zero_point={t.zero_point}" if t.scale else ""
            sig = f" signature={list(t.shape_signature)}" if t.shape_signature != t.shape else ""
            lines.append(f"  {t.name}: {list(t.shape)} {t.dtype}{q}{sig}")
    lines.append("ops: " + ", ".join(f"{k}×{v}" for k, v in r.ops.items()))
    if r.full_integer:
        lines.append("full integer: yes" + ("" if r.integer_io else " (float input/output around an integer body)"))
    else:
        lines.append(f"full integer: NO — {len(r.float_ops)} op(s) compute in float: {', '.join(r.float_ops[:12])}"
                     + (" …" if len(r.float_ops) > 12 else ""))
    if r.custom_ops:
        lines.append("custom ops: " + ", ".join(r.custom_ops))
    m = r.metadata
    if m is None:
        lines.append("edgeq metadata: none (foreign model: give preprocessing options where needed)")
    else:
        n_float = len(m.recipe.get("float_nodes") or ())
        recipe = m.recipe.get("name", "?") + (f" ({n_float} float op(s))" if n_float else "")
        lines.append(f"edgeq metadata: task={m.task}, recipe={recipe}, "
                     f"preprocess={m.preprocess.describe() if m.preprocess else 'none'}, labels={len(m.labels)}")
        if m.calibration:
            c = m.calibration
            lines.append(f"  calibration: {c.get('used')} samples from {c.get('source')} "
                         f"({c.get('skipped', 0)} skipped), values {c.get('value_min')}..{c.get('value_max')}")
        if m.runtime:
            t = m.runtime
            lines.append(f"  runtime (edgeq tune): delegate {t['delegate']}, {t.get('num_threads') or 'default'} "
                         f"thread(s), p50 {t.get('p50_ms', '?')} ms on {t.get('tuned_on') or '?'}")
    return "\n".join(lines)
