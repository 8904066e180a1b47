"""The mixed-precision search keeps only what helps; the range method chosen by measurement; honest intervals.

The unrecoverable model: its decision between classes 1 and 2 hangs on logit differences far below
the int8 step of its output, whose range a third, always-losing class sets. The output tensor is
the model's int8 output, which no float layer can fix: the search must report the miss and keep
nothing.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import edgeq
from edgeq.accuracy import convert_to_budget, evaluate, read_eval_data
from edgeq.errors import UsageError

pytestmark = pytest.mark.convert

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARD = ROOT / "models" / "hard_case" / "hard_case.keras"
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"


def unrecoverable_model():
    import keras

    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(3, name="logits")(h)
    m = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for name in ("c1", "c2"):
        k, b = m.get_layer(name).get_weights()
        m.get_layer(name).set_weights([np.abs(rng.normal(0, 0.5, k.shape)).astype("float32"), b])
    w = np.zeros((4, 3), "float32")
    w[:, 0], w[0, 1], w[1, 2] = -500.0, 0.01, 0.01   # class 0 never wins but sets the output range
    m.get_layer("logits").set_weights([w, np.array([-1000.0, 0.0, 0.0], "float32")])
    return m


def test_search_on_an_unrecoverable_model_reports_the_miss_and_keeps_nothing(fashion_test, tmp_path):
    images = fashion_test[0]
    res = convert_to_budget(unrecoverable_model(), images[:100], str(tmp_path / "u.tflite"), max_agreement_drop=1.0,
                            eval_data=read_eval_data(images[1000:1400]), num_samples=100)
    acc = res.accuracy
    steps = acc["steps"]
    assert acc["metric"] == "agreement" and not acc["met"] and acc["miss"] > 10
    assert len(steps) > 3 and steps[0]["kept"] and not any(s["kept"] for s in steps[1:])
    assert all(s["drop"] >= steps[0]["drop"] for s in steps[1:])   # nothing tried helped, and nothing was kept
    assert acc["chosen_step"] == 0 and acc["float_op_count"] == 0
    assert any(len(s["tried"]) > 1 for s in steps)                    # groups were tried too
    assert res.recipe.name == "int8" and res.report.full_integer and "MISSES" in res.recipe.notes
    assert any("honest answer" in w for w in res.warnings)
    assert any("400 samples: 1 point = 4 samples" in w for w in res.warnings)
    iv = acc["interval"]
    assert iv["ci_low"] < iv["drop"] < iv["ci_high"] and iv["drop"] == pytest.approx(steps[0]["drop"])


def test_kept_changes_only_lower_the_drop_and_the_model_is_named_mixed(tmp_path, capsys):
    from edgeq.cli import main

    out, js = tmp_path / "m.tflite", tmp_path / "m.json"
    assert main(["convert", str(HARD), "-c", str(CALIB), "-o", str(out), "--labels", str(LABELS),
                 "--max-accuracy-drop", "0.5", "--eval-data", "/usr/share/datasets/fashion-mnist",
                 "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    acc = d["accuracy"]
    kept = [s for s in acc["steps"] if s["kept"]]
    assert all(b["drop"] < a["drop"] for a, b in zip(kept, kept[1:]))
    assert acc["met"] and acc["recipe_name"] == "mixed" and d["recipe"]["name"] == "mixed"
    assert acc["float_op_count"] == len(d["recipe"]["float_nodes"]) == len(d["float_ops"]) > 0
    costs = acc["costs"]
    assert costs["chosen"]["size_bytes"] < costs["float"]["size_bytes"]
    assert acc["interval"]["samples"] == 10000 and acc["interval"]["ci_low"] <= acc["interval"]["drop"]
    text = capsys.readouterr().out
    assert "[mixed: int8 with" in text and "95% CI" in text
    assert main(["inspect", str(out)]) == 0
    assert f"recipe=mixed ({acc['float_op_count']} float op(s))" in capsys.readouterr().out
    assert edgeq.read_metadata(out.read_bytes()).recipe["name"] == "mixed"


def test_top1_budget_on_unlabelled_data_is_refused_before_any_work(fashion_test, tmp_path):
    with pytest.raises(UsageError, match="--max-agreement-drop"):
        convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "a.tflite"), max_accuracy_drop=1.0,
                          eval_data=read_eval_data(fashion_test[0][:50]))
    with pytest.raises(UsageError, match="not both"):
        convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "b.tflite"), max_accuracy_drop=1.0,
                          max_agreement_drop=1.0, eval_data=str(CALIB))


def test_eval_reports_a_bootstrap_interval_and_the_resolution(int8_model_path, fashion_test):
    small = evaluate(str(ROOT / "models" / "fashion_mnist_dsconv.keras"), [str(int8_model_path)],
                     read_eval_data(fashion_test[0][:100], fashion_test[1][:100]))
    c = small.comparisons[0]
    assert c.drop_ci.samples == 100 and c.drop_ci.low <= c.top1_drop <= c.drop_ci.high
    assert c.drop_ci.to_dict()["samples_per_point"] == 1.0
    assert any("100 samples: 1 point = 1 sample" in w for w in small.warnings)


def test_drop_interval_is_paired_and_narrows_with_samples():
    from edgeq.accuracy.stats import budget_warning, drop_interval

    rng = np.random.default_rng(1)
    lost = (rng.random(10000) < 0.02).astype(np.int8)      # 2 points lost
    wide, narrow = drop_interval(lost[:100]), drop_interval(lost)
    assert narrow.low < 2.0 < narrow.high and narrow.high - narrow.low < 1.0
    assert (wide.high - wide.low) > 2 * (narrow.high - narrow.low)
    assert budget_warning(100, 1.0, wide) and budget_warning(10000, 1.0, narrow) is None


def test_range_method_auto_measures_every_candidate_on_held_out_calibration_items(tmp_path):
    res = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "auto.tflite"),
                        recipe=edgeq.make_recipe("int8", range_method="auto"))
    sel = res.accuracy["range_selection"]
    assert sel["samples"] == 100 and "held-out" in sel["measured_on"]  # 300 images, 200 calibrate, 100 held out
    assert {c["method"] for c in sel["candidates"]} == {"minmax", "percentile", "mse"}
    best = min(sel["candidates"], key=lambda c: (c["drop"], -c["sqnr_db"]))
    assert res.recipe.range_method == sel["chosen"] == best["method"] and res.report.full_integer
    saved = json.loads((tmp_path / "auto.recipe.json").read_text())
    assert saved["range_method"] == sel["chosen"] and "chosen by measurement" in saved["notes"]
    again = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "again.tflite"),
                          recipe=edgeq.Recipe.load(tmp_path / "auto.recipe.json"))
    assert again.recipe.range_method == sel["chosen"]
    from edgeq.tflite_format import load_model_file

    def scales(path):
        _, mf = load_model_file(path)
        return sorted(round(float(t.scale[0]), 9) for t in mf.main.tensors if len(t.scale) == 1 and not t.is_constant)
    assert scales(again.output) == scales(res.output)   # the recorded choice reproduces the same quantization


def test_range_method_auto_without_held_out_items_says_what_to_do(tmp_path):
    with pytest.raises(UsageError, match="lower --num-samples"):
        edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "x.tflite"), num_samples=300,
                      recipe=edgeq.make_recipe("int8", range_method="auto"))


def test_held_out_items_are_disjoint_from_the_calibration_items():
    from edgeq.convert.calibration import CalibrationDataset

    ds = CalibrationDataset(str(CALIB), num_samples=200, seed=0)
    more = CalibrationDataset(str(CALIB), num_samples=300, seed=0)
    assert more.items[:200] == ds.items and not set(more.items[200:]) & set(ds.items)


def test_cli_agreement_budget_on_unlabelled_images_and_the_top1_budget_refused(tmp_path, capsys):
    from edgeq.cli import main

    glob = str(CALIB / "*" / "*.png")   # no labels: a glob of images
    assert main(["convert", str(HARD), "-c", str(CALIB), "-o", str(tmp_path / "a.tflite"),
                 "--max-accuracy-drop", "1", "--eval-data", glob]) == 2
    assert "--max-agreement-drop" in capsys.readouterr().err
    js = tmp_path / "g.json"
    assert main(["convert", str(HARD), "-c", str(CALIB), "-o", str(tmp_path / "g.tflite"),
                 "--max-agreement-drop", "2", "--eval-data", glob, "--json", str(js)]) == 0
    acc = json.loads(js.read_text())["accuracy"]
    assert acc["metric"] == "agreement" and acc["reference"]["top1"] is None
    assert acc["resolution"] == "300 samples: 1 point = 3 samples"
    assert "300 samples: 1 point = 3 samples" in capsys.readouterr().err
    # evaluation data is given, so the range method was chosen by measurement on it (the CLI default)
    d = json.loads(js.read_text())
    assert "range_selection" in d["accuracy"], sorted(d["accuracy"])
    assert d["recipe"]["range_method"] in ("minmax", "percentile", "mse")
