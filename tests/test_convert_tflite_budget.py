"""--max-accuracy-drop / --max-agreement-drop on a float .tflite source (ai-edge-quantizer's route).

The source is the bundled Fashion-MNIST classifier as a float .tflite (tests/data/fashion_float.tflite),
calibrated and measured on real Fashion-MNIST test images: the mixed-precision search keeps ops in float
through ai-edge-quantizer's per-op ``no_quantize`` entries, and the saved recipe reproduces the model.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from edgeq.accuracy import convert_to_budget, read_eval_data
from edgeq.convert.converter import convert
from edgeq.convert.plan import make_recipe
from edgeq.convert.recipes import Recipe
from edgeq.errors import UsageError
from edgeq.metadata import read_metadata
from edgeq.modelinfo import inspect_model

pytest.importorskip("ai_edge_quantizer", reason="needs ai-edge-quantizer: pip install 'edgeq[tflite]'")

ROOT = pathlib.Path(__file__).resolve().parent.parent
FLOAT = ROOT / "tests" / "data" / "fashion_float.tflite"
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"
EVAL = slice(2100, 2600)   # 500 real test images on which full int8 loses top-1 points


def _outputs(path: pathlib.Path, images: np.ndarray) -> np.ndarray:
    from edgeq.runtime import load

    m = load(str(path), num_threads=1)
    try:
        return np.stack([m.run(m.prepare(img, "GRAY"))[0] for img in images])
    finally:
        m.close()


def test_labelled_budget_keeps_ops_float_and_the_recipe_reproduces_the_model(fashion_test, tmp_path):
    images, labels = fashion_test
    out = tmp_path / "mixed.tflite"
    res = convert_to_budget(str(FLOAT), images[:200], str(out), max_accuracy_drop=0.0, num_samples=100,
                            eval_data=read_eval_data(images[EVAL], labels[EVAL]), labels=str(LABELS))
    acc = res.accuracy
    steps = acc["steps"]
    assert acc["metric"] == "top1" and acc["reference"]["top1"] > 85
    assert steps[0]["drop"] > 0 and len(steps) > 1                     # full int8 missed: the search ran
    assert acc["met"] and steps[acc["chosen_step"]]["drop"] <= 0
    assert res.recipe.name == "mixed" and res.recipe.float_nodes and "mixed precision" in res.recipe.notes
    assert res.report.float_ops and not res.report.full_integer
    assert acc["costs"]["chosen"]["size_bytes"] < acc["costs"]["float"]["size_bytes"]
    meta = read_metadata(out.read_bytes())
    assert meta.recipe["name"] == "mixed" and meta.recipe["float_nodes"] == list(res.recipe.float_nodes)
    saved = Recipe.load(tmp_path / "mixed.recipe.json")
    assert saved.float_nodes == res.recipe.float_nodes

    again = convert(str(FLOAT), images[:200], str(tmp_path / "again.tflite"), recipe=saved, num_samples=100,
                    labels=str(LABELS))
    assert again.recipe.name == "mixed" and again.report.float_ops == res.report.float_ops
    assert np.array_equal(_outputs(out, images[EVAL]), _outputs(tmp_path / "again.tflite", images[EVAL]))


def test_cli_agreement_budget_on_a_tflite_source(fashion_test, tmp_path, capsys):
    from edgeq.cli import main

    images = fashion_test[0]
    np.save(tmp_path / "eval.npy", images[1000:1300])
    out = tmp_path / "m.tflite"
    code = main(["convert", str(FLOAT), "-c", str(CALIB), "-o", str(out), "--num-samples", "50",
                 "--max-agreement-drop", "5", "--eval-data", str(tmp_path / "eval.npy"), "--json",
                 str(tmp_path / "r.json")])
    _, stderr = capsys.readouterr()
    assert code == 0, stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["accuracy"]["metric"] == "agreement" and report["accuracy"]["met"]
    assert inspect_model(out.read_bytes()).full_integer   # full int8 already within 5 points: nothing float


def test_budget_errors_that_still_apply(fashion_test, tmp_path):
    images, labels = fashion_test
    data = read_eval_data(images[:50], labels[:50])
    with pytest.raises(UsageError, match="--range-method"):
        convert_to_budget(str(FLOAT), images[:50], str(tmp_path / "a.tflite"), max_accuracy_drop=1.0, eval_data=data,
                          recipe=make_recipe("int8", range_method="mse"))
    with pytest.raises(UsageError, match="int8-activation recipe"):
        convert_to_budget(str(FLOAT), images[:50], str(tmp_path / "b.tflite"), max_accuracy_drop=1.0, eval_data=data,
                          recipe="int16x8")
    with pytest.raises(UsageError, match="no labels.*--max-agreement-drop"):
        convert_to_budget(str(FLOAT), images[:50], str(tmp_path / "c.tflite"), max_accuracy_drop=1.0,
                          eval_data=read_eval_data(images[:50]))
    foreign = make_recipe("int8").replace(name="mixed", float_nodes=("not/a/node",))
    with pytest.raises(UsageError, match="float_nodes not in this model"):
        convert(str(FLOAT), images[:50], str(tmp_path / "d.tflite"), recipe=foreign, num_samples=20)
    with pytest.raises(UsageError, match="float_ops"):
        convert(str(FLOAT), images[:50], str(tmp_path / "e.tflite"), num_samples=20,
                recipe=make_recipe("int8").replace(float_ops=("CONV_2D",)))
    assert not list(tmp_path.glob("*.tflite"))
