"""`edgeq bench` and edgeq.bench on the committed fixtures: exit codes, JSON/CSV/plot, warnings."""
from __future__ import annotations

import csv
import importlib.util
import json
import pathlib

import pytest

from edgeq.bench import BenchResult, LatencyStats, add_warnings, run_benchmark
from edgeq.cli import main

DATA = pathlib.Path(__file__).resolve().parent / "data"
INT8 = str(DATA / "fashion_int8.tflite")
FLOAT = str(DATA / "fashion_float.tflite")
JSON_KEYS = {"model", "delegate", "threads", "init_ms", "first_ms", "latency_ms", "throughput_fps", "peak_rss_mb",
             "delegated_nodes", "total_nodes"}
LATENCY_KEYS = {"min", "mean", "p50", "p90", "p99", "max", "std"}


def test_cli_bench_json_csv_and_every_combination(tmp_path, capsys):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["bench", INT8, FLOAT, "--delegate", "xnnpack,cpu", "--threads", "1,2", "--runs", "20",
               "--warmup", "2", "--json", str(out_json), "--csv", str(out_csv)])
    assert rc == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 8
    assert {(pathlib.Path(r["model"]).name, r["delegate"], r["threads"]) for r in rows} == {
        (m, d, t) for m in ("fashion_int8.tflite", "fashion_float.tflite") for d in ("xnnpack", "cpu") for t in (1, 2)}
    for r in rows:
        assert set(r) >= JSON_KEYS and set(r["latency_ms"]) == LATENCY_KEYS
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["throughput_fps"] == pytest.approx(1000 / lat["mean"], rel=0.01)
        assert r["peak_rss_mb"] > 10 and r["init_ms"] > 0 and r["first_ms"] > 0
        assert r["total_nodes"] == 12
        if r["delegate"] == "cpu":
            assert r["delegated_nodes"] == 0
        elif r["model"].endswith("float.tflite"):
            assert r["delegated_nodes"] == 12
        else:  # int8: all but SOFTMAX; tflite-runtime 2.14's XNNPACK takes no int8 nodes
            assert r["delegated_nodes"] == (0 if r["backend"] == "tflite-runtime" else 11)
    table = capsys.readouterr().out
    assert "fashion_int8.tflite" in table and "p99" in table
    with out_csv.open() as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 8 and float(csv_rows[0]["p50"]) == rows[0]["latency_ms"]["p50"]


def test_cli_json_to_stdout_keeps_table_on_stderr(capsys):
    rc = main(["bench", INT8, "--delegate", "xnnpack", "--runs", "5", "--warmup", "0", "--json", "-",
               "--in-process"])
    assert rc == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows[0]["delegate"] == "xnnpack" and rows[0]["runs"] == 5
    assert "fashion_int8.tflite" in captured.err


def test_cli_unknown_delegate_is_usage_error(capsys):
    assert main(["bench", INT8, "--delegate", "npu"]) == 2
    assert "valid delegates: auto, xnnpack, litert-cpu, cpu, cpu-ref, edgetpu, gpu" in capsys.readouterr().err


def test_cli_bad_threads_and_missing_model(capsys, tmp_path):
    assert main(["bench", INT8, "--threads", "two"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "nope.tflite")]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_failed_combination_is_recorded_and_exit_code_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEQ_EDGETPU_LIBRARY", str(tmp_path / "libedgetpu.so.1"))
    out_json = tmp_path / "r.json"
    # device= is an Edge TPU option: xnnpack must not get it (and fail), edgetpu must
    rc = main(["bench", INT8, "--delegate", "xnnpack,edgetpu", "--runs", "5", "--warmup", "0",
               "--delegate-option", "device=usb:0", "--json", str(out_json)])
    assert rc == 1
    rows = json.loads(out_json.read_text())
    assert rows[0]["error"] is None and rows[0]["latency_ms"]["p50"] > 0
    assert "DelegateUnavailableError" in rows[1]["error"] and "libedgetpu1-std" in rows[1]["error"]
    assert "1 of 2 combination(s) failed" in capsys.readouterr().err


def test_cli_delegate_options_no_delegate_takes_or_bad_values_are_usage_errors(capsys):
    assert main(["bench", INT8, "--delegate", "xnnpack,cpu", "--delegate-option", "precision=fp32"]) == 2
    err = capsys.readouterr().err
    assert "precision are taken by none of the delegates xnnpack, cpu" in err and "gpu: precision, library" in err
    assert main(["bench", INT8, "--delegate", "xnnpack,gpu", "--delegate-option", "precision=int4"]) == 2
    assert "expected one of fp16, fp32" in capsys.readouterr().err


def test_cli_plot_when_nothing_was_measured_reports_the_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEQ_EDGETPU_LIBRARY", str(tmp_path / "libedgetpu.so.1"))
    png = tmp_path / "lat.png"
    rc = main(["bench", INT8, "--delegate", "edgetpu", "--runs", "5", "--in-process", "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 1 and "1 of 1 combination(s) failed" in err and "libedgetpu1-std" in err
    assert "not written: no combination was measured" in err and not png.exists()


def test_plot_writes_png_or_says_matplotlib_is_missing(tmp_path, capsys):
    png = tmp_path / "lat.png"
    rc = main(["bench", INT8, "--delegate", "xnnpack", "--runs", "10", "--warmup", "0", "--in-process",
               "--plot", str(png)])
    if importlib.util.find_spec("matplotlib") is None:
        assert rc == 2 and "pip install 'edgeq[plot]'" in capsys.readouterr().err
    else:
        assert rc == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _result(model, delegate, dtype, p50, p99=None, first=None, delegated=5, shape=(1, 28, 28, 1)):
    lat = LatencyStats(min=p50 * 0.9, mean=p50, p50=p50, p90=p50, p99=p99 or p50 * 1.1, max=(p99 or p50) * 1.2, std=0.1)
    return BenchResult(model=model, delegate=delegate, threads=1, init_ms=5.0, first_ms=first or p50, latency_ms=lat,
                       throughput_fps=1000 / p50, peak_rss_mb=50.0, delegated_nodes=delegated, total_nodes=5,
                       input_dtype=dtype, input_shape=shape)


def test_suspicious_results_are_flagged():
    rs = add_warnings([
        _result("q.tflite", "xnnpack", "int8", p50=2.0),
        _result("f.tflite", "xnnpack", "float32", p50=1.0),
        _result("g.tflite", "edgetpu", "int8", p50=1.0, delegated=0),
        _result("s.tflite", "xnnpack", "float32", p50=1.0, p99=5.0, first=400.0),
        _result("big_q.tflite", "xnnpack", "int8", p50=9.0, shape=(1, 224, 224, 3)),  # no float 224 model
    ])
    assert any("int8 is slower than float f.tflite" in w for w in rs[0].warnings)
    assert rs[1].warnings == ()
    assert any("took no nodes" in w for w in rs[2].warnings)
    assert any("first inference 400.0 ms" in w for w in rs[3].warnings)
    assert any("wide spread" in w for w in rs[3].warnings)
    assert not [w for w in rs[4].warnings if "int8 is slower" in w]  # not compared with unrelated float models


def test_run_benchmark_library_in_process():
    (r,) = run_benchmark([INT8], ["cpu"], [1], runs=5, warmup=1, isolate=False)
    assert r.ok and r.delegate == "cpu" and len(r.samples_ms) == 5 and r.delegated_nodes == 0
    assert r.input_shape == (1, 28, 28, 1) and r.to_dict()["input_shape"] == [1, 28, 28, 1]


def test_took_no_nodes_warning_spares_only_delegates_registered_as_delegating_nothing():
    rs = add_warnings([
        _result("a.tflite", "cpu", "float32", p50=1.0, delegated=0),
        _result("b.tflite", "cpu-ref", "float32", p50=1.0, delegated=0),
        _result("c.tflite", "auto:xnnpack", "float32", p50=1.0, delegated=0),
        _result("d.tflite", "libvendor.so", "float32", p50=1.0, delegated=0),
    ])
    took_none = ["took no nodes" in " ".join(r.warnings) for r in rs]
    assert took_none == [False, False, True, True]
