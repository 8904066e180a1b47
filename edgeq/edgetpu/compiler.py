"""``edgetpu_compiler`` integration: run it, parse its log, compare with the pre-flight check.

The compiler is Coral's closed-source x86-64 Linux tool (coral.ai/docs/edgetpu/compiler/): it is
installed from Coral's apt repository, never by edgeq. Usage per that page:
``edgetpu_compiler [options] model...`` with ``-o/--out_dir``, ``-s/--show_operations`` (print the
operation table), ``-n/--num_segments`` (pipelining), ``-m/--min_runtime_version``; the output is
``<input>_edgetpu.tflite`` (``<input>_segment_<i>_of_<n>_edgetpu.tflite`` with -n) plus
``<input>_edgetpu.log``.

Its output format, as printed by compiler versions 2.1-16 (e.g. logs quoted in
google-coral/edgetpu issues #60, #173, #358, #433, #490, #512)::

    Edge TPU Compiler version 16.0.384591198
    Model compiled successfully in 3438 ms.
    Input model: m.tflite / Input size: 7.31MiB / Output model: m_edgetpu.tflite / Output size: ...
    On-chip memory used for caching model parameters: 6.89MiB
    On-chip memory remaining for caching model parameters: 1.00KiB
    Off-chip memory used for streaming uncached model parameters: 175.00KiB
    Number of Edge TPU subgraphs: 1
    Total number of operations: 229
    Operation log: m_edgetpu.log
    Number of operations that will run on Edge TPU: 222
    Number of operations that will run on CPU: 7
    Operator                       Count      Status
    CONV_2D                        32         Mapped to Edge TPU
    CONV_2D                        1          More than one subgraph is not supported

and on failure ``Compilation failed: <why>`` / ``Internal compiler error. Aborting!``.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

from ..errors import CompilerError, ToolNotFoundError, UsageError
from ..fileio import check_output, private_tempdir, write_bytes_atomic, write_text_atomic
from ..tflite_format import EDGETPU_CUSTOM_OP, is_edgetpu_compiled, load_model_file
from .check import EdgeTpuReport, OpVerdict, check_model
from .ops import DEFAULT_RUNTIME_VERSION

COMPILER = "edgetpu_compiler"
MAPPED_STATUS = "Mapped to Edge TPU"
INSTALL_HINT = (
    "edgetpu_compiler not found on PATH. Coral's Edge TPU Compiler runs only on x86-64 Debian/Ubuntu Linux "
    "(64-bit Debian 6.0+ or a derivative such as Ubuntu 10.0+). To install it there, add Coral's apt repository "
    "(suite coral-edgetpu-stable, with Google's apt key, as coral.ai/docs/edgetpu/compiler/ describes) and install "
    "the package 'edgetpu-compiler', or use Coral's web-based compiler "
    "notebook on Google Colab. edgeq never installs it itself. 'edgeq edgetpu check' works without it.")


@dataclasses.dataclass(frozen=True)
class CompilerRow:
    """One line of the compiler's operation table."""

    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED_STATUS

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "count": self.count, "mapped": self.mapped, "status": self.status}


@dataclasses.dataclass(frozen=True)
class CompilerLog:
    """What the compiler printed, parsed. Sizes in bytes; None where the log did not say."""

    version: str | None
    succeeded: bool
    errors: tuple[str, ...] = ()
    compile_ms: int | None = None
    input_model: str | None = None
    output_models: tuple[str, ...] = ()
    input_bytes: int | None = None
    output_bytes: int | None = None
    on_chip_used_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    tpu_ops: int | None = None
    cpu_ops: int | None = None
    operation_log: str | None = None
    rows: tuple[CompilerRow, ...] = ()

    def mapped_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.op] = out.get(r.op, 0) + (r.count if r.mapped else 0)
        return out

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.op] = out.get(r.op, 0) + r.count
        return out

    @property
    def fully_mapped(self) -> bool:
        if self.rows:
            return self.succeeded and all(r.mapped for r in self.rows) and (self.subgraphs in (None, 1))
        return self.succeeded and self.cpu_ops == 0 and self.subgraphs == 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["output_models"] = list(self.output_models)
        d["errors"] = list(self.errors)
        d["rows"] = [r.to_dict() for r in self.rows]
        d["fully_mapped"] = self.fully_mapped
        return d


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "KB": 1000, "MB": 1000 ** 2}
_SIZE = re.compile(r"([0-9.]+)\s*(B|KiB|MiB|GiB|KB|MB)\b")
_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")


def _size(text: str) -> int | None:
    m = _SIZE.search(text)
    return int(round(float(m.group(1)) * _UNITS[m.group(2)])) if m else None


# "Key: value" lines of the compiler's report -> (CompilerLog field, parser). Keys that end in "*"
# are prefixes (the on-chip/off-chip lines carry the cache size in their key).
_KEYED_FIELDS: dict[str, tuple[str, Any]] = {
    "Input model": ("input_model", str), "Input": ("input_model", str),
    "Input size": ("input_bytes", _size), "Output size": ("output_bytes", _size),
    "On-chip memory used*": ("on_chip_used_bytes", _size),
    "On-chip memory remaining*": ("on_chip_remaining_bytes", _size),
    "Off-chip memory used*": ("off_chip_bytes", _size),
    "Number of Edge TPU subgraphs": ("subgraphs", int), "Total number of operations": ("total_ops", int),
    "Number of operations that will run on Edge TPU": ("tpu_ops", int),
    "Number of operations that will run on CPU": ("cpu_ops", int),
    "Operation log": ("operation_log", str),
}


def _keyed_field(key: str) -> tuple[str, Any] | None:
    if key in _KEYED_FIELDS:
        return _KEYED_FIELDS[key]
    return next((spec for k, spec in _KEYED_FIELDS.items() if k.endswith("*") and key.startswith(k[:-1])), None)


def _is_error_line(line: str) -> bool:
    return (line.startswith(("Compilation failed", "Internal compiler error", "ERROR:", "Invalid model"))
            or "is not a valid TFLite model" in line)


def parse_compiler_log(text: str) -> CompilerLog:
    """Parse the compiler's stdout (or its .log file) into a ``CompilerLog``. Tolerant of missing lines."""
    fields: dict[str, Any] = {}
    outputs: list[str] = []
    errors: list[str] = []
    rows: list[CompilerRow] = []
    in_table = False
    succeeded = None
    partial = False  # "Model successfully compiled but not all operations are supported by the Edge TPU."
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if line.startswith("Edge TPU Compiler version"):
            fields["version"] = line.split("version", 1)[1].strip() or None
        elif line.startswith("Model compiled successfully"):
            m = re.search(r"in (\d+) ms", line)
            fields["compile_ms"] = int(m.group(1)) if m else None
            succeeded = True if succeeded is None else succeeded
        elif _is_error_line(line):
            errors.append(line)
            if not line.startswith("ERROR:"):
                succeeded = False
        elif line.startswith("Model successfully compiled but not all operations"):
            partial = True
        elif line.startswith("Compilation succeeded"):
            succeeded = True if succeeded is None else succeeded
        elif sep and key in ("Output model", "Output"):
            outputs.append(value.strip())
        elif sep and (spec := _keyed_field(key)) is not None:
            fields[spec[0]] = spec[1](value.strip())
        elif re.match(r"^Operator\s+Count\s+Status$", line):
            in_table = True
        elif in_table:
            m = _ROW.match(line)
            if m:
                rows.append(CompilerRow(m.group(1), int(m.group(2)), m.group(3)))
            else:
                in_table = False
    if succeeded is None:
        succeeded = bool(rows or outputs) and not errors
    _derive_op_counts(fields, rows, bool(succeeded), partial)
    return CompilerLog(version=fields.pop("version", None), succeeded=bool(succeeded), errors=tuple(errors),
                       output_models=tuple(outputs), rows=tuple(rows), **fields)


def _derive_op_counts(fields: dict[str, Any], rows: list[CompilerRow], succeeded: bool, partial: bool) -> None:
    """A fully mapped model prints no "will run on" counts: derive them from the table or the total."""
    if fields.get("tpu_ops") is not None or not succeeded:
        return
    if rows:
        fields["tpu_ops"] = sum(r.count for r in rows if r.mapped)
        fields["cpu_ops"] = sum(r.count for r in rows if not r.mapped)
    elif not partial and fields.get("total_ops") is not None and (fields.get("subgraphs") or 0) >= 1:
        # Fully mapped, printed without -s: no table and no counts, only the total.
        fields["tpu_ops"], fields["cpu_ops"] = fields["total_ops"], 0


def find_compiler() -> str:
    """Path of edgetpu_compiler on PATH, or ToolNotFoundError saying where it runs and how to get it."""
    path = shutil.which(COMPILER)
    if path is None:
        raise ToolNotFoundError(INSTALL_HINT)
    return path


@dataclasses.dataclass(frozen=True)
class CompileResult:
    outputs: tuple[str, ...]          # written <name>_edgetpu.tflite file(s)
    log_path: str | None              # the compiler's operation log, saved beside the output
    log: CompilerLog
    preflight: EdgeTpuReport          # edgeq's check of the input model
    ops: tuple[OpVerdict, ...]        # per op of the compiled model: edgetpu-custom-op or a CPU op
    differences: tuple[str, ...]      # where the compiler's verdict differs from the pre-flight check
    command: tuple[str, ...]

    @property
    def compatible(self) -> bool:
        return self.log.fully_mapped

    @property
    def first_unmapped(self) -> OpVerdict | None:
        return next((v for v in self.ops if not v.mapped and v.category != "io_conversion"), None)

    def to_dict(self) -> dict[str, Any]:
        first = self.first_unmapped
        return {
            "outputs": list(self.outputs), "log_path": self.log_path, "command": list(self.command),
            "compatible": self.compatible, "first_unmapped": first.to_dict() if first else None,
            "ops": [v.to_dict() for v in self.ops], "compiler": self.log.to_dict(),
            "differences": list(self.differences), "preflight": self.preflight.to_dict(),
        }


def compare_with_check(report: EdgeTpuReport, log: CompilerLog) -> list[str]:
    """Human sentences for each op type whose mapped count differs between the check and the compiler."""
    predicted: dict[str, int] = {}
    totals: dict[str, int] = {}
    for v in report.ops:
        totals[v.op] = totals.get(v.op, 0) + 1
        predicted[v.op] = predicted.get(v.op, 0) + int(v.mapped)
    actual = log.mapped_counts()
    compiled_totals = log.op_counts()
    diffs = []
    for op in sorted(set(predicted) | set(actual)):
        p, a = predicted.get(op, 0), actual.get(op, 0)
        if op not in compiled_totals and log.rows:
            if totals.get(op) and p:
                diffs.append(f"{op}: the check expected {p} mapped, the compiler's table does not list it")
            continue
        if p != a:
            statuses = sorted({r.status for r in log.rows if r.op == op and not r.mapped})
            why = f" ({'; '.join(statuses)})" if statuses else ""
            diffs.append(f"{op}: the check expected {p} of {totals.get(op, 0)} mapped, the compiler mapped {a}{why}")
    if report.compatible != log.fully_mapped:
        diffs.append(f"overall: the check said {'fully mapped' if report.compatible else 'not fully mapped'}, the "
                     f"compiler {'mapped everything' if log.fully_mapped else 'did not map everything'}")
    return diffs


def _compiled_ops(path: pathlib.Path, log: CompilerLog) -> tuple[OpVerdict, ...]:
    _, mf = load_model_file(str(path))
    status = {}
    for r in log.rows:
        if not r.mapped:
            status.setdefault(r.op, []).append(r.status)
    out = []
    for op in mf.main.operators:
        if op.custom_code == EDGETPU_CUSTOM_OP:
            out.append(OpVerdict(op.index, op.op, True, "", "compiled", True, "Edge TPU subgraph"))
        else:
            why = "; ".join(status.get(op.op, [])) or "left on the CPU by the compiler"
            out.append(OpVerdict(op.index, op.op, False, why, "compiler", True))
    return tuple(out)


def compile_model(model: str | os.PathLike, output_dir: str | os.PathLike | None = None, *,
                  segments: int | None = None, min_runtime_version: int | None = None,
                  timeout_s: float = 600.0, force: bool = False) -> CompileResult:
    """Run edgetpu_compiler on ``model``; write ``<name>_edgetpu.tflite`` (and its log) atomically."""
    src = pathlib.Path(model)
    if segments is not None and segments < 1:
        raise UsageError(f"--segments must be >= 1, got {segments}")
    preflight = check_model(src, min_runtime_version or DEFAULT_RUNTIME_VERSION)
    if preflight.already_compiled:
        raise UsageError(f"{src} is already compiled for the Edge TPU (it holds {EDGETPU_CUSTOM_OP}); compile the "
                         "model from before edgetpu_compiler")
    out_dir = pathlib.Path(output_dir) if output_dir is not None else src.parent
    compiler = find_compiler()
    with private_tempdir("edgetpu") as tmp:
        cmd = [compiler, "-s", "-o", tmp]
        if segments and segments > 1:
            cmd += ["-n", str(segments)]
        if min_runtime_version is not None:
            cmd += ["-m", str(min_runtime_version)]
        # A file named like an option (./--name.tflite) must reach the compiler as a file name.
        cmd.append(str(src) if not str(src).startswith("-") else os.path.join(".", str(src)))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CompilerError(f"{COMPILER} did not finish within {timeout_s:.0f} s on {src}") from exc
        except OSError as exc:
            raise CompilerError(f"cannot run {compiler}: {exc.strerror or exc}") from exc
        text = (proc.stdout or "") + ("\n" + proc.stderr if proc.stderr else "")
        log = parse_compiler_log(text)
        if proc.returncode != 0 or not log.succeeded:
            lines = text.strip().splitlines()
            why = "; ".join(log.errors) or (lines[-1] if lines else "no output")
            raise CompilerError(f"{COMPILER} failed on {src} (exit code {proc.returncode}): {why.rstrip(' .!')}. "
                                + _failure_hint(preflight, src))
        produced = sorted(pathlib.Path(tmp).glob("*_edgetpu.tflite"))
        if not produced:
            raise CompilerError(f"{COMPILER} reported success but wrote no *_edgetpu.tflite into its output folder")
        targets = [check_output(out_dir / p.name, force, inputs=(src,)) for p in produced]
        for p in produced:
            data, mf = load_model_file(str(p))  # validate before it replaces anything
            if not is_edgetpu_compiled(mf) and log.tpu_ops:
                raise CompilerError(f"{p.name} holds no {EDGETPU_CUSTOM_OP} although the log maps "
                                    f"{log.tpu_ops} op(s); the compiler output is inconsistent")
        ops = _compiled_ops(produced[0], log)
        for p, target in zip(produced, targets):
            write_bytes_atomic(target, p.read_bytes())
        log_path = None
        log_files = sorted(pathlib.Path(tmp).glob("*_edgetpu.log"))
        if log_files:
            log_target = out_dir / log_files[0].name
            write_text_atomic(log_target, log_files[0].read_text(encoding="utf-8", errors="replace"))
            log_path = str(log_target)
    return CompileResult(outputs=tuple(str(t) for t in targets), log_path=log_path, log=log, preflight=preflight,
                         ops=ops, differences=tuple(compare_with_check(preflight, log)), command=tuple(cmd))


def _failure_hint(preflight: EdgeTpuReport, src: pathlib.Path) -> str:
    """What to do after a failed compile: the pre-flight check's finding, or how to see more."""
    if preflight.refused or not preflight.compatible:
        first = preflight.first_unmapped
        found = preflight.refused or (f"op #{first.index} {first.op}: {first.reason}" if first is not None
                                      else "; ".join(preflight.issues))
        todo = f"; {preflight.suggestions[0]}" if preflight.suggestions else ""
        return f"edgeq's pre-flight check found: {found}{todo}"
    return (f"edgeq's pre-flight check found no problem; run '{COMPILER} -s {src}' by hand for its full output "
            "and check that the model loads in the TFLite interpreter ('edgeq run')")


def format_compile(r: CompileResult) -> str:
    log = r.log
    lines = [f"compiled with edgetpu_compiler {log.version or '?'}: " + ", ".join(r.outputs)]
    if log.on_chip_used_bytes is not None:
        lines.append(f"  on-chip parameter cache used: {log.on_chip_used_bytes / 1024:.1f} KiB; off-chip streamed: "
                     f"{(log.off_chip_bytes or 0) / 1024:.1f} KiB")
    lines.append(f"  Edge TPU subgraphs: {log.subgraphs}; ops on the Edge TPU: {log.tpu_ops}, "
                 f"on the CPU: {log.cpu_ops}")
    for row in log.rows:
        lines.append(f"  {row.op:<26} {row.count:>5}  {row.status}")
    lines.append("verdict: " + ("fully mapped to the Edge TPU (compiler's verdict)" if r.compatible else
                                "NOT fully mapped (compiler's verdict)"))
    if r.differences:
        lines.append("differences from edgeq's pre-flight check:")
        lines.extend(f"  {d}" for d in r.differences)
    else:
        lines.append("the compiler agrees with edgeq's pre-flight check")
    if r.log_path:
        lines.append(f"  operation log: {r.log_path}")
    return "\n".join(lines)
