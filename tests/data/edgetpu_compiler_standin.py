"""STAND-IN for Coral's edgetpu_compiler, used by tests/test_edgetpu_compiler.py. NOT the real compiler.

The real compiler is closed-source, x86-64 Debian/Ubuntu only, and not installable here. This script
only exercises edgeq's subprocess boundary: it takes the same options (-s, -o DIR, -n N, -m N,
-v; with -n it writes N copies named like the compiler's segments, without splitting),
prints its report in the documented output format (coral.ai/docs/edgetpu/compiler/) with a
version line that says it is a stand-in, writes <name>_edgetpu.tflite and <name>_edgetpu.log.

Its "mapping" is not the Edge TPU's: every op maps, except that with EDGEQ_STANDIN_DECLINE=OP the
first op of type OP is declined ("unspecified limitation") and everything after it stays on the
CPU. The mapped prefix is replaced by one CUSTOM op "edgetpu-custom-op", as the real compiler does.
EDGEQ_STANDIN_FAIL=<text> makes it fail like the real compiler does ("Compilation failed: <text>").
"""
from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys

VERSION = "0.0.0-edgeq-test-stand-in (not Coral's compiler)"


def _compile(data: bytes, decline: str | None):
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.metadata import pack_model, unpack_model
    from edgeq.tflite_format import parse_model

    mf = parse_model(data)
    ops = mf.main.operators
    first_cpu = next((o.index for o in ops if decline and o.op == decline), len(ops))
    m = unpack_model(data)
    sg = m.subgraphs[0]
    if first_cpu == 0:
        return pack_model(m), ops, first_cpu
    head, tail = sg.operators[:first_cpu], sg.operators[first_cpu:]
    produced = {t for o in head for t in o.outputs}
    consumed_later = {t for o in tail for t in o.inputs} | set(sg.outputs)
    constants = {t.index for t in mf.main.tensors if t.is_constant}
    inputs = sorted({t for o in head for t in o.inputs if t >= 0 and t not in produced and t not in constants})
    outputs = sorted(t for t in produced if t in consumed_later)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    code.version = 1
    m.operatorCodes.append(code)
    custom = schema.OperatorT()
    custom.opcodeIndex = len(m.operatorCodes) - 1
    custom.inputs, custom.outputs = inputs, outputs
    custom.customOptions = list(b"edgeq stand-in: no Edge TPU code")
    sg.operators = [custom] + tail
    return pack_model(m), ops, first_cpu


def main() -> int:
    p = argparse.ArgumentParser(prog="edgetpu_compiler")
    p.add_argument("-s", "--show_operations", action="store_true")
    p.add_argument("-o", "--out_dir", default=".")
    p.add_argument("-n", "--num_segments", type=int, default=1)
    p.add_argument("-m", "--min_runtime_version", type=int, default=14)
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("model", nargs="*")
    a = p.parse_args()
    print(f"Edge TPU Compiler version {VERSION}")
    if a.version:
        return 0
    if os.environ.get("EDGEQ_STANDIN_FAIL"):
        print(f"Compilation failed: {os.environ['EDGEQ_STANDIN_FAIL']}")
        print("Compilation failed! ")
        return 1
    src = pathlib.Path(a.model[0])
    data = src.read_bytes()
    compiled, ops, first_cpu = _compile(data, os.environ.get("EDGEQ_STANDIN_DECLINE"))
    out = pathlib.Path(a.out_dir) / f"{src.stem}_edgetpu.tflite"
    log_path = pathlib.Path(a.out_dir) / f"{src.stem}_edgetpu.log"
    if a.num_segments > 1:  # real segments are separate sub-models; the stand-in only mimics the file names
        for i in range(a.num_segments):
            out = pathlib.Path(a.out_dir) / f"{src.stem}_segment_{i}_of_{a.num_segments}_edgetpu.tflite"
            out.write_bytes(compiled)
    else:
        out.write_bytes(compiled)
    rows = collections.Counter()
    for o in ops:
        if o.index < first_cpu:
            status = "Mapped to Edge TPU"
        elif o.index == first_cpu:
            status = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
        else:
            status = "More than one subgraph is not supported"
        rows[(o.op, status)] += 1
    table = ["Operator                       Count      Status", ""]
    table += [f"{op:<30} {n:<10} {status}" for (op, status), n in rows.items()]
    log_path.write_text("\n".join([f"Edge TPU Compiler version {VERSION}", f"Input: {src}", f"Output: {out}", "",
                                   *table, ""]))
    lines = [
        "", "Model compiled successfully in 12 ms.", "",
        f"Input model: {src}", f"Input size: {len(data) / 1024:.2f}KiB",
        f"Output model: {out}", f"Output size: {len(compiled) / 1024:.2f}KiB",
        "On-chip memory used for caching model parameters: 40.50KiB",
        "On-chip memory remaining for caching model parameters: 7.96MiB",
        "Off-chip memory used for streaming uncached model parameters: 0.00B",
        f"Number of Edge TPU subgraphs: {1 if first_cpu else 0}",
        f"Total number of operations: {len(ops)}", f"Operation log: {log_path}", "",
    ]
    if first_cpu < len(ops):
        lines += ["Model successfully compiled but not all operations are supported by the Edge TPU. A percentage "
                  "of the model will instead run on the CPU, which is slower.",
                  f"Number of operations that will run on Edge TPU: {first_cpu}",
                  f"Number of operations that will run on CPU: {len(ops) - first_cpu}", ""]
    else:
        lines += ["See the operation log file for individual operation details.", ""]
    print("\n".join(lines))
    if a.show_operations:
        print("\n".join(table))
    print("Compilation child process completed within timeout period.")
    print("Compilation succeeded! ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
