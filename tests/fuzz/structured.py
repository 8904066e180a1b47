"""Structured mutants of a real converted model, and a driver that runs edgeq's entry points on each.

Mutations are made with the flatbuffer object API, so the file always parses; what breaks is the
graph: operator inputs dropped or redirected, tensor types and shapes changed, opcodes swapped,
weight buffers cut short, quantization scales made NaN/zero/negative, zero-point lists mismatched.

    .venv/bin/python tests/fuzz/structured.py --count 400     # the longer run (a few minutes)

prints one line per outcome class and exits non-zero on any signal, hang or traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "data" / "fashion_int8.tflite"
KINDS = ("drop_input", "redirect_input", "tensor_type", "tensor_shape", "swap_opcode", "cut_buffer", "bad_scale",
         "zero_point_len", "subgraph_io")


def mutate(data: bytes, rng: random.Random, kind: str) -> bytes:
    """One mutant of ``data`` of the given kind (deterministic for a seeded ``rng``)."""
    sys.path.insert(0, str(ROOT))
    from edgeq.metadata import pack_model, unpack_model

    m = unpack_model(data)
    sg = m.subgraphs[0]
    op = rng.choice(sg.operators)
    tensors = sg.tensors
    if kind == "drop_input" and len(op.inputs):
        op.inputs = [i for j, i in enumerate(op.inputs) if j != rng.randrange(len(op.inputs))]
    elif kind == "redirect_input" and len(op.inputs):
        ins = list(op.inputs)
        ins[rng.randrange(len(ins))] = rng.choice([-1, rng.randrange(len(tensors))])
        op.inputs = ins
    elif kind == "tensor_type":
        rng.choice(tensors).type = rng.choice([0, 1, 2, 3, 4, 6, 7, 9, 10, 17])
    elif kind == "tensor_shape":
        t = rng.choice(tensors)
        shape = list(t.shape) if t.shape is not None else []
        if shape and rng.random() < 0.5:
            shape[rng.randrange(len(shape))] = rng.choice([0, 1, 3, 1000])
        else:
            shape = shape[:-1] if shape and rng.random() < 0.5 else shape + [2]
        t.shape = shape
    elif kind == "swap_opcode":
        op.opcodeIndex = rng.randrange(len(m.operatorCodes))
    elif kind == "cut_buffer":
        full = [b for b in m.buffers if b.data is not None and len(b.data) > 4]
        if full:
            b = rng.choice(full)
            b.data = list(b.data)[: rng.randrange(len(b.data))]
    elif kind == "bad_scale":
        q = [t.quantization for t in tensors if t.quantization is not None and t.quantization.scale is not None
             and len(t.quantization.scale)]
        if q:
            target = rng.choice(q)
            target.scale = [rng.choice([float("nan"), 0.0, -1.0, float("inf"), 1e-45])] * len(target.scale)
    elif kind == "zero_point_len":
        q = [t.quantization for t in tensors if t.quantization is not None and t.quantization.zeroPoint is not None
             and len(t.quantization.zeroPoint)]
        if q:
            target = rng.choice(q)
            target.zeroPoint = list(target.zeroPoint) + [0] * rng.randint(1, 3)
    elif kind == "subgraph_io":
        sg.inputs = [rng.randrange(len(tensors))]
    return pack_model(m)


def mutants(count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    data = MODEL.read_bytes()
    rng = random.Random(seed)
    return [(f"{KINDS[i % len(KINDS)]}-{i}", mutate(data, rng, KINDS[i % len(KINDS)])) for i in range(count)]


# One child per mutant: a signal or a hang is pinned on that mutant, and a traceback is any exception
# that is not an EdgeqError. Every entry point a user has: inspect, load().run, the pipeline (run),
# bench's measurement, edgetpu check and fix-shapes.
CHILD = r"""
import json, sys, traceback
import numpy as np
from edgeq.errors import EdgeqError
path = sys.argv[1]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except EdgeqError as exc:
        out[name] = "error"
    except Exception:
        out[name] = "TRACEBACK " + traceback.format_exc(limit=3).replace("\n", " | ")[-400:]
def inspect():
    from edgeq.modelinfo import inspect_model
    inspect_model(path)
def load_run():
    import edgeq
    with edgeq.load(path, delegate="xnnpack") as m:
        xs = [np.zeros([max(d, 1) for d in s.shape], np.dtype(s.dtype)) for s in m.inputs]
        m.run(xs)
def pipeline():
    import edgeq
    from edgeq.pipeline import RunOptions, open_source, run_pipeline
    with edgeq.load(path, delegate="xnnpack") as m:
        run_pipeline(m, open_source("synthetic://64x48@30"), options=RunOptions(max_frames=2, postprocess="raw"))
def bench():
    from edgeq.bench import run_benchmark
    r = run_benchmark([path], ["xnnpack"], [1], runs=2, warmup=0, isolate=False)
    if r and r[0].error:
        raise EdgeqError(r[0].error)
def check():
    from edgeq.edgetpu.check import check_model
    check_model(path)
def fix_shapes():
    from edgeq.edgetpu.shapes import freeze_shapes
    freeze_shapes(path, path + ".static.tflite", force=True)
for name, fn in [("inspect", inspect), ("load_run", load_run), ("run", pipeline), ("bench", bench),
                 ("edgetpu_check", check), ("fix_shapes", fix_shapes)]:
    attempt(name, fn)
print("@@" + json.dumps(out))
"""


def run_one(name: str, data: bytes, folder: pathlib.Path, timeout_s: float = 90.0) -> dict[str, str]:
    path = folder / f"{name}.tflite"
    path.write_bytes(data)
    env = dict(os.environ, EDGEQ_PROBE_TIMEOUT="10", PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"process": f"HANG (> {timeout_s:.0f} s)"}
    if proc.returncode < 0:
        return {"process": f"SIGNAL {-proc.returncode}: {proc.stderr[-300:]}"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not lines:
        return {"process": f"EXIT {proc.returncode}: {proc.stderr[-300:]}"}
    return json.loads(lines[-1][2:])


def failures(results: dict[str, dict[str, str]]) -> list[str]:
    return [f"{name}: {what}={verdict}" for name, res in results.items() for what, verdict in res.items()
            if verdict not in ("ok", "error")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run_one(name, data, pathlib.Path(tmp)) for name, data in mutants(args.count, args.seed)}
    bad = failures(results)
    clean = sum(1 for r in results.values() if all(v in ("ok", "error") for v in r.values()))
    print(f"{len(results)} mutants in {time.time() - t0:.0f} s: {clean} handled cleanly, {len(bad)} problems")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
