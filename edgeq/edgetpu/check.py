"""Pre-flight check of a .tflite model against the Edge TPU's published requirements.

Why: the Edge TPU compiler maps ops only up to the first one it cannot run, and everything that
depends on that op runs on the CPU ("More than one subgraph is not supported" in its log). Users
find out after a compile on another machine; this check tells them before, per op, with the fix.

A model with dynamic-sized tensors is refused by the compiler as a whole ("Attempting to use a
delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors", as
users report in google-coral/edgetpu issues); ``edgeq edgetpu fix-shapes`` freezes such models.

Rules (coral.ai/docs/edgetpu/models-intro/, "Model requirements" and "Supported operations"):
8-bit quantized tensors (int8/uint8; int32 only for constant biases/shapes/axes), sizes constant
at compile time (no ``-1`` in ``shape_signature``), constant parameters, at most 3 non-unit
dimensions per tensor ("only the 3 innermost dimensions may have a size greater than 1"), batch 1,
only ops of the table with their limitations (see ``ops.py``).

What is certain and what is an estimate: a "not mapped" verdict from a documented rule is
certain. A "mapped" verdict is an estimate: the compiler may still decline an op ("Operation is
otherwise supported, but not mapped due to some unspecified limitation"), notably size-dependent
Reshape/Resize ops. The parameter-memory figure is an estimate (the compiler keeps part of the
~8 MB SRAM for itself and may stream some parameters).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ..tflite_format import EDGETPU_CUSTOM_OP, ModelFile, TensorInfo, is_edgetpu_compiled, load_model_file
from .ops import (
    DEFAULT_RUNTIME_VERSION,
    ON_CHIP_CACHE_BYTES,
    REPLACEMENTS,
    TIGHT_CACHE_BYTES,
    OpContext,
    rule_for,
)

EIGHT_BIT = frozenset({"INT8", "UINT8"})
# Integer types allowed for constant tensors (biases are int32; shapes/axes int32/int64).
CONSTANT_INTEGER = frozenset({"INT8", "UINT8", "INT32", "INT64"})
_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "FLOAT32": np.float32, "FLOAT16": np.float16, "BOOL": np.bool_}

CERTAINTY_NOTE = ("'not mapped' verdicts from Coral's documented rules are certain; 'mapped' verdicts are an "
                  "estimate (the compiler may still decline an op for unpublished reasons, e.g. size-dependent "
                  "Reshape/Resize); the parameter memory figure is an estimate. Run 'edgeq edgetpu compile' "
                  "on an x86-64 Debian/Ubuntu machine for the compiler's own verdict.")


@dataclasses.dataclass(frozen=True)
class OpVerdict:
    """Would one operator run on the Edge TPU, and why not."""

    index: int
    op: str
    mapped: bool
    reason: str          # why not mapped ("" when mapped)
    category: str        # mapped | compiled | unsupported_op | runtime_version | data_type | dynamic_shape |
    #                      dimensions | constraint | after_unmapped | io_conversion
    certain: bool        # True: a documented rule decides it; "mapped" verdicts are always estimates
    note: str = ""       # caution for a mapped op (e.g. size-dependent rule)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "mapped": self.mapped, "reason": self.reason,
                "category": self.category, "certain": self.certain, "note": self.note}


@dataclasses.dataclass(frozen=True)
class EdgeTpuReport:
    """The check's verdict for a whole model."""

    path: str
    runtime_version: int
    ops: tuple[OpVerdict, ...]
    issues: tuple[str, ...]          # model-level problems (dynamic shapes, float tensors, ...)
    suggestions: tuple[str, ...]
    parameter_bytes: int             # constant data of the ops that would map (estimate)
    already_compiled: bool = False
    refused: str = ""                # why the compiler would reject the whole model ("" = it compiles it)
    notes: tuple[str, ...] = (CERTAINTY_NOTE,)

    @property
    def first_unmapped(self) -> OpVerdict | None:
        return next((v for v in self.ops if not v.mapped and v.category not in ("after_unmapped", "io_conversion")),
                    None)

    @property
    def tpu_ops(self) -> int:
        return sum(v.mapped for v in self.ops)

    @property
    def cpu_ops(self) -> int:
        return len(self.ops) - self.tpu_ops

    @property
    def cpu_ops_after_first_unmapped(self) -> int:
        """Ops after the first unmapped op that run on the CPU, whatever the reason."""
        first = self.first_unmapped
        return 0 if first is None else sum(not v.mapped for v in self.ops[first.index + 1:])

    @property
    def supported_ops_pushed_to_cpu(self) -> int:
        """Supported ops that run on the CPU only because they depend on an unmapped op."""
        return sum(v.category == "after_unmapped" for v in self.ops)

    @property
    def compatible(self) -> bool:
        """Every op maps (certainty: see ``notes``) and no model-level problem."""
        return not self.issues and not self.refused and all(v.mapped for v in self.ops)

    @property
    def certain(self) -> bool:
        """True when the verdict cannot change at compile time: a certain 'not mapped' exists."""
        first = self.first_unmapped
        return first is not None and first.certain

    @property
    def fits_cache(self) -> bool:
        return self.parameter_bytes <= ON_CHIP_CACHE_BYTES

    @property
    def cache_tight(self) -> bool:
        """Under 8 MiB but so close that the executable's share of the SRAM may push parameters off-chip."""
        return TIGHT_CACHE_BYTES < self.parameter_bytes <= ON_CHIP_CACHE_BYTES

    def to_dict(self) -> dict[str, Any]:
        first = self.first_unmapped
        return {
            "path": self.path, "compatible": self.compatible,
            "verdict_certain": self.certain, "compiler_refuses": self.refused or None,
            "first_unmapped": first.to_dict() if first else None,
            "tpu_ops": self.tpu_ops, "cpu_ops": self.cpu_ops,
            "cpu_ops_after_first_unmapped": self.cpu_ops_after_first_unmapped,
            "supported_ops_pushed_to_cpu": self.supported_ops_pushed_to_cpu,
            "runtime_version": self.runtime_version, "already_compiled": self.already_compiled,
            "parameter_bytes_estimate": self.parameter_bytes, "on_chip_cache_bytes": ON_CHIP_CACHE_BYTES,
            "fits_on_chip_cache_estimate": self.fits_cache, "on_chip_cache_tight_estimate": self.cache_tight,
            "issues": list(self.issues), "suggestions": list(self.suggestions), "notes": list(self.notes),
            "ops": [v.to_dict() for v in self.ops],
        }


def check_model(model: str | os.PathLike | bytes, runtime_version: int = DEFAULT_RUNTIME_VERSION) -> EdgeTpuReport:
    """Check a .tflite model (path or bytes) against Coral's rules for Edge TPU runtime ``runtime_version``."""
    from ..metadata import unpack_model

    data, mf = load_model_file(model)  # bounds-checked first: the object API has no checks
    model_t = unpack_model(data)
    path = str(model) if not isinstance(model, (bytes, bytearray)) else "<bytes>"
    return _check(mf, model_t, path, runtime_version)


def _constant_reader(model_t: Any, tensors: tuple[TensorInfo, ...]):
    def read(tensor_index: int) -> np.ndarray | None:
        if tensor_index < 0:
            return None
        t = tensors[tensor_index]
        if not t.is_constant:
            return None
        raw = model_t.buffers[t.buffer].data
        if raw is None or t.dtype not in _NUMPY:
            return None
        arr = np.frombuffer(np.asarray(raw, dtype=np.uint8).tobytes(), dtype=_NUMPY[t.dtype])
        return arr.reshape(t.shape) if t.shape and int(np.prod(t.shape)) == arr.size else arr
    return read


def _short(t: TensorInfo) -> str:
    name = t.name if len(t.name) <= 48 else t.name[:45] + "..."
    return f"tensor #{t.index} '{name}'"


def _tensor_problems(t: TensorInfo) -> list[tuple[str, str]]:
    """(category, reason) for one tensor of an op. Constant parameters are exempt from the shape rules."""
    out = []
    if t.is_constant:
        if t.dtype not in CONSTANT_INTEGER:
            out.append(("data_type", f"{_short(t)} holds {t.dtype.lower()} parameters; parameters must be 8-bit "
                                     "quantized (int32 only for biases)"))
        return out
    if t.dtype in ("INT32", "INT64"):
        out.append(("data_type", f"{_short(t)} is {t.dtype.lower()} (run-time shape arithmetic); the Edge TPU "
                                 "computes on 8-bit tensors only"))
    elif t.dtype not in EIGHT_BIT:
        out.append(("data_type", f"{_short(t)} is {t.dtype.lower()}; the Edge TPU needs 8-bit (int8/uint8) "
                                 "quantized tensors"))
    elif not t.quantized:
        out.append(("data_type", f"{_short(t)} is {t.dtype.lower()} without quantization parameters"))
    if t.is_dynamic:
        out.append(("dynamic_shape", f"{_short(t)} has a dynamic size (shape_signature {list(t.shape_signature)}); "
                                     "sizes must be constant at compile time"))
    if len(t.shape) == 4 and t.shape[0] > 1:
        out.append(("dimensions", f"{_short(t)} has batch size {t.shape[0]}; the Edge TPU needs batch 1"))
    elif any(d != 1 for d in t.shape[:-3]):  # Coral: "only the 3 innermost dimensions may have a size > 1"
        out.append(("dimensions", f"{_short(t)} {list(t.shape)} has a dimension larger than 1 outside the 3 "
                                  "innermost; only the 3 innermost may be larger than 1"))
    return out


_PRIORITY = {"data_type": 0, "unsupported_op": 1, "dynamic_shape": 2, "dimensions": 3, "constraint": 4}


def _ranked(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Most fundamental first: not 8-bit, then not in the table, then shapes, then op limitations."""
    return sorted(problems, key=lambda p: _PRIORITY.get(p[0], 9))


def _summarize(problems: list[tuple[str, str]]) -> str:
    """One reason per category (the first), with how many more tensors share it."""
    by_cat: dict[str, list[str]] = {}
    for cat, why in problems:
        by_cat.setdefault(cat, []).append(why)
    parts = []
    for whys in by_cat.values():
        more = f" (and {len(whys) - 1} more tensor(s))" if len(whys) > 1 else ""
        parts.append(whys[0] + more)
    return "; ".join(parts)


def _verdict(op: Any, ctx: OpContext, tensors: list[TensorInfo], runtime: int) -> OpVerdict:
    if op.custom_code == EDGETPU_CUSTOM_OP:
        return OpVerdict(op.index, op.op, True, "", "compiled", True, "already compiled for the Edge TPU")
    rule = rule_for(op.op)
    problems: list[tuple[str, str]] = []
    for t in tensors:
        problems.extend(_tensor_problems(t))
    if rule is None:
        hint = REPLACEMENTS.get(op.op)
        problems.append(("unsupported_op", f"{op.op} is not in Coral's supported-operation table"
                         + (f"; {hint}" if hint else "")))
        problems = _ranked(problems)
        return OpVerdict(op.index, op.op, False, _summarize(problems), problems[0][0], True)
    if rule.min_runtime > runtime:
        return OpVerdict(op.index, op.op, False, f"{rule.coral_name} needs Edge TPU runtime {rule.min_runtime}+ "
                         f"(checking for runtime {runtime})", "runtime_version", True)
    if not problems and rule.check is not None:
        why = rule.check(ctx)
        if why:
            problems.append(("constraint", f"{rule.coral_name}: {why}"))
    if problems:
        problems = _ranked(problems)
        return OpVerdict(op.index, op.op, False, _summarize(problems), problems[0][0], True)
    note = f"{rule.coral_name}: {rule.limitation}" if not rule.exact else ""
    if op.op.startswith("RESIZE_") and (getattr(ctx.options, "halfPixelCenters", False)
                                        or getattr(ctx.options, "alignCorners", False)):
        note += (" half_pixel_centers/align_corners is set: Edge TPU compilers before 15 reported such resize ops "
                 "as 'Operation version not supported'.")
    # A "mapped" verdict is never certain: the compiler may still decline the op for unpublished reasons.
    return OpVerdict(op.index, op.op, True, "", "mapped", False, note.strip())


def _check(mf: ModelFile, model_t: Any, path: str, runtime: int) -> EdgeTpuReport:
    sg = mf.main
    sg_t = model_t.subgraphs[0]
    read_constant = _constant_reader(model_t, sg.tensors)
    verdicts: list[OpVerdict] = []
    tainted: dict[int, int] = {}  # tensor index -> index of the unmapped op it depends on
    for op in sg.operators:
        ins = tuple(sg.tensors[i] if i >= 0 else None for i in op.inputs)
        outs = tuple(sg.tensors[i] if i >= 0 else None for i in op.outputs)
        ctx = OpContext(op=op, inputs=ins, outputs=outs, options=sg_t.operators[op.index].builtinOptions,
                        constant=lambda pos, _ins=op.inputs: read_constant(_ins[pos]) if pos < len(_ins) else None,
                        runtime=runtime)
        verdict = _io_conversion(op, sg) or _verdict(op, ctx, [t for t in ins + outs if t is not None], runtime)
        upstream = [tainted[i] for i in op.inputs if i in tainted]
        if verdict.mapped and upstream:
            src = min(upstream)
            verdict = OpVerdict(op.index, op.op, False,
                                f"supported, but it depends on op #{src} which does not map: the compiler makes a "
                                "single Edge TPU subgraph, everything after the first unmapped op runs on the CPU",
                                "after_unmapped", True)
        if not verdict.mapped and verdict.category != "io_conversion":
            src = min(upstream) if upstream else op.index
            for o in op.outputs:
                if o >= 0:
                    tainted[o] = src
        verdicts.append(verdict)

    issues = _model_issues(mf)
    already = is_edgetpu_compiled(mf)
    params = _parameter_bytes(mf, verdicts)
    suggestions = _suggestions(verdicts, issues, params)
    return EdgeTpuReport(path=path, runtime_version=runtime, ops=tuple(verdicts), issues=tuple(issues),
                         suggestions=tuple(suggestions), parameter_bytes=params, already_compiled=already,
                         refused=_refusal(mf, already))


def _refusal(mf: ModelFile, already_compiled: bool) -> str:
    """Why edgetpu_compiler would reject the model as a whole instead of leaving some ops on the CPU."""
    if not already_compiled and not any(t.dtype in EIGHT_BIT and t.quantized and not t.is_constant
                                        for t in mf.main.tensors):
        return "no 8-bit quantized activations: the compiler stops with 'Model not quantized'"
    dynamic = next((t for g in mf.subgraphs for t in g.tensors if t.is_dynamic), None)
    if dynamic is not None:
        return (f"dynamic-sized tensors (e.g. {_short(dynamic)} with shape_signature "
                f"{list(dynamic.shape_signature)}): compilation fails with 'Attempting to use a delegate that only "
                "supports static-sized tensors with a graph that has dynamic-sized tensors'")
    return ""


def _io_conversion(op: Any, sg: Any) -> OpVerdict | None:
    """A float<->int conversion at a model input/output runs on the CPU without splitting the model."""
    if op.op == "QUANTIZE" and op.inputs and op.inputs[0] in sg.inputs \
            and sg.tensors[op.inputs[0]].dtype not in EIGHT_BIT:
        where = "input"
    elif op.op == "DEQUANTIZE" and op.outputs and op.outputs[0] in sg.outputs \
            and sg.tensors[op.outputs[0]].dtype not in EIGHT_BIT:
        where = "output"
    else:
        return None
    why = (f"float model {where}: this {op.op} runs on the CPU (the rest of the model is not split by it); "
           "use uint8/int8 model I/O to keep it off the CPU")
    return OpVerdict(op.index, op.op, False, why, "io_conversion", True)


def _model_issues(mf: ModelFile) -> list[str]:
    sg = mf.main
    issues = []
    dynamic = [sg.tensors[i] for i in sg.inputs if sg.tensors[i].is_dynamic]
    for t in dynamic:
        issues.append(f"input '{t.name}' has a dynamic shape (shape_signature {list(t.shape_signature)}): the "
                      "compiler refuses dynamic-sized tensors")
    for where, indices in (("input", sg.inputs), ("output", sg.outputs)):
        for t in (sg.tensors[i] for i in indices if sg.tensors[i].dtype not in EIGHT_BIT):
            issues.append(f"model {where} '{t.name}' is {t.dtype.lower()}, not 8-bit: the op(s) at that end of the "
                          "model run on the CPU")
    if len(mf.subgraphs) > 1:
        issues.append(f"{len(mf.subgraphs)} subgraphs (control flow): only the main subgraph is checked, and "
                      "control-flow ops do not map")
    return issues


def _parameter_bytes(mf: ModelFile, verdicts: list[OpVerdict]) -> int:
    sg = mf.main
    seen: set[int] = set()
    total = 0
    for v in verdicts:
        if not v.mapped or v.category == "compiled":
            continue
        for i in sg.operators[v.index].inputs:
            if i >= 0 and sg.tensors[i].is_constant and sg.tensors[i].buffer not in seen:
                seen.add(sg.tensors[i].buffer)
                total += mf.buffer_sizes[sg.tensors[i].buffer]
    return total


def _suggestions(verdicts: list[OpVerdict], issues: list[str], params: int) -> list[str]:
    out: list[str] = []
    cats = {v.category for v in verdicts if not v.mapped}
    if "dynamic_shape" in cats or any("dynamic shape" in i for i in issues):
        out.append("freeze the shapes: 'edgeq edgetpu fix-shapes MODEL -o OUT' (batch 1; pass --input-size WxH for "
                   "dynamic height/width), or convert with 'edgeq convert --target edgetpu'")
    float_ops = sorted({v.op for v in verdicts if v.category == "data_type" and "(run-time shape" not in v.reason
                        and v.op not in ("QUANTIZE", "DEQUANTIZE")})
    if float_ops:
        out.append(f"quantize the remaining float/16-bit op(s) ({', '.join(float_ops)}): convert with the int8 or "
                   "uint8 recipe and without --allow-float-fallback, or replace the layers int8 cannot take")
    if any(v.category == "data_type" and "(run-time shape" in v.reason for v in verdicts) \
            and not any(v.op == "SHAPE" for v in verdicts):
        out.append("remove run-time shape arithmetic (SHAPE/STRIDED_SLICE/PACK on int32 tensors, e.g. from a Flatten "
                   "with a dynamic batch): freeze the shapes before converting, or use Reshape with a constant shape")
    for op in sorted({v.op for v in verdicts if not v.mapped and rule_for(v.op) is None
                      and v.category not in ("after_unmapped", "io_conversion", "compiled")}):
        hint = REPLACEMENTS.get(op)
        out.append(hint[0].upper() + hint[1:] if hint else
                   f"replace {op} with ops from Coral's table, or move it to the end of the model so that "
                   "everything before it still maps")
    if "runtime_version" in cats:
        need = sorted({str(rule_for(v.op).min_runtime) for v in verdicts if v.category == "runtime_version"})
        out.append(f"target a newer Edge TPU runtime (needs {', '.join(need)}+): compile with -m/--min_runtime_version")
    if "dimensions" in cats:
        out.append("reshape tensors to at most 3 dimensions larger than 1 and use batch 1")
    if "constraint" in cats:
        out.append("change the layers that break a documented limitation (see each op's reason)")
    first = next((v for v in verdicts if not v.mapped and v.category not in ("after_unmapped", "io_conversion")), None)
    if first is not None:
        after = sum(v.category == "after_unmapped" for v in verdicts)
        if after:
            out.append(f"the first unmapped op is #{first.index} ({first.op}); {after} supported op(s) after it run "
                       "on the CPU: fixing it moves them back to the Edge TPU")
    if TIGHT_CACHE_BYTES < params <= ON_CHIP_CACHE_BYTES:
        out.append(f"parameters (~{params / 2**20:.1f} MiB) are close to the ~8 MiB on-chip cache, part of which holds "
                   "the compiled executable: some may stream from host memory; the compiler's 'Off-chip memory used' "
                   "line tells ('edgeq edgetpu compile')")
    if params > ON_CHIP_CACHE_BYTES:
        out.append(f"parameters (~{params / 2**20:.1f} MiB) exceed the ~8 MiB on-chip cache: the rest streams from "
                   "host memory each inference (slower); use a smaller model or pipeline segments "
                   "(edgeq edgetpu compile --segments N)")
    return out


def format_report(r: EdgeTpuReport, show_ops: bool = True) -> str:
    """Human-readable table and verdict."""
    lines = [f"{r.path}: Edge TPU pre-flight check (runtime {r.runtime_version})"]
    if r.already_compiled:
        lines.append("  already compiled for the Edge TPU (holds edgetpu-custom-op): needs the edgetpu delegate")
    if show_ops:
        lines.append(f"  {'#':>4}  {'op':<26} {'maps':<5} reason")
        for v in r.ops:
            mark = "yes" if v.mapped else "NO"
            if v.mapped and v.note and v.category == "mapped":
                mark = "yes?"
            text = v.reason or v.note
            lines.append(f"  {v.index:>4}  {v.op:<26} {mark:<5} {text}")
    first = r.first_unmapped
    if r.compatible:
        lines.append(f"verdict: all {len(r.ops)} ops would map to the Edge TPU (estimate: the compiler decides)")
    elif r.refused:
        lines.append(f"verdict: edgetpu_compiler would REFUSE the whole model (certain): {r.refused}")
    else:
        lines.append(f"verdict: NOT fully mapped: {r.tpu_ops} op(s) on the Edge TPU, {r.cpu_ops} on the CPU"
                     + (" (certain)" if r.certain else " (estimate)"))
    if not r.compatible and first is not None:
        lines.append(f"  first unmapped: #{first.index} {first.op}: {first.reason}")
        pushed = r.supported_ops_pushed_to_cpu
        lines.append(f"  {r.cpu_ops_after_first_unmapped} op(s) after it run on the CPU"
                     + (f", {pushed} of them supported ops that only depend on it" if pushed else ""))
    for issue in r.issues:
        lines.append(f"  issue: {issue}")
    lines.append(f"  parameters on the Edge TPU: ~{r.parameter_bytes / 1024:.1f} KiB of the ~8 MiB on-chip cache "
                 f"({'does NOT fit' if not r.fits_cache else 'tight' if r.cache_tight else 'fits'}; estimate)")
    for s in r.suggestions:
        lines.append(f"  suggestion: {s}")
    return "\n".join(lines)
