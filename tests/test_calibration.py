"""CalibrationDataset: sources, determinism, bad files skipped and reported (no TensorFlow needed)."""
import shutil

import cv2
import numpy as np
import pytest
from conftest import CALIBRATION_DIR

from edgeq.convert.calibration import CalibrationDataset
from edgeq.errors import CalibrationError
from edgeq.preprocess import Preprocess

GRAY28 = Preprocess(28, 28, color="GRAY")


def some_pngs(n=5):
    return sorted(CALIBRATION_DIR.rglob("*.png"))[:n]


def test_folder_is_recursive_seeded_and_re_iterable():
    ds = CalibrationDataset(CALIBRATION_DIR, GRAY28, num_samples=20, seed=3)
    first, second = list(ds), list(ds)
    assert len(first) == 20 == len(ds)
    assert all(a.shape == (28, 28, 1) and a.dtype == np.float32 for a in first)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = list(CalibrationDataset(CALIBRATION_DIR, GRAY28, num_samples=20, seed=4))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    # 10 class folders: a seeded shuffle draws from several of them
    assert len({p.split("/")[-2] for p in ds._items}) >= 5
    s = ds.summary()
    assert s.used == 20 and s.skipped == 0 and s.value_min[0] >= 0.0 and s.value_max[0] <= 1.0


def test_corrupt_file_among_good_ones_is_skipped_and_counted(tmp_path):
    for p in some_pngs(4):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    ds = CalibrationDataset(tmp_path, GRAY28)
    samples = list(ds)
    assert len(samples) == 4
    s = ds.summary()
    assert s.skipped == 1 and s.skipped_files[0].endswith("broken.png")


def test_empty_missing_and_all_bad_sources_fail_early(tmp_path):
    with pytest.raises(CalibrationError, match="holds no image files"):
        CalibrationDataset(tmp_path, GRAY28)
    with pytest.raises(CalibrationError, match="not found"):
        CalibrationDataset(tmp_path / "nope", GRAY28)
    with pytest.raises(CalibrationError, match="matched no image"):
        CalibrationDataset(str(tmp_path / "*.jpg"), GRAY28)
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(CalibrationError, match="no usable samples.*2 skipped"):
        CalibrationDataset(tmp_path, GRAY28).check()
    with pytest.raises(CalibrationError, match="one-shot iterator"):
        CalibrationDataset(iter([1, 2]), GRAY28)
    with pytest.raises(CalibrationError, match="num-samples"):
        CalibrationDataset(CALIBRATION_DIR, GRAY28, num_samples=0)


def test_rgba_16bit_and_gray_files_are_brought_to_spec(tmp_path):
    rgb = Preprocess(16, 16, color="RGB")
    img = np.zeros((20, 30, 4), np.uint8)
    img[..., 2] = 255                                  # red in BGRA
    img[..., 3] = 255
    cv2.imwrite(str(tmp_path / "rgba.png"), img)
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((20, 30), 65535, np.uint16))
    shutil.copy(some_pngs(1)[0], tmp_path / "gray.png")
    ds = CalibrationDataset(str(tmp_path / "*.png"), rgb)
    by_name = dict(zip([p.split("/")[-1] for p in ds._items], ds))
    assert set(by_name) == {"rgba.png", "deep.png", "gray.png"}
    np.testing.assert_allclose(by_name["rgba.png"][0, 0], [1.0, 0.0, 0.0])   # RGB order
    assert by_name["deep.png"].min() == pytest.approx(1.0)
    assert all(v.shape == (16, 16, 3) for v in by_name.values())


def test_video_frames_sampled_evenly(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(30):
        w.write(np.full((24, 32, 3), i * 8, np.uint8))
    w.release()
    ds = CalibrationDataset(path, Preprocess(24, 32, color="GRAY", std=(1.0,)), num_samples=4)
    frames = list(ds)
    assert ds._items == [0, 10, 19, 29]
    means = [f.mean() for f in frames]
    np.testing.assert_allclose(means, [0, 80, 152, 232], atol=4)   # JPEG rounding


def test_arrays_and_iterables_with_transform(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", imgs)
    np.savez(tmp_path / "x.npz", images=imgs)
    for src in (tmp_path / "x.npy", tmp_path / "x.npz", imgs):
        got = np.stack(list(CalibrationDataset(src, GRAY28, num_samples=5)))
        assert got.shape == (5, 28, 28, 1)
        assert any(np.allclose(got[0, ..., 0], im / 255.0) for im in imgs)
    paths = [str(p) for p in some_pngs(3)]
    ds = CalibrationDataset(paths, GRAY28, transform=lambda p: cv2.imread(p, cv2.IMREAD_GRAYSCALE))
    assert len(list(ds)) == 3 and len(list(ds)) == 3      # re-iterable
    ready = [np.zeros((28, 28, 1), np.float32)] * 2
    assert len(list(CalibrationDataset(ready, GRAY28))) == 2
    bad = CalibrationDataset([np.zeros((5, 5, 1), np.float32)], GRAY28)
    assert list(bad) == [] and "ready tensor" in next(iter(bad.skipped.values()))
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(CalibrationError, match="expected N images"):
        CalibrationDataset(tmp_path / "flat.npy", GRAY28)


# ---- arrays are checked at the boundary, before TensorFlow (issue: hardening, cases 2 and 9) ------
@pytest.mark.parametrize("array, words", [
    (np.full((4, 28, 28, 1), np.inf, np.float32), "non-finite"),
    (np.full((4, 28, 28, 1), np.nan, np.float32), "non-finite"),
    (np.zeros((4, 28, 28), np.int64), "dtype int64"),
    (np.zeros((4, 28, 28), np.complex64), "dtype complex64"),
    (np.zeros((28, 28), np.uint8), "shape [28, 28]"),
    (np.zeros((4, 28, 28, 7), np.uint8), "C = 1, 3 or 4"),
    (np.zeros((0, 28, 28), np.uint8), "shape [0, 28, 28]"),
])
def test_bad_calibration_arrays_are_refused_with_the_reason(tmp_path, array, words):
    import re

    with pytest.raises(CalibrationError, match=re.escape(words)):
        CalibrationDataset(array)
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(CalibrationError, match=f"a.npy.*{re.escape(words)}"):
        CalibrationDataset(str(tmp_path / "a.npy"))


def test_object_arrays_in_npz_are_an_error_not_a_traceback(tmp_path):
    np.savez(tmp_path / "o.npz", images=np.array([np.zeros((2, 2)), "x"], dtype=object))
    with pytest.raises(CalibrationError, match="o.npz"):
        CalibrationDataset(str(tmp_path / "o.npz"))


@pytest.mark.convert
def test_an_all_inf_array_fails_cleanly_and_leaves_no_export_folder(tmp_path):
    """Before: SIGSEGV every time, and an edgeq-export-* folder left in the temp dir."""
    import os
    import subprocess
    import sys

    from conftest import BUNDLED_KERAS, ROOT

    np.save(tmp_path / "inf.npy", np.full((8, 28, 28, 1), np.inf, np.float32))
    (tmp_path / "tmp").mkdir()
    out = subprocess.run([sys.executable, "-m", "edgeq.cli", "convert", str(BUNDLED_KERAS), "-c",
                          str(tmp_path / "inf.npy"), "-o", str(tmp_path / "o.tflite")], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, TMPDIR=str(tmp_path / "tmp"),
                                                          PYTHONPATH=str(ROOT)))
    assert out.returncode == 1 and "non-finite" in out.stderr and "Traceback" not in out.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.convert
def test_samples_the_model_cannot_take_blame_the_data_not_the_model(tmp_path):
    """Ready float tensors of the wrong size: every one is skipped once the model is known."""
    from conftest import BUNDLED_KERAS

    import edgeq

    with pytest.raises(CalibrationError, match=r"no usable sample.*must be \(28, 28, 1\)"):
        edgeq.convert(str(BUNDLED_KERAS), np.zeros((8, 32, 32, 1), np.float32), str(tmp_path / "o.tflite"),
                      recipe=edgeq.make_recipe("int8", allow_float_fallback=True))
