"""CLI cases of the hardening issue that need no model conversion: clear errors, non-zero exits."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import BUNDLED_KERAS, CALIBRATION_DIR, ROOT

INT8 = ROOT / "tests" / "data" / "fashion_int8.tflite"


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_a_run_that_processes_nothing_exits_non_zero(tmp_path):
    """Before: exit 0 on a folder of corrupt images."""
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(b"not a png")
    out = _cli("run", INT8, "-s", tmp_path / "imgs", "--json", tmp_path / "r.json")
    assert out.returncode == 1 and "no frame was processed" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "r.json").is_file()  # the report is still written


@pytest.mark.parametrize("source, words", [
    ("synthetic://640x480@30?frames=-5", "frames=-5"),
    ("synthetic://100000x100000@30", "out of range"),
    ("synthetic://64x48@0", "out of range"),
])
def test_impossible_synthetic_sources_are_usage_errors(source, words):
    """Before: exit 0 having processed nothing, or a memory traceback."""
    out = _cli("run", INT8, "-s", source)
    assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("where", ["/proc/edgeq-out", "/sys/edgeq-out"])
def test_an_unwritable_output_location_fails_before_the_work(where):
    """Before: an OSError traceback, after a full conversion."""
    out = _cli("edgetpu", "fix-shapes", INT8, "-o", f"{where}/m.tflite")
    assert out.returncode == 1 and "cannot write" in out.stderr and "Traceback" not in out.stderr


UNWRITABLE = r"""
import sys
import edgeq
from edgeq.errors import OutputError
try:
    edgeq.convert(sys.argv[1], sys.argv[2], "/sys/edgeq-out/m.tflite")
except OutputError as exc:
    print("refused:", exc)
print("tensorflow loaded:", "tensorflow" in sys.modules)
"""


@pytest.mark.convert
def test_convert_to_an_unwritable_location_fails_before_tensorflow_loads():
    out = _cli("convert", BUNDLED_KERAS, "-c", CALIBRATION_DIR, "-o", "/sys/edgeq-out/m.tflite")
    assert out.returncode == 1 and "cannot write" in out.stderr and "Traceback" not in out.stderr
    lib = subprocess.run([sys.executable, "-c", UNWRITABLE, str(BUNDLED_KERAS), str(CALIBRATION_DIR)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "refused: cannot write /sys/edgeq-out/m.tflite" in lib.stdout, lib.stderr[-500:]
    assert "tensorflow loaded: False" in lib.stdout  # refused up front, not after a conversion


@pytest.mark.convert
def test_fewer_usable_samples_than_asked_is_a_warning_with_the_numbers(tmp_path):
    """Before: a truncated video asked for 50 samples gave 15 and said nothing."""
    import shutil

    (tmp_path / "few").mkdir()
    for p in sorted(CALIBRATION_DIR.rglob("*.png"))[:6]:
        shutil.copy(p, tmp_path / "few" / p.name)
    out = _cli("convert", BUNDLED_KERAS, "-c", tmp_path / "few", "-o", tmp_path / "m.tflite", "--num-samples", "50")
    assert out.returncode == 0, out.stderr[-500:]
    assert "calibration used 6 sample(s), fewer than the 50 asked for" in out.stderr


def test_a_model_of_an_unsupported_schema_version_is_an_error_everywhere(tmp_path):
    """Before: `edgetpu fix-shapes` raised `ValueError: Model provided is schema version 0` (a traceback)."""
    from edgeq.metadata import pack_model, unpack_model

    m = unpack_model(INT8.read_bytes())
    m.version = 0
    v0 = tmp_path / "v0.tflite"
    v0.write_bytes(pack_model(m))
    for args in (["edgetpu", "fix-shapes", v0, "-o", tmp_path / "fixed.tflite"], ["bench", v0, "--runs", "2"],
                 ["run", v0, "-s", "synthetic://64x48@30", "--max-frames", "2"]):
        out = _cli(*args)
        assert out.returncode == 1 and "schema version 0" in out.stderr and "Traceback" not in out.stderr, \
            (args, out.stderr[-400:])
