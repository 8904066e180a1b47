"""Structured mutants of a real converted model through every entry point: 0 signals, 0 hangs, 0 tracebacks.

A fast subset (two mutants of each kind); `tests/fuzz/structured.py --count 400` is the longer run.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fuzz"))

import structured  # noqa: E402


def test_structured_mutants_never_crash_hang_or_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    results = {name: structured.run_one(name, data, tmp_path)
               for name, data in structured.mutants(2 * len(structured.KINDS), seed=7)}
    assert structured.failures(results) == []
    # the mutants are real defects: most are refused, and every entry point ran on every mutant
    verdicts = [v for r in results.values() for v in r.values()]
    assert verdicts.count("error") >= len(results) and len(verdicts) == 6 * len(results)
