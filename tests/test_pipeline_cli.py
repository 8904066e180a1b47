"""`edgeq run` as a user runs it: Ctrl-C in a subprocess, errors, partial reports, --json -."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from helpers import numbered_frames

from edgeq.cli import main
from edgeq.pipeline import decode_frame_number

# In-process runs name xnnpack (these tests are about the command, not delegate selection); the
# Ctrl-C subprocess test runs with the default "auto".

pytestmark = pytest.mark.convert


def run_cli(args: list[str]) -> int:
    """`edgeq run ARGS` in this process, on XNNPACK; returns the exit code."""
    return main(["run", "--delegate", "xnnpack", *args])


def test_sigint_leaves_a_valid_report_and_a_playable_video(int8_model_path, tmp_path):
    video, report_path = tmp_path / "live.mp4", tmp_path / "report.json"
    cmd = [sys.executable, "-m", "edgeq.cli", "run", str(int8_model_path), "--source", "synthetic://320x240@30",
           "--output", str(video), "--json", str(report_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        head = ""
        while "Ctrl-C stops" not in (line := proc.stderr.readline()):
            assert line and time.monotonic() < deadline, "edgeq run did not start"
            head += line
        # auto says why it skipped the other delegates (never a silent choice)
        assert "skipped delegate edgetpu: model not compiled for the Edge TPU" in head
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(report_path.read_text())
    assert report["stop_reason"] == "interrupted" and report["mode"] == "realtime"
    assert report["frames_processed"] >= 30 and report["fps"] == pytest.approx(30, rel=0.2)
    assert "processed" in out and "FPS" in out  # the summary table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.mp4", "report.json"]  # no temp files left
    cap = cv2.VideoCapture(str(video))
    numbers = []
    while (frame := cap.read())[0]:
        numbers.append(decode_frame_number(frame[1]))
    # Realtime: each result is held until the next, so the video has one frame per source frame
    # time; collapsing the holds gives the processed frames, distinct and in order.
    shown = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
    assert len(shown) == report["frames_processed"]
    assert all(b > a for a, b in zip(shown, shown[1:]))
    # Plays at the source's speed (a late capture timestamp on a busy machine may shift a hold by one).
    assert abs(len(numbers) - (shown[-1] - shown[0] + 1)) <= 3


def test_unopenable_source_is_an_error_and_writes_nothing(int8_model_path, tmp_path, capsys):
    report_path = tmp_path / "r.json"
    rc = run_cli([str(int8_model_path), "--source", "/dev/video9", "--json", str(report_path)])
    assert rc == 1 and not report_path.exists()
    assert "/dev/video9 does not exist" in capsys.readouterr().err


def test_source_dying_mid_run_writes_a_partial_report(int8_model_path, vtest_path, tmp_path, capsys):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(vtest_path.read_bytes()[:3_000_000])
    report_path, video = tmp_path / "r.json", tmp_path / "cut_annotated.avi"
    rc = run_cli([str(int8_model_path), "--source", str(cut), "--json", str(report_path),
               "--output", str(video)])
    err = capsys.readouterr().err
    assert rc == 1 and "truncated" in err and "partial report written" in err
    report = json.loads(report_path.read_text())
    assert report["stop_reason"] == "source_failed" and 100 < report["frames_processed"] < 795
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == report["frames_processed"]


def test_json_to_stdout_and_max_frames(int8_model_path, vtest_path, capsys):
    rc = run_cli([str(int8_model_path), "--source", str(vtest_path), "--max-frames", "40", "--json", "-"])
    captured = capsys.readouterr()
    assert rc == 0
    report = json.loads(captured.out)
    assert report["frames_processed"] == 40 and report["stop_reason"] == "max_frames"
    assert "stage" in captured.err  # human table goes to stderr when JSON takes stdout
    assert report["source_fps_nominal"] == pytest.approx(10)


def test_camera_options_on_a_file_are_not_silently_ignored(int8_model_path, vtest_path, capsys):
    assert run_cli([str(int8_model_path), "--source", str(vtest_path), "--max-frames", "2",
                    "--camera-size", "640x480"]) == 0
    assert "--camera-size is requested from cameras only; ignored for video" in capsys.readouterr().err


def test_bad_options_are_usage_errors(int8_model_path, tmp_path, capsys):
    assert run_cli([str(int8_model_path), "--source", "synthetic://10x10@5"]) == 2
    assert "synthetic source needs" in capsys.readouterr().err
    out = tmp_path / "x.mp4"
    out.write_bytes(b"")
    assert run_cli([str(int8_model_path), "--source", "synthetic://320x240@30", "--output", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["run", str(int8_model_path), "--source", "synthetic://320x240@30", "--output",
                 str(tmp_path / "x.webm")]) == 1
    assert "unsupported video container" in capsys.readouterr().err


def test_a_model_without_an_image_input_is_refused_clearly(vtest_path, capsys):
    from conftest import TEST_DATA

    model = TEST_DATA / "add_float.tflite"  # one float input of shape [1, 8]: not an image model
    assert run_cli([str(model), "--source", str(vtest_path), "--max-frames", "3"]) == 2
    err = capsys.readouterr().err
    assert "one image input [1, HEIGHT, WIDTH, 1 or 3]" in err and "'x' [1, 8]" in err


def test_show_without_a_gui_opencv_is_a_clear_usage_error(int8_model_path, capsys):
    from edgeq.pipeline import gui_available

    if gui_available():
        pytest.skip("this OpenCV has a GUI: --show opens a window, no error to check")
    assert main(["run", str(int8_model_path), "--source", "synthetic://320x240@30", "--show"]) == 2
    assert "opencv-python-headless" in capsys.readouterr().err


@pytest.fixture(scope="module")
def foreign_model(int8_model_path, tmp_path_factory):
    """The same model with the edgeq metadata removed: what a model from elsewhere looks like."""
    from edgeq.metadata import METADATA_NAME, pack_model, read_metadata, unpack_model

    m = unpack_model(int8_model_path.read_bytes())
    m.metadata = [md for md in (m.metadata or []) if md.name not in (METADATA_NAME, METADATA_NAME.encode())]
    data = pack_model(m)
    assert read_metadata(data) is None
    path = tmp_path_factory.mktemp("foreign") / "foreign.tflite"
    path.write_bytes(data)
    return path


def test_foreign_model_takes_the_convert_preprocessing_options(foreign_model, vtest_path, tmp_path, capsys):
    lines = tmp_path / "f.jsonl"
    rc = run_cli([str(foreign_model), "--source", str(vtest_path), "--max-frames", "5", "--jsonl", str(lines),
               "--color", "gray", "--range", "0,1", "--resize", "letterbox"])
    err = capsys.readouterr().err
    assert rc == 0 and "no edgeq metadata" not in err
    rows = [json.loads(x) for x in lines.read_text().splitlines()]
    assert len(rows) == 5 and rows[0]["result"]["type"] == "classification"
    assert rows[0]["result"]["top"][0]["label"].isdigit()  # no labels without metadata: class numbers


def test_foreign_model_without_options_says_what_it_assumes(foreign_model, vtest_path, capsys):
    rc = run_cli([str(foreign_model), "--source", str(vtest_path), "--max-frames", "3"])
    assert rc == 0
    assert "no edgeq metadata; assuming 28x28 GRAY stretch" in capsys.readouterr().err


def test_postprocess_choices_and_help_come_from_the_registry(int8_model_path, marker_decoder, tmp_path, capsys):
    out, frames = tmp_path / "r.jsonl", tmp_path / "frames"
    frames.mkdir()  # a folder is read frame by frame: none dropped, however busy the machine
    for n, image in enumerate(numbered_frames(3)):
        cv2.imwrite(str(frames / f"{n:02d}.png"), image)
    assert run_cli([str(int8_model_path), "--source", str(frames), "--postprocess", "marker",
                    "--mode", "every-frame", "--jsonl", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(row["result"]["type"] == "marker" for row in rows)
    capsys.readouterr()
    assert main(["run", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    choices = re.search(r"\[(classify\|[^\]]+)\]", help_text).group(1).split("|")  # raw may have been re-registered
    assert sorted(choices) == sorted(["classify", "ssd", "yolo", "raw", "ssd-anchors", "mediapipe-face-short",
                                      "mediapipe-face-full", "mediapipe-palm", "landmarks", "mediapipe-face-landmark",
                                      "mediapipe-hand-landmark", "segment", "marker", "auto"])
    assert choices[-2:] == ["marker", "auto"]
    assert "marker: a red square in the corner" in help_text
    assert run_cli([str(int8_model_path), "--source", "synthetic://64x48@100", "--postprocess", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope' is not one of 'classify', 'ssd', 'yolo'," in err and "'marker', 'auto'." in err


def test_source_warnings_are_shown_without_verbose(int8_model_path, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    assert run_cli([str(int8_model_path), "--source", str(tmp_path), "--json", "-"]) == 0
    captured = capsys.readouterr()
    message = f"skipping unreadable image {tmp_path / 'b.jpg'}"
    assert captured.err.count(f"warning: {message}") == 1
    assert json.loads(captured.out)["warnings"] == [message]
