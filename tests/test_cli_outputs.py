"""No command writes over its inputs, even with --force; created outputs are exclusive; files get the
umask's mode (issue: hardening, cases 4-7). Each case destroyed data before."""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, CALIBRATION_DIR, ROOT

INT8 = ROOT / "tests" / "data" / "fashion_int8.tflite"


def _cli(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _digest(p: pathlib.Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def model(tmp_path) -> pathlib.Path:
    m = tmp_path / "m.tflite"
    shutil.copy(INT8, m)
    return m


@pytest.mark.parametrize("args", [
    ("inspect", "{m}", "--json", "{m}"),
    ("bench", "{m}", "--runs", "2", "--csv", "{m}"),
    ("bench", "{m}", "--runs", "2", "--json", "{link}"),
    ("edgetpu", "check", "{m}", "--json", "{hard}"),
    ("edgetpu", "fix-shapes", "{m}", "-o", "{m}", "--force"),
    ("run", "{m}", "-s", "{video}", "-o", "{video}", "--force"),
    ("run", "{m}", "-s", "{video}", "--jsonl", "{video}", "--force"),
    ("run", "{m}", "-s", "{video}", "--json", "{m}"),
    ("run", "{m}", "-s", "{video}", "--jsonl", "{out}", "--json", "{out}"),
])
def test_no_command_writes_over_an_input(tmp_path, model, args):
    video = tmp_path / "src.avi"
    import cv2

    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    w.release()
    (tmp_path / "link.tflite").symlink_to(model)
    os.link(model, tmp_path / "hard.tflite")
    before = {p: _digest(p) for p in (model, video)}
    subst = {"m": model, "video": video, "link": tmp_path / "link.tflite", "hard": tmp_path / "hard.tflite",
             "out": tmp_path / "out.json"}
    out = _cli(*[a.format(**subst) for a in args])
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-800:]
    assert "is the input" in out.stderr or "name the same file" in out.stderr, out.stderr[-800:]
    assert {p: _digest(p) for p in (model, video)} == before


@pytest.mark.convert
def test_convert_never_turns_its_source_into_json(tmp_path):
    src = tmp_path / "model.keras"
    shutil.copy(BUNDLED_KERAS, src)
    before = _digest(src)
    out = _cli("convert", src, "-c", CALIBRATION_DIR, "-o", tmp_path / "o.tflite", "--json", src)
    assert out.returncode != 0 and "is the input" in out.stderr
    assert _digest(src) == before and not (tmp_path / "o.tflite").exists()


@pytest.mark.convert
def test_an_existing_recipe_file_needs_force(tmp_path):
    (tmp_path / "o.recipe.json").write_text("{}")  # left from an earlier run
    out = _cli("convert", BUNDLED_KERAS, "-c", CALIBRATION_DIR, "-o", tmp_path / "o.tflite", "--num-samples", "20")
    assert out.returncode == 1 and "o.recipe.json already exists" in out.stderr and "--force" in out.stderr
    assert (tmp_path / "o.recipe.json").read_text() == "{}" and not (tmp_path / "o.tflite").exists()


@pytest.mark.convert
def test_two_simultaneous_converts_to_one_new_output_exactly_one_wins(tmp_path):
    """Before: both exited 0; one said "wrote out.tflite [uint8]" but the file held the other's int8 model."""
    out = tmp_path / "out.tflite"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "edgeq.cli", "convert", str(BUNDLED_KERAS), "-c",
                               str(CALIBRATION_DIR), "-o", str(out), "--recipe", recipe, "--num-samples", "20",
                               "--json", str(tmp_path / f"{recipe}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for recipe in ("int8", "uint8")]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    winners = [recipe for (rc, _), recipe in zip(results, ("int8", "uint8")) if rc == 0]
    assert len(winners) == 1, results
    loser_err = next(err for rc, err in results if rc != 0)
    assert "already exists" in loser_err or "appeared" in loser_err
    from edgeq.modelinfo import inspect_model

    assert inspect_model(out).inputs[0].dtype == winners[0]  # the file holds what the winner said it wrote


def test_written_files_follow_the_umask(tmp_path, model):
    old = os.umask(0o022)
    try:
        out = _cli("inspect", model, "--json", tmp_path / "r.json")
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
