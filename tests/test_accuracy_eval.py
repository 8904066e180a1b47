"""`edgeq eval` on the committed Fashion-MNIST float/int8 .tflite fixtures and real test images.

Every report field is checked against an independent computation: LiteRT's interpreter driven
by hand, one image at a time, with the quantization done here from the tensor's scale/zero point.
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from edgeq.accuracy import evaluate, read_eval_data
from edgeq.cli import main
from edgeq.errors import UsageError

DATA = pathlib.Path(__file__).resolve().parent / "data"
FLOAT = DATA / "fashion_float.tflite"
INT8 = DATA / "fashion_int8.tflite"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run_by_hand(path: pathlib.Path, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for img in images:
        x = img.astype(np.float32)[None, :, :, None] / 255.0
        scale, zp = inp["quantization"]
        if scale:
            x = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        oscale, ozp = out["quantization"]
        results.append((y - ozp) * oscale if oscale else y)
    return np.concatenate(results)


def test_every_report_field_matches_an_independent_computation(fashion_test):
    images, labels = fashion_test[0][:600], fashion_test[1][:600].astype(np.int64)
    report = evaluate(FLOAT, [INT8], read_eval_data(images, labels), batch=128)
    ref, cand = _run_by_hand(FLOAT, images), _run_by_hand(INT8, images)

    top1 = [100 * np.mean(np.argmax(y, 1) == labels) for y in (ref, cand)]
    top5 = [100 * np.mean([lab in np.argsort(-row)[:5] for row, lab in zip(y, labels)]) for y in (ref, cand)]
    for m, t1, t5, path in zip(report.models, top1, top5, (FLOAT, INT8)):
        assert m.top1 == pytest.approx(t1) and m.top5 == pytest.approx(t5)
        assert m.size_bytes == path.stat().st_size and m.samples == 600
    c = report.comparisons[0]
    assert c.agreement == pytest.approx(100 * np.mean(np.argmax(ref, 1) == np.argmax(cand, 1)))
    d = ref.astype(np.float64) - cand
    assert c.sqnr_db == pytest.approx(10 * math.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum(d * d)), rel=1e-6)
    cos = np.sum(ref * cand, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    assert c.cosine == pytest.approx(float(np.mean(cos)), rel=1e-5)
    assert c.max_abs_error == pytest.approx(float(np.max(np.abs(d))), rel=1e-5)
    assert c.top1_drop == pytest.approx(top1[0] - top1[1])
    assert c.sqnr_db > 25 and c.agreement > 97  # int8 of this model is close to float


def test_unlabelled_data_reports_agreement_only(fashion_test):
    report = evaluate(FLOAT, [INT8, FLOAT], read_eval_data(fashion_test[0]))
    assert not report.labelled and all(m.top1 is None and m.top5 is None for m in report.models)
    same = report.comparisons[1]  # the reference against itself
    assert same.agreement == 100.0 and same.sqnr_db == math.inf and same.max_abs_error == 0.0
    assert report.comparisons[0].top1_drop is None and 90 < report.comparisons[0].agreement < 100
    assert any("no labels" in w for w in report.warnings)


def test_a_fixed_batch_model_runs_sample_by_sample_with_the_same_results(fashion_test):
    from edgeq.accuracy.runners import TFLiteRunner
    from edgeq.edgetpu.shapes import freeze_shapes_bytes

    fixed, _ = freeze_shapes_bytes(INT8.read_bytes())
    runner = TFLiteRunner.open(fixed, batch=64, name="<fixed>")
    assert runner.batch == 1  # batch dimension frozen to 1: no batching possible
    data = read_eval_data(fashion_test[0][:150], fashion_test[1][:150])
    report = evaluate(FLOAT, [INT8, runner], data, batch=64)
    batched, one_by_one = report.comparisons
    assert report.models[1].top1 == report.models[2].top1
    assert one_by_one.agreement == batched.agreement and one_by_one.sqnr_db == pytest.approx(batched.sqnr_db)


def test_models_that_cannot_be_compared_are_refused(fashion_test):
    with pytest.raises(UsageError, match="input"):
        evaluate(FLOAT, [DATA / "add_float.tflite"], read_eval_data(fashion_test[0][:10]))


def test_candidates_with_different_embedded_preprocessing_are_refused(fashion_test):
    import dataclasses

    from edgeq.metadata import read_metadata, with_edgeq_metadata

    data = INT8.read_bytes()
    meta = read_metadata(data)
    assert meta is not None and meta.preprocess is not None
    other = dataclasses.replace(meta, preprocess=meta.preprocess.replace(mean=(127.5,), std=(127.5,)))
    with pytest.raises(UsageError, match=r"embeds preprocessing .* but .* embeds .*\[-1,1\]"):
        evaluate(FLOAT, [INT8, with_edgeq_metadata(data, other)], read_eval_data(fashion_test[0][:10]))
    same = evaluate(FLOAT, [INT8, with_edgeq_metadata(data, meta)], read_eval_data(fashion_test[0][:10]))
    assert same.preprocess == meta.preprocess


def test_cli_json_has_the_documented_keys(tmp_path, fashion_test, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", str(FLOAT), str(INT8), "--data", "/usr/share/datasets/fashion-mnist", "--limit", "400",
                 "--json", str(out)])
    assert code == 0
    d = json.loads(out.read_text())
    assert [m["path"] for m in d["models"]] == [str(FLOAT), str(INT8)]
    for m in d["models"]:
        assert {"path", "top1", "top5", "size_bytes"} <= set(m) and 0 < m["top1"] <= 100
    c = d["comparisons"][0]
    assert {"candidate", "agreement", "sqnr_db", "cosine", "top1_drop"} <= set(c)
    assert c["candidate"] == str(INT8) and c["outputs"][0]["name"] == "StatefulPartitionedCall_1:0"
    assert "vs reference" in capsys.readouterr().out  # the table still prints when --json is a file


def test_cli_labels_that_do_not_match_the_model_fail_clearly(tmp_path, capsys):
    files = sorted((ROOT / "calibration_data" / "bag").glob("*.png"))[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{files[0]},8\n{files[1]},42\n")
    code = main(["eval", str(FLOAT), str(INT8), "--data", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and "label 42 is outside 0..9" in err and str(bad) in err
