"""Evaluation data readers: class folders, CSV/JSON lists, IDX, unlabelled; label checks. No TensorFlow."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from edgeq.accuracy.data import read_eval_data
from edgeq.datasets import FASHION_MNIST_DIR, FASHION_MNIST_LABELS
from edgeq.errors import DataError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CALIB = ROOT / "calibration_data"


def test_class_folder_labels_follow_the_models_class_names():
    data = read_eval_data(CALIB)
    assert data.labelled and data.kind == "folder"
    assert len(data) == len(list(CALIB.rglob("*.png")))
    mapped = data.with_model_classes(FASHION_MNIST_LABELS, 10)
    # folder names are sanitised ("t-shirt-top", "ankle_boot"); labels must land on the model's indices
    for path, label in zip(data.items, mapped.labels):
        folder = pathlib.Path(path).parent.name
        expected = [n.replace("/", "-").replace(" ", "_").lower() for n in FASHION_MNIST_LABELS].index(folder)
        assert label == expected, path


def test_csv_and_json_lists_with_names_or_indices(tmp_path):
    files = sorted(CALIB.glob("trouser/*.png"))[:3] + sorted(CALIB.glob("bag/*.png"))[:2]
    rows = [(str(f), "Trouser" if "trouser" in str(f) else "Bag") for f in files]
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,label\n" + "\n".join(f"{p},{lab}" for p, lab in rows) + "\n")
    data = read_eval_data(csv_path).with_model_classes(FASHION_MNIST_LABELS, 10)
    assert list(data.labels) == [1, 1, 1, 8, 8]

    json_path = tmp_path / "list.json"
    json_path.write_text(json.dumps([{"path": str(f), "label": 1 if "trouser" in str(f) else 8} for f in files]))
    data = read_eval_data(json_path).with_model_classes((), 10)
    assert list(data.labels) == [1, 1, 1, 8, 8]
    images = [img for _, img in data.images()]
    assert images[0].shape[:2] == (28, 28)


def test_idx_folder_is_the_real_fashion_mnist_test_set(fashion_test):
    images, labels = fashion_test
    data = read_eval_data(FASHION_MNIST_DIR)
    assert data.kind == "idx" and len(data) == 10_000
    assert np.array_equal(data.labels, labels.astype(np.int64))
    assert np.array_equal(data.items[17], images[17])
    sub = data.subset(500, seed=1)
    assert len(sub) == 500 and np.array_equal(sub.items, data.subset(500, seed=1).items)


def test_labels_outside_the_models_classes_are_a_clear_error(tmp_path):
    files = sorted(CALIB.glob("bag/*.png"))[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{files[0]},3\n{files[1]},12\n")
    with pytest.raises(DataError, match=r"label 12 is outside 0\.\.9"):
        read_eval_data(bad).with_model_classes((), 10)

    named = tmp_path / "named.csv"
    named.write_text(f"{files[0]},Bag\n{files[1]},Giraffe\n")
    with pytest.raises(DataError, match="Giraffe"):
        read_eval_data(named).with_model_classes(FASHION_MNIST_LABELS, 10)


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_eval_data(tmp_path / "missing")
    rows = tmp_path / "rows.csv"
    rows.write_text("only_one_column\n")
    with pytest.raises(DataError, match="row 1"):
        read_eval_data(rows)
    missing_img = tmp_path / "m.csv"
    missing_img.write_text("nope.png,1\n")
    with pytest.raises(DataError, match="nope.png not found"):
        read_eval_data(missing_img)
    corrupt = tmp_path / "flat"
    corrupt.mkdir()
    (corrupt / "x.png").write_bytes(b"not a png")
    data = read_eval_data(corrupt)
    assert not data.labelled
    with pytest.raises(DataError, match="x.png cannot be read"):
        list(data.images())


def test_class_folders_named_by_index_map_to_those_indices_even_when_the_model_has_names(tmp_path):
    import shutil

    for index, folder in (("1", "trouser"), ("8", "bag")):
        (tmp_path / index).mkdir()
        for f in sorted(CALIB.glob(f"{folder}/*.png"))[:2]:
            shutil.copy(f, tmp_path / index / f.name)
    data = read_eval_data(tmp_path)
    mapped = data.with_model_classes(FASHION_MNIST_LABELS, 10)
    assert list(mapped.labels) == [1, 1, 8, 8]
    assert list(mapped.with_model_classes(FASHION_MNIST_LABELS, 10).labels) == [1, 1, 8, 8]  # idempotent
    assert data.name_order_warning(()) is None  # index names need no order convention


def test_class_names_without_model_labels_fall_back_to_sorted_order_and_say_so():
    data = read_eval_data(CALIB)
    warning = data.name_order_warning(())
    assert warning and "sorted name order" in warning and "--labels" in warning and str(CALIB) in warning
    assert data.name_order_warning(FASHION_MNIST_LABELS) is None
    assert list(data.with_model_classes((), 10).labels[:1]) == [0]  # "ankle_boot" sorts first
