"""Mixed precision to an accuracy budget, range methods and sensitivity analysis on real models.

The hard case (models/hard_case) is a small hard-swish CNN whose linear bottleneck has one outlier
channel; full int8 loses > 1 point of top-1 on the real Fashion-MNIST test set.
"""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

import edgeq
from edgeq.accuracy import convert_to_budget, evaluate, read_eval_data
from edgeq.convert.plan import make_recipe
from edgeq.convert.recipes import Recipe, get_recipe
from edgeq.errors import UsageError
from edgeq.metadata import read_metadata
from edgeq.modelinfo import inspect_model

pytestmark = pytest.mark.convert

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARD = ROOT / "models" / "hard_case" / "hard_case.keras"
BUNDLED = ROOT / "models" / "fashion_mnist_dsconv.keras"
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"
FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def hard_calibrated():
    """The hard case calibrated once (float graph with recorded ranges) + its preprocessing."""
    from edgeq.accuracy.sensitivity import open_converter
    from edgeq.convert.quantize import CalibratedModel

    rec = get_recipe("int8")
    with open_converter(str(HARD), str(CALIB), rec, None, None, 200, 0) as (tf, converter, rep, pre):
        cal = CalibratedModel.calibrate(tf, converter, rec)
        samples = rep
    return cal, pre, samples


@pytest.fixture(scope="module")
def hard_mixed(tmp_path_factory, fashion_test):
    out = tmp_path_factory.mktemp("mixed") / "hard_mixed.tflite"
    return convert_to_budget(str(HARD), str(CALIB), str(out), labels=str(LABELS), max_accuracy_drop=0.5,
                             eval_data=FMNIST)


def test_hard_case_full_int8_loses_over_a_point_and_the_mixed_model_meets_half_a_point(hard_mixed):
    acc = hard_mixed.accuracy
    first, chosen = acc["steps"][0], acc["steps"][acc["chosen_step"]]
    assert acc["metric"] == "top1" and acc["reference"]["top1"] == pytest.approx(84.54)
    assert first["drop"] > 1.0 and not first["met"] and first["float_layers"] == []
    assert acc["met"] and chosen["met"] and chosen["drop"] <= 0.5 and acc["miss"] == 0
    assert any("bottleneck" in name for name in chosen["float_layers"])
    assert hard_mixed.recipe.name == "mixed" and acc["float_op_count"] == len(chosen["float_nodes"])
    assert all(s["drop"] < acc["steps"][0]["drop"] for s in acc["steps"] if s["kept"] and s["float_layers"])
    # the model really is mixed: float ops inside, int8 I/O, recipe embedded and saved beside it
    rep = hard_mixed.report
    assert not rep.full_integer and rep.inputs[0].dtype == "int8"
    meta = read_metadata(pathlib.Path(hard_mixed.output).read_bytes())
    saved = json.loads(pathlib.Path(hard_mixed.output).with_suffix(".recipe.json").read_text())
    assert meta.recipe == saved == hard_mixed.recipe.to_dict()
    assert saved["float_nodes"] == chosen["float_nodes"] and "MISSES" not in saved["notes"]
    assert any("Edge TPU" in w for w in hard_mixed.warnings)


def test_mixed_model_measured_independently_meets_the_budget(hard_mixed):
    report = evaluate(str(HARD), [hard_mixed.output], FMNIST)
    assert report.models[0].top1 == pytest.approx(84.54)
    assert report.comparisons[0].top1_drop <= 0.5


def test_recipe_file_reproduces_the_mixed_model_exactly(hard_mixed, tmp_path):
    recipe = Recipe.load(pathlib.Path(hard_mixed.output).with_suffix(".recipe.json"))
    again = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "again.tflite"), labels=str(LABELS), recipe=recipe)
    assert pathlib.Path(again.output).read_bytes() == pathlib.Path(hard_mixed.output).read_bytes()


def test_search_stops_at_the_first_model_within_budget(hard_calibrated, fashion_test):
    from edgeq.accuracy.mixed import search_mixed_precision

    cal, pre, _ = hard_calibrated
    data = read_eval_data(*fashion_test)
    easy = search_mixed_precision(cal, data, pre, 5.0)
    assert len(easy.steps) == 1 and easy.met and easy.recipe.float_nodes == () and easy.ranking == ()
    assert "full int8 lost" in easy.recipe.notes and "0 activation" in easy.recipe.notes  # the why, saved
    tight = search_mixed_precision(cal, data, pre, 0.5)
    assert tight.met and tight.chosen == len(tight.steps) - 1
    assert all(not s.met for s in tight.steps[:-1])
    # the model returned is the chosen one
    assert inspect_model(tight.model).float_ops and len(tight.model) == tight.steps[-1].size_bytes


def test_unreachable_target_reports_the_best_model_and_the_miss(hard_calibrated, fashion_test):
    from edgeq.accuracy.mixed import search_mixed_precision

    cal, pre, _ = hard_calibrated
    data = read_eval_data(*fashion_test)
    r = search_mixed_precision(cal, data, pre, 0.0, max_steps=0)
    assert not r.met and r.chosen == 0 and r.miss == pytest.approx(r.steps[0].score.drop) and r.miss > 1.0
    assert r.recipe.float_nodes == ()
    r1 = search_mixed_precision(cal, data, pre, 0.0, max_steps=1)
    best = min(s.score.drop for s in r1.steps)
    assert not r1.met and r1.steps[r1.chosen].score.drop == best and "MISSES" in r1.recipe.notes


def test_budget_on_class_folders_without_labels_says_how_classes_were_matched(tmp_path):
    res = convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "m.tflite"), max_accuracy_drop=5.0,
                            eval_data=str(CALIB))
    assert any("sorted name order" in w and "--labels" in w for w in res.warnings)
    named = convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "n.tflite"), max_accuracy_drop=5.0,
                              eval_data=str(CALIB), labels=str(LABELS))
    assert not any("sorted name order" in w for w in named.warnings)
    assert named.accuracy["reference"]["top1"] > 80 > res.accuracy["reference"]["top1"]


def test_float_nodes_from_another_model_are_refused(hard_calibrated):
    cal, _, _ = hard_calibrated
    with pytest.raises(UsageError, match="not in this model"):
        cal.quantize(["some/other/model/conv"])


def test_range_methods_narrow_the_outlier_range(hard_calibrated):
    from edgeq.convert.quantize import input_batches
    from edgeq.convert.ranges import adjustable_tensors, apply_range_method, compute_ranges

    cal, _, rep = hard_calibrated
    old = adjustable_tensors(cal)
    for method in ("percentile", "mse"):
        new = compute_ranges(cal, method, input_batches(rep))
        assert set(new) == set(old)
        for i, (lo, hi) in new.items():
            assert old[i][0] - 1e-6 <= lo <= 0 <= hi <= old[i][1] + 1e-6
        assert any((hi - lo) < 0.9 * (old[i][1] - old[i][0]) for i, (lo, hi) in new.items())
        q = inspect_model(apply_range_method(cal, method, input_batches(rep)).quantize())
        assert q.full_integer
    with pytest.raises(UsageError, match="minmax, percentile, mse"):
        compute_ranges(cal, "kl", input_batches(rep))


def test_range_method_recipe_changes_scales_and_round_trips(tmp_path):
    base = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "mm.tflite"))
    pct = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "pct.tflite"),
                        recipe=make_recipe("int8", range_method="percentile"))
    assert pct.recipe.range_method == "percentile" and pct.report.full_integer
    from edgeq.tflite_format import load_model_file

    def scales(path):
        _, mf = load_model_file(path)
        return {t.name: t.scale[0] for t in mf.main.tensors if len(t.scale) == 1 and not t.is_constant}
    a, b = scales(base.output), scales(pct.output)
    shared = set(a) & set(b)
    assert any(b[n] < 0.95 * a[n] for n in shared)
    again = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "again.tflite"),
                          recipe=Recipe.load(tmp_path / "pct.recipe.json"))
    assert pathlib.Path(again.output).read_bytes() == pathlib.Path(pct.output).read_bytes()
    with pytest.raises(UsageError, match="valid range methods"):
        edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "x.tflite"), recipe=make_recipe("int8", range_method="kl"))


def test_budget_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="needs --eval-data"):
        convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "a.tflite"), max_accuracy_drop=0.5)
    with pytest.raises(UsageError, match="int16"):
        convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "b.tflite"), recipe="int16x8",
                          max_accuracy_drop=0.5, eval_data=FMNIST)
    with pytest.raises(UsageError, match=">= 0"):
        convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "c.tflite"), max_accuracy_drop=-1,
                          eval_data=FMNIST)


def test_analyze_ranks_the_outlier_bottleneck_first(tmp_path, capsys):
    from edgeq.cli import main

    out, png = tmp_path / "a.json", tmp_path / "a.png"
    assert main(["analyze", str(HARD), "-c", str(CALIB), "--json", str(out), "--plot", str(png)]) == 0
    d = json.loads(out.read_text())
    top = d["layers"][0]
    assert "bottleneck" in top["name"] and top["op"] == "CONV_2D" and top["gain_db"] > 5
    assert top["float_alone_sqnr_db"] > d["quantized"]["sqnr_db"] + 5
    assert all(0.05 < x["rmse_over_scale"] < 2 for x in d["layers"])  # ~0.29 = pure rounding error
    assert all(x["sqnr_db"] > 10 for x in d["layers"])
    assert [x["gain_db"] for x in d["layers"]] == sorted((x["gain_db"] for x in d["layers"]), reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bottleneck" in capsys.readouterr().out


def test_bundled_model_full_int8_is_within_half_a_point_on_10k(int8_model_path, fashion_test):
    report = evaluate(str(BUNDLED), [str(int8_model_path)], read_eval_data(*fashion_test))
    assert report.models[0].top1 == pytest.approx(89.82)
    assert report.comparisons[0].top1_drop <= 0.5
    assert np.isfinite(report.comparisons[0].sqnr_db)


def test_in_memory_keras_reference_gives_the_same_report_as_its_file(int8_model_path, fashion_test):
    import keras

    data = read_eval_data(fashion_test[0][:300], fashion_test[1][:300])
    from_file = evaluate(str(BUNDLED), [str(int8_model_path)], data)
    in_memory = evaluate(keras.models.load_model(BUNDLED, compile=False), [str(int8_model_path)], data)
    assert in_memory.models[0].top1 == from_file.models[0].top1
    assert in_memory.comparisons[0].sqnr_db == pytest.approx(from_file.comparisons[0].sqnr_db)
    assert in_memory.models[0].size_bytes > 0 and in_memory.models[0].path.startswith("<keras model")


def test_search_progress_reaches_stderr_while_native_logs_are_silenced(tmp_path, capfd):
    """The converter silences fd 2 (TensorFlow's C++ logs); the search's progress lines must still show."""
    got = []

    def info(msg):
        got.append(msg)
        os.write(2, f"PROGRESS {msg}\n".encode())   # what sys.stderr does outside pytest: fd 2

    convert_to_budget(str(HARD), str(CALIB), str(tmp_path / "p.tflite"), labels=str(LABELS),
                      max_accuracy_drop=5.0, eval_data=FMNIST, info=info)
    err = capfd.readouterr().err
    assert got and got[0].startswith("full int8:")
    assert all(f"PROGRESS {m}" in err for m in got)
