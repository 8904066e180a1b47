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
