"""Per-op profile of an int8 .tflite under XNNPACK, and the share of the CPU's int8 peak it reaches.

ai-edge-litert 2.3 gives Python no profiler output (``experimental_force_delegate_node_profiling``
only feeds a C++ profiler; its ``benchmark_litert_model`` tool times whole models; there is no
benchmark_model binary in the wheel). So each operator is cut out into a one-op model (its constant
tensors kept, its other inputs made model inputs: ``schema_py_generated``'s object API) and timed
alone under XNNPACK with the same threads; ops are grouped by kind, with their multiply-accumulates
(MACs) counted from the tensor shapes. Cut-out ops run with hot caches and without XNNPACK's
cross-op fusion, so the sum of the ops is compared with the whole model's time.

With ``--openvino model.xml`` the OpenVINO IR is profiled too (``PERF_COUNT``): its per-layer
times grouped the same way, and the CPU kernels (``exec_type``) it picked, which show the ISA it
uses (e.g. ``brgconv_avx512_amx_I8``: AMX tiles).

    .venv/bin/python benchmarks/op_profile.py build/peers/mobilenetv2.tflite \
        [--openvino build/peers/mobilenetv2.ov.xml] [--threads 2] [--runs 200]
"""
from __future__ import annotations

import argparse
import collections
import copy
import pathlib
import statistics
import sys
import time
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import hide_isa  # noqa: E402
import peers  # noqa: E402


def _opcode_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as sch

    return {v: k for k, v in vars(sch.BuiltinOperator).items() if not k.startswith("_")}


def load(path: pathlib.Path) -> Any:
    from ai_edge_litert import schema_py_generated as sch

    buf = path.read_bytes()
    return sch.ModelT.InitFromObj(sch.Model.GetRootAsModel(buf, 0))


def op_name(model: Any, op: Any, names: dict[int, str]) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def _is_const(model: Any, tensor: Any) -> bool:
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def single_op_model(model: Any, index: int) -> bytes:
    """The main subgraph's operator `index` alone: its constants kept, its other inputs made model inputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as sch

    sg = model.subgraphs[0]
    op = copy.deepcopy(sg.operators[index])
    used = list(dict.fromkeys(t for t in list(op.inputs) + list(op.outputs) if t >= 0))
    remap = {t: i for i, t in enumerate(used)}
    buffers, tensors, inputs = [sch.BufferT()], [], []
    for t in used:
        tensor = copy.deepcopy(sg.tensors[t])
        if _is_const(model, tensor):
            buffers.append(copy.deepcopy(model.buffers[tensor.buffer]))
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if t in op.inputs:
                inputs.append(remap[t])
        tensors.append(tensor)
    op.inputs = [remap.get(t, -1) for t in op.inputs]
    op.outputs = [remap[t] for t in op.outputs]
    op.opcodeIndex = 0
    new = sch.ModelT()
    new.version, new.description = model.version, "one op"
    new.operatorCodes = [copy.deepcopy(model.operatorCodes[sg.operators[index].opcodeIndex])]
    sub = sch.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, inputs, list(op.outputs), [op]
    new.subgraphs, new.buffers = [sub], buffers
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(new.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def macs(model: Any, op: Any, kind: str) -> int:
    """Multiply-accumulates of one op at batch 1 (0 for ops that are not dot products)."""
    sg = model.subgraphs[0]
    out = [int(d) for d in sg.tensors[op.outputs[0]].shape]
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        w = [int(d) for d in sg.tensors[op.inputs[1]].shape]
        if kind == "CONV_2D":        # filter [Cout, kh, kw, Cin]
            return int(np.prod(out)) * w[1] * w[2] * w[3]
        if kind == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, Cout]
            return int(np.prod(out)) * w[1] * w[2]
        return int(np.prod(out)) * w[-1]  # weights [out, in]
    return 0


def group(model: Any, op: Any, kind: str) -> str:
    """Ops grouped by what XNNPACK runs them with: 1x1 convs (expand/project), 3x3 convs, depthwise by stride."""
    sg = model.subgraphs[0]
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = [int(d) for d in sg.tensors[op.inputs[1]].shape]
        stride = getattr(op.builtinOptions, "strideH", 1)
        if kind == "DEPTHWISE_CONV_2D":
            return f"depthwise {w[1]}x{w[2]} s{stride}"
        cin, cout = w[3], w[0]
        if w[1] == w[2] == 1:
            return f"conv 1x1 {'expand' if cout > cin else 'project' if cout < cin else 'same'}"
        return f"conv {w[1]}x{w[2]} s{stride}"
    return kind.lower()


def time_bytes(content: bytes, threads: int, runs: int, reps: int = 5) -> float:
    """Median ms per invoke of a model under XNNPACK (real-range random int8 inputs)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=threads)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        x = (rng.integers(info.min, info.max + 1, d["shape"]) if info else rng.standard_normal(d["shape"]))
        it.set_tensor(d["index"], x.astype(d["dtype"]))
    for _ in range(max(runs // 10, 3)):
        it.invoke()
    per = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(runs):
            it.invoke()
        per.append((time.perf_counter() - t0) * 1000.0 / runs)
    return statistics.median(per)


def profile_tflite(path: pathlib.Path, threads: int, runs: int) -> dict[str, Any]:
    """Per-op ms, MACs and groups of the main subgraph, and the whole model's ms, all in this process."""
    model, names = load(path), _opcode_names()
    rows = []
    for i, op in enumerate(model.subgraphs[0].operators):
        kind = op_name(model, op, names)
        rows.append({"index": i, "op": kind, "group": group(model, op, kind), "macs": macs(model, op, kind),
                     "ms": time_bytes(single_op_model(model, i), threads, runs)})
    whole = time_bytes(path.read_bytes(), threads, max(runs // 4, 20))
    return {"ops": rows, "whole_ms": whole}


def summarise(rows: list[dict[str, Any]], whole_ms: float, peaks: list[tuple[str, float]]) -> str:
    """Markdown: per group ms, share of the summed op time, GMAC/s and its share of each ISA's int8 peak."""
    groups: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"ms": 0.0, "macs": 0, "n": 0})
    for r in rows:
        g = groups[r["group"]]
        g["ms"] += r["ms"]
        g["macs"] += r["macs"]
        g["n"] += 1
    total_ms = sum(g["ms"] for g in groups.values())
    total_macs = sum(g["macs"] for g in groups.values())
    peak_cols = "".join(f" % of {isa} peak |" for isa, _ in peaks)
    lines = [f"| op group | ops | ms | share | MMACs | GMAC/s |{peak_cols}", "|" + "---|" * (6 + len(peaks))]

    def row(name: str, n: int, ms: float, mac: float, share: float) -> str:
        rate = mac / ms / 1e6 if ms and mac else 0.0
        pk = "".join(f" {rate / p * 100:.1f} |" if rate and p else " – |" for _, p in peaks)
        return (f"| {name} | {n} | {ms:.3f} | {share * 100:.0f} % | {mac / 1e6:.1f} | "
                f"{rate:.0f} |" if rate else f"| {name} | {n} | {ms:.3f} | {share * 100:.0f} % | – | – |") + pk

    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["ms"]):
        lines.append(row(name, int(g["n"]), g["ms"], g["macs"], g["ms"] / total_ms))
    lines.append(row("**sum of ops**", len(rows), total_ms, total_macs, 1.0))
    lines.append(row("**whole model**", len(rows), whole_ms, total_macs, whole_ms / total_ms))
    return "\n".join(lines)


def profile_openvino(xml: pathlib.Path, threads: int, runs: int, x_shape: tuple[int, ...]) -> str:
    """OpenVINO's own per-layer counters, summed over `runs` calls: by layer type and by CPU kernel."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True})
    req = compiled.create_infer_request()
    x = np.random.default_rng(0).uniform(-1, 1, x_shape).astype(np.float32)
    for _ in range(max(runs // 10, 3)):
        req.infer({0: x})
    per_call: list[dict[tuple[str, str], float]] = []
    counts: dict[tuple[str, str], int] = collections.Counter()
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        req.infer({0: x})
        wall.append((time.perf_counter() - t0) * 1000.0)
        call: dict[tuple[str, str], float] = collections.defaultdict(float)
        counts.clear()
        for p in req.profiling_info:
            if p.status == p.Status.EXECUTED:
                call[(p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1000.0
                counts[(p.node_type, p.exec_type)] += 1
        per_call.append(call)
    # medians per call: a few calls with outliers (thread wake-ups, AMX tile setup) would swamp means
    med = {k: statistics.median(c.get(k, 0.0) for c in per_call) for k in counts}
    total = sum(med.values())
    lines = ["| OpenVINO layer type | CPU kernel (exec_type) | layers | ms (median) | share |", "|---|---|---|---|---|"]
    for (kind, exe), ms in sorted(med.items(), key=lambda kv: -kv[1]):
        if ms / total >= 0.005:
            lines.append(f"| {kind} | {exe} | {counts[(kind, exe)]} | {ms:.3f} | {ms / total * 100:.0f} % |")
    lines.append(f"| **all layers** | | | {total:.3f} | 100 % |")
    lines.append(f"\nwall time per call with counters on: median {statistics.median(wall):.3f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tflite", type=pathlib.Path)
    ap.add_argument("--openvino", type=pathlib.Path, help="an OpenVINO IR (.xml) of the same network to profile too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200, help="invokes per timing block")
    ap.add_argument("--hide-isa", action="store_true", help="AVX2 code paths only (benchmarks/hide_isa.py)")
    args = ap.parse_args(argv)
    if args.hide_isa:
        hide_isa.reexec_hidden(ROOT / "build" / "cpuid_mask")
    if args.threads < 1 or args.runs < 1:
        ap.error("--threads and --runs must be >= 1")
    info = peers.cpu_info()
    peaks = peers.int8_peak(info, args.threads)
    prof = profile_tflite(args.tflite, args.threads, args.runs)
    hidden = f" ({info['hidden']})" if info.get("hidden") else ""
    print(f"CPU: {info['model']}, flags {' '.join(info['flags'])}{hidden}, nominal {info['mhz']} MHz; "
          f"{args.threads} threads;"
          " peaks (int8 GMAC/s): " + ", ".join(f"{isa} {p:.0f}" for isa, p in peaks))
    print(f"\n{args.tflite.name} under XNNPACK, each op cut out and timed alone:\n")
    print(summarise(prof["ops"], prof["whole_ms"], peaks))
    if args.openvino:
        shape = tuple(int(d) for d in load(args.tflite).subgraphs[0].tensors[
            load(args.tflite).subgraphs[0].inputs[0]].shape)
        print(f"\n{args.openvino.name} (OpenVINO PERF_COUNT):\n")
        print(profile_openvino(args.openvino, args.threads, args.runs, shape))


if __name__ == "__main__":
    main()
