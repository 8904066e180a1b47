"""The CLI layer: exit codes, JSON output, no tracebacks for user errors, no TensorFlow on --help."""
import json
import subprocess
import sys

import pytest
from conftest import BUNDLED_KERAS, BUNDLED_LABELS, CALIBRATION_DIR

from edgeq.cli import main


def run_cli(args, capsys):
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_fast_path_without_tensorflow():
    code = "import sys; from edgeq.cli import main; main(['--help']); print('TF', 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "convert" in out and "inspect" in out and "TF False" in out


def test_inspect_errors_without_traceback(tmp_path, capsys):
    code, out, err = run_cli(["inspect", tmp_path / "missing.tflite"], capsys)
    assert code == 1 and "model file not found" in err and "Traceback" not in err
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 100)
    code, out, err = run_cli(["inspect", junk], capsys)
    assert code == 1 and "not a TFLite model" in err and "Traceback" not in err
    code, out, err = run_cli(["--verbose", "inspect", junk], capsys)
    assert code == 1 and "Traceback" in err


def test_unknown_choice_lists_valid_ones(capsys):
    code, out, err = run_cli(["convert", BUNDLED_KERAS, "-o", "x.tflite", "--recipe", "int4"], capsys)
    assert code == 2 and "int8" in err and "uint8" in err and "int16x8" in err


def test_empty_calibration_folder_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(["convert", BUNDLED_KERAS, "-c", tmp_path / "empty", "-o", tmp_path / "o.tflite"],
                             capsys)
    assert code == 1 and "holds no image files" in err and "Traceback" not in err
    assert not (tmp_path / "o.tflite").exists()


@pytest.mark.convert
def test_convert_then_inspect_json(tmp_path, capsys):
    out_model = tmp_path / "m.tflite"
    report = tmp_path / "convert.json"
    args = ["convert", BUNDLED_KERAS, "-c", CALIBRATION_DIR, "-o", out_model, "--labels", BUNDLED_LABELS,
            "--num-samples", 40, "--json", report]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["full_integer"] is True and data["calibration"]["used"] == 40
    assert data["inputs"][0]["dtype"] == "int8" and data["size_bytes"] == out_model.stat().st_size
    assert "wrote" in out and "full integer: yes" in out
    code, out, err = run_cli(args, capsys)                 # exists: refuse without --force
    assert code == 1 and "--force" in err
    code, out, err = run_cli(["inspect", out_model, "--json", "-"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["metadata"]["labels"][9] == "Ankle boot" and info["full_integer"] is True
    assert "full integer: yes" in err                       # human text moves to stderr with --json -
