"""Outputs never destroy inputs, two writers never both "win", modes follow the umask, and a killed
writer's leftovers are swept by the next run (issue: hardening)."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from edgeq.errors import OutputExistsError
from edgeq.fileio import (
    atomic_path,
    check_distinct,
    check_not_input,
    check_output,
    private_tempdir,
    sweep_stale,
    temp_beside,
    write_bytes_atomic,
    write_text_atomic,
)


def test_an_output_that_is_an_input_is_refused_even_through_links(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model")
    (tmp_path / "sym.tflite").symlink_to(model)
    os.link(model, tmp_path / "hard.tflite")
    for out in (model, tmp_path / "sym.tflite", tmp_path / "hard.tflite", tmp_path / "." / "m.tflite"):
        with pytest.raises(OutputExistsError, match="is the input"):
            check_output(out, force=True, inputs=(str(model),))
        with pytest.raises(OutputExistsError, match="is the input"):
            check_not_input(out, [model])
    assert model.read_bytes() == b"model"
    check_not_input(tmp_path / "other.json", [model, None, b"bytes"])  # not an input: fine


def test_an_existing_output_needs_force(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("old")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output(out)
    assert check_output(out, force=True) == out


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    with pytest.raises(OutputExistsError, match="--csv and --json name the same file"):
        check_distinct({"--json": tmp_path / "r", "--csv": tmp_path / "." / "r"})
    check_distinct({"--json": "-", "--csv": "-", "--plot": None, "-o": tmp_path / "a"})


def test_exclusive_write_fails_when_the_target_appeared_and_leaves_it_alone(tmp_path):
    out = tmp_path / "out.tflite"
    with pytest.raises(OutputExistsError, match="appeared"), atomic_path(out, exclusive=True) as tmp:
        tmp.write_bytes(b"mine")
        out.write_bytes(b"theirs")  # another run wins the race meanwhile
    assert out.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tflite"]  # no temp file left behind
    write_bytes_atomic(out, b"forced")  # not exclusive (--force): replaces
    assert out.read_bytes() == b"forced"


RACE = r"""
import sys, time
from edgeq.fileio import write_bytes_atomic
from edgeq.errors import OutputExistsError
out, tag, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start:
    pass
try:
    write_bytes_atomic(out, tag.encode() * 100000, exclusive=True)
    print("WROTE", tag)
except OutputExistsError as e:
    print("REFUSED", tag)
"""


def test_racing_writers_exactly_one_wins_and_the_file_is_the_winners(tmp_path):
    import time

    out = tmp_path / "out.tflite"
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(out), tag, str(start)], stdout=subprocess.PIPE,
                              text=True) for tag in ("a", "b", "c")]
    results = [p.communicate(timeout=60)[0].split() for p in procs]
    winners = [tag for verdict, tag in results if verdict == "WROTE"]
    assert len(winners) == 1, results
    assert out.read_bytes() == winners[0].encode() * 100000


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_text_atomic(tmp_path / "report.json", "{}")
        assert (p.stat().st_mode & 0o777) == 0o644
        os.umask(0o027)
        p = write_text_atomic(tmp_path / "report2.json", "{}")
        assert (p.stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


KILLED = r"""
import os, sys, time
from edgeq.fileio import private_tempdir, temp_beside
tmp = temp_beside(sys.argv[1], ".partial.mp4")
with private_tempdir("export") as d:
    print(tmp, d, flush=True)
    time.sleep(60)
"""


def test_leftovers_of_a_killed_run_are_swept_by_the_next_one(tmp_path, monkeypatch):
    out = tmp_path / "video.mp4"
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    partial, export = proc.stdout.readline().split()
    assert pathlib.Path(partial).exists() and pathlib.Path(export).is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert pathlib.Path(partial).exists() and pathlib.Path(export).is_dir()  # SIGKILL: nothing could clean up

    mine = temp_beside(out, ".partial.mp4")  # the next run writing the same output
    assert not pathlib.Path(partial).exists() and mine.exists()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with private_tempdir("export") as d:
        assert pathlib.Path(d).is_dir()
        assert not pathlib.Path(export).exists()
    assert not pathlib.Path(d).exists()
    # a live writer's temp files are never touched
    assert sweep_stale(tmp_path, ".video.mp4.") == [] and mine.exists()
