"""Every script in examples/ runs, as a user would run it, on the bundled data (small sizes)."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
from conftest import HAVE_TF, TEST_DATA, VTEST

ROOT = pathlib.Path(__file__).resolve().parent.parent
INT8 = TEST_DATA / "fashion_int8.tflite"
FLOAT = TEST_DATA / "fashion_float.tflite"


def example(name: str, *args, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_is_tested():
    tested = set(re.findall(r'example\("(\w+\.py)"', pathlib.Path(__file__).read_text()))
    assert {p.name for p in (ROOT / "examples").glob("*.py")} <= tested


@pytest.mark.skipif(not HAVE_TF, reason="needs TensorFlow (pip install 'edgeq[convert]')")
def test_convert_keras(tmp_path):
    out = example("convert_keras.py", tmp_path, "--num-samples", "20")
    assert "int8" in out and "full integer: True" in out and "float32" in out
    assert (tmp_path / "model_int8.tflite").is_file() and (tmp_path / "model_float32.tflite").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TF, reason="needs TensorFlow (pip install 'edgeq[convert]')")
def test_convert_bundled_every_recipe(tmp_path):
    out = example("convert_bundled.py", tmp_path)
    assert all(name in out for name in ("int8", "uint8", "int16x8", "float16", "dynamic", "float32"))


def test_run_with_delegate():
    out = example("run_with_delegate.py", INT8, "--delegate", "xnnpack", "--threads", "1")
    m = re.search(r"(\d+)/(\d+) bundled images classified", out)
    assert "xnnpack" in out and m and int(m.group(1)) >= 0.7 * int(m.group(2)) and int(m.group(2)) == 30
    assert re.search(r"[\d.]+ ms per inference \(xnnpack\)", out)


def test_run_with_unavailable_delegate_says_why():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "run_with_delegate.py"), str(INT8), "--delegate",
                           "edgetpu", "--option", "library=/nonexistent/libedgetpu.so.1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "DelegateUnavailableError" in proc.stderr


def test_camera_custom_postprocess(tmp_path):
    source = VTEST if VTEST.is_file() else "synthetic://320x240@30?frames=40"
    out = example("camera_custom_postprocess.py", INT8, source, "--max-frames", "25", "--output",
                  tmp_path / "out.mp4")
    assert "postprocess: confident-top1; 25 frames" in out
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_evaluate(fashion_test):
    out = example("evaluate.py", FLOAT, INT8, "--limit", "300")
    assert "300 samples" in out and re.search(r"keeps [\d.]+ % of the float model's answers", out)


def test_classify_image():
    out = example("classify_image.py", INT8)
    assert "Bag" in out and "int8" in out


def test_run_on_video(tmp_path):
    out = example("run_on_video.py", INT8, "synthetic://320x240@30?frames=30", "--mode", "every-frame",
                  "--max-frames", "20")
    assert "20 frames at" in out


def test_task_photos(tmp_path, vtest_path):
    """The real-photo sets behind the README's detector/landmark/mask figures (scikit-image's samples)."""
    pytest.importorskip("skimage", reason="needs scikit-image (pip install 'edgeq[eval]')")
    import json

    example("task_photos.py", tmp_path, "--vtest", vtest_path)
    coco = json.loads((tmp_path / "faces_labelled.json").read_text())
    assert len(coco["images"]) == len(list((tmp_path / "faces_labelled").iterdir())) >= 14
    assert len(coco["annotations"]) == 14  # one face in each of the 14 labelled views
    assert len(list((tmp_path / "face_crops").iterdir())) == 8
