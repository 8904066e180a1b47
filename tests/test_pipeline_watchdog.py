"""A model whose inference never returns cannot hold a run hostage (issue: hardening, case 3).

tests/data/while_forever.tflite is a real TFLite graph whose WHILE condition never turns false.
Before: `edgeq run --duration 3` ran forever, ignoring two SIGINTs and SIGTERM; no report.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from edgeq.errors import ModelError

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOREVER = ROOT / "tests" / "data" / "while_forever.tflite"


def _run_cli(args, env_extra, timeout=60):
    env = dict(os.environ, **env_extra)
    return subprocess.Popen([sys.executable, "-m", "edgeq.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_the_trial_run_refuses_a_model_that_never_finishes(tmp_path, monkeypatch):
    import edgeq

    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEQ_PROBE_TIMEOUT", "3")
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="did not finish within 3 s"):
        edgeq.load(FOREVER)
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("how", ["duration", "sigint", "sigterm"])
def test_a_stuck_inference_still_ends_the_run_in_bounded_time_with_a_report(tmp_path, how):
    """With the trial run off (a model trusted by its user), the watchdog is what stands."""
    report, video = tmp_path / "run.json", tmp_path / "run.mp4"
    args = ["run", str(FOREVER), "-s", "synthetic://64x48@30", "--json", str(report), "-o", str(video)]
    if how == "duration":
        args += ["--duration", "1"]
    t0 = time.monotonic()
    proc = _run_cli(args, {"EDGEQ_PROBE": "0"})
    if how != "duration":
        time.sleep(4)  # inference is stuck by now
        proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "inference did not return" in err
    d = json.loads(report.read_text())
    assert d["stop_reason"] == "inference_stuck" and d["frames_processed"] == 0
    assert "abandoned" in d["failure"]
