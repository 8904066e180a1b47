"""Truncated and mutated models must give a clean ModelError, never a crash (run in a child process)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

DATA = pathlib.Path(__file__).resolve().parent / "data"

FUZZ = r"""
import random, sys
import numpy as np
from edgeq.errors import EdgeqError
from edgeq.runtime import load

data = open(sys.argv[1], "rb").read()
rng = random.Random(int(sys.argv[2]))
cases = [data[:n] for n in sorted({0, 3, 8, 16, 64, len(data) // 3, len(data) // 2, len(data) - 1})]
for _ in range(int(sys.argv[3])):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(b))
        b[pos] = rng.randrange(256)
    cases.append(bytes(b))
for _ in range(10):  # truncate inside the flatbuffer tables, where offsets point
    cases.append(data[:rng.randrange(16, len(data))])
clean = ran = 0
for case in cases:
    try:
        with load(case, delegate="cpu") as m:
            try:
                xs = [np.zeros([max(d, 1) for d in s.shape], dtype=np.dtype(s.dtype)) for s in m.inputs]
            except (TypeError, ValueError):  # a mutated dtype numpy does not know: loading was the test
                xs = None
            if xs is not None:
                m.run(xs)
            ran += 1
    except EdgeqError as exc:
        assert type(exc).__name__ in ("ModelError", "DataError", "UsageError"), type(exc)
        clean += 1
print(len(cases), clean, ran)
"""


def _fuzz(model: pathlib.Path, seed: int, mutations: int) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", FUZZ, str(model), str(seed), str(mutations)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"child crashed (rc {out.returncode}): {out.stderr[-3000:]}"
    total, clean, ran = (int(v) for v in out.stdout.split())
    assert clean + ran == total
    return total, clean, ran


def test_truncated_and_mutated_int8_model_never_crash():
    total, clean, ran = _fuzz(DATA / "fashion_int8.tflite", seed=1, mutations=60)
    assert clean >= 18  # every truncation is refused before the interpreter sees it


def test_truncated_and_mutated_small_model_never_crash():
    total, clean, ran = _fuzz(DATA / "add_float.tflite", seed=2, mutations=60)
    assert clean >= 18
