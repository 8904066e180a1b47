"""edgeq tune (runtime slice of issue 13): every candidate measured, ranked by p50, the winner embedded
in the metadata, edgeq.load uses it unless told otherwise, and clear errors. No timing assertions."""
from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib

import pytest

import edgeq
from edgeq.bench import BenchResult, LatencyStats
from edgeq.cli import main
from edgeq.errors import ModelError, OutputExistsError, UsageError
from edgeq.metadata import METADATA_NAME, embed_metadata, read_metadata, with_edgeq_metadata

DATA = pathlib.Path(__file__).resolve().parent / "data"
INT8 = DATA / "fashion_int8.tflite"
FOREIGN = DATA / "add_float.tflite"
tune_mod = importlib.import_module("edgeq.tune")  # the module (edgeq.tune is the function, like edgeq.convert)


def _with_runtime(tmp_path: pathlib.Path, runtime: dict) -> pathlib.Path:
    data = INT8.read_bytes()
    out = tmp_path / "tuned.tflite"
    out.write_bytes(with_edgeq_metadata(data, dataclasses.replace(read_metadata(data), runtime=runtime)))
    return out


def _fake_bench(p50_by: dict, calls: list, default: float | None = None):
    """A run_benchmark stand-in: p50 from {(delegate, threads): ms} or {("delegate k=v", threads): ms} for
    option variants ({delegate or "delegate k=v": "error text"} fails; ``default`` for the rest)."""
    def fake(models, delegates, threads, **kwargs):
        d, n = delegates[0], threads[0]
        label = " ".join([d] + [f"{k}={v}" for k, v in (kwargs.get("delegate_options") or {}).items()])
        calls.append((label, n))
        for key in (label, d):
            if isinstance(p50_by.get(key), str):
                return [BenchResult(model=models[0], delegate=d, threads=n, error=p50_by[key])]
        ms = p50_by.get((label, n), default)
        if isinstance(ms, list):  # one p50 per measurement, in order
            ms = ms.pop(0)
        return [BenchResult(model=models[0], delegate=d, threads=n, init_ms=1.0,
                            latency_ms=LatencyStats(ms, ms, ms, ms, ms * 1.5, ms * 2, 0.0))]
    return fake


def test_every_candidate_is_measured_and_ranked_by_p50_and_nothing_written(tmp_path):
    res = tune_mod.tune(INT8, threads=[1, 2], delegates=["xnnpack", "cpu"], runs=3, warmup=0, prune=False,
                        search_options=False)
    assert sorted((c.delegate, c.threads) for c in res.ranked) == [("cpu", 1), ("cpu", 2), ("xnnpack", 1),
                                                                   ("xnnpack", 2)]
    assert all(c.options == () for c in res.ranked)
    p50s = [c.p50_ms for c in res.ranked]
    assert p50s == sorted(p50s) and all(c.p99_ms is not None and c.init_ms is not None for c in res.ranked)
    assert all(c.size_bytes == INT8.stat().st_size for c in res.ranked)
    assert res.runtime["delegate"] == res.winner.delegate and res.runtime["num_threads"] == res.winner.threads
    assert res.output is None and list(tmp_path.iterdir()) == []
    assert edgeq.tune is tune_mod.tune and isinstance(res, edgeq.TuneResult)
    assert "winner:" in tune_mod.format_table(res) and "report only" in tune_mod.format_table(res)


def test_output_embeds_the_winner_and_load_uses_it(tmp_path):
    out = tmp_path / "out.tflite"
    res = tune_mod.tune(INT8, threads=[1], delegates=["cpu"], runs=2, warmup=0, output=out)
    meta = read_metadata(out.read_bytes())
    assert meta.runtime["delegate"] == "cpu" and meta.runtime["num_threads"] == 1 and res.output == str(out)
    assert meta.labels == read_metadata(INT8.read_bytes()).labels  # the rest of the metadata is kept
    with edgeq.load(out) as m:
        rep = m.delegate_report
        assert rep.delegate == "cpu" and dict(rep.details)["num_threads"] == "1"
        assert "tuned" in dict(rep.details) and rep.attempts[-1].reason.startswith("tuned:")


def test_explicit_arguments_win_over_the_tuned_config(tmp_path):
    path = _with_runtime(tmp_path, {"delegate": "cpu", "num_threads": 2, "p50_ms": 0.1, "tuned_on": "x86_64"})
    with edgeq.load(path, delegate="xnnpack", num_threads=1) as m:
        assert m.delegate_report.delegate == "xnnpack" and "tuned" not in dict(m.delegate_report.details)
        assert dict(m.delegate_report.details)["num_threads"] == "1"
    with edgeq.load(path, num_threads=1) as m:  # the delegate still comes from the tuned config
        details = dict(m.delegate_report.details)
        assert m.delegate_report.delegate == "cpu" and details["num_threads"] == "1"
        assert "delegate cpu" in details["tuned"] and "thread" not in details["tuned"].split("from")[0]
    with edgeq.load(path, delegate="auto") as m:  # "auto" given is not "not given"
        assert m.delegate_report.delegate == "xnnpack"
    with pytest.raises(UsageError, match="tuned for delegate 'cpu'"):
        edgeq.load(path, device="usb:0")


def test_models_without_runtime_keep_the_old_defaults():
    assert "runtime" not in read_metadata(INT8.read_bytes()).to_dict()
    with edgeq.load(INT8) as m:
        assert m.delegate_report.delegate == "xnnpack" and m.delegate_report.attempts[0].name == "edgetpu"
        assert "tuned" not in dict(m.delegate_report.details)


@pytest.mark.parametrize("runtime, match", [
    ({"delegate": "cpu", "num_threads": "2"}, "num_threads"),
    ({"delegate": "cpu", "num_threads": 0}, "num_threads"),
    ({"delegate": "cpu\x1b[2J"}, "control characters"),
    ({"delegate": "cpu", "colour": "red"}, "unknown keys"),
    ({"num_threads": 1}, "runtime delegate"),
    ("xnnpack", "runtime must be an object"),
    ({"delegate": "cpu", "p50_ms": "fast"}, "p50_ms"),
    ({"delegate": "litert-cpu", "options": {"weight_cache": "/tmp/elsewhere"}}, "not a path"),
    ({"delegate": "litert-cpu", "options": {"weight_cache": "../up"}}, "not a path"),
    ({"delegate": "gpu", "options": {"library": "libevil"}}, "native library"),
    ({"delegate": "litert-cpu", "options": {"latest": True}}, "must be a string"),
    ({"delegate": "litert-cpu", "options": {"Latest": "1"}}, "lower-case"),
    ({"delegate": "litert-cpu", "options": ["latest"]}, "options must be an object"),
    ({"delegate": "xnnpack", "options": {"colour": "red"}}, "options this edgeq refuses"),
    ({"delegate": "litert-cpu", "options": {"latest": "2"}}, "expected one of 0, 1"),
    ({"delegate": "litert-cpu", "options": {"weight_cache": "tests"}}, "may not come from a model file"),
])
def test_malformed_runtime_metadata_is_a_model_error(tmp_path, runtime, match, monkeypatch):
    monkeypatch.chdir(DATA.parent.parent)  # "tests" is an existing directory from here: only from_model refuses it
    d = read_metadata(INT8.read_bytes()).to_dict()
    d["runtime"] = runtime
    path = tmp_path / "bad.tflite"
    path.write_bytes(embed_metadata(INT8.read_bytes(), {METADATA_NAME: json.dumps(d).encode()}))
    with pytest.raises(ModelError, match=match):
        edgeq.load(path)


def test_pruning_threads_on_the_first_path_the_rest_at_its_best_count_then_the_winners_neighbours(monkeypatch):
    calls: list = []
    fake = _fake_bench({("xnnpack", 1): 10.0, ("xnnpack", 2): 9.9, ("xnnpack", 3): 1.0, ("xnnpack latest=1", 1): 9.0,
                        ("cpu", 1): 8.0, ("cpu", 2): 7.0, ("cpu", 3): 6.9}, calls)
    monkeypatch.setattr(tune_mod, "run_benchmark", fake)
    res = tune_mod.tune(INT8, threads=[3, 1, 2], delegates=["xnnpack", "cpu"], runs=1, warmup=0)
    assert calls == [("xnnpack", 1), ("xnnpack", 2),      # 2 threads do not pay by > 3 %: threads 3 pruned
                     ("xnnpack latest=1", 1), ("cpu", 1),  # the rest once, at xnnpack's best count (fewest threads)
                     ("cpu", 2), ("cpu", 3),               # the winner's neighbours while they pay
                     ("cpu", 1), ("cpu", 2), ("cpu", 3)]   # the 3 fastest once more, slowest first
    assert [(c.label, c.threads) for c in res.ranked][:2] == [("cpu", 3), ("cpu", 2)]  # ranked by p50
    skipped = dict(res.skipped)
    assert "pruned" in skipped["xnnpack threads 3"] and res.winner.options == ()


def test_the_leaders_are_measured_again_and_keep_their_better_run(monkeypatch):
    calls: list = []
    p50 = {("xnnpack", 1): [3.0, 1.0], ("xnnpack latest=1", 1): [2.0, 9.0], ("cpu", 1): [2.5, 2.4]}
    monkeypatch.setattr(tune_mod, "run_benchmark", _fake_bench(p50, calls))
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack", "cpu"], runs=1, warmup=0, confirm=3)
    assert calls[-3:] == [("xnnpack", 1), ("cpu", 1), ("xnnpack latest=1", 1)]  # slowest of the three first
    assert [(c.label, c.p50_ms, c.measurements) for c in res.ranked] == [
        ("xnnpack", 1.0, 2), ("xnnpack latest=1", 2.0, 2), ("cpu", 2.4, 2)]
    assert "(best of 2)" in tune_mod.format_table(res) and res.runtime["p50_ms"] == 1.0
    calls.clear()
    p50 = {("xnnpack", 1): 3.0, ("xnnpack latest=1", 1): 2.0, ("cpu", 1): 2.5}
    monkeypatch.setattr(tune_mod, "run_benchmark", _fake_bench(p50, calls))
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack", "cpu"], runs=1, warmup=0, confirm=0)
    assert len(calls) == 3 and all(c.measurements == 1 for c in res.ranked)
    monkeypatch.setattr(tune_mod, "run_benchmark", lambda *a, **k: pytest.fail("measured before checking"))
    with pytest.raises(UsageError, match="confirm >= 0"):
        tune_mod.tune(INT8, threads=[1], delegates=["cpu"], runs=1, warmup=0, confirm=-1)


def test_winning_options_round_trip_through_the_metadata_into_load(monkeypatch, tmp_path):
    calls: list = []
    p50 = {("litert-cpu latest=1", 1): 1.0, "litert-cpu ynnpack=1": "DelegateUnavailableError: no YNNPACK"}
    monkeypatch.setattr(tune_mod, "run_benchmark", _fake_bench(p50, calls, default=5.0))
    out = tmp_path / "tuned.tflite"
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack", "litert-cpu"], runs=1, warmup=0, output=out)
    assert res.winner.label == "litert-cpu latest=1" and res.winner.to_dict()["options"] == {"latest": "1"}
    assert [c.label for c in res.failed] == ["litert-cpu ynnpack=1"]
    assert ("litert-cpu weight_cache=on", 1) in calls  # every registered variant was measured
    assert calls.count(("litert-cpu weight_cache=on", 1)) == 2  # primed once: the measured load maps the cache
    runtime = read_metadata(out.read_bytes()).runtime
    assert runtime["options"] == {"latest": "1"} and res.runtime == runtime
    monkeypatch.undo()
    if not edgeq.runtime.get_backend().has_compiled_model:
        pytest.skip("litert-cpu needs ai-edge-litert")
    with edgeq.load(out) as m:  # the real loader, with the tuned delegate, options and threads
        details = dict(m.delegate_report.details)
        assert m.delegate_report.delegate == "litert-cpu" and details["xnnpack_flags"] == "0x43"
        assert details["num_threads"] == "1" and "delegate litert-cpu (latest=1)" in details["tuned"]
    with edgeq.load(out, xnnpack_flags=3) as m:  # the caller's options win key by key
        assert dict(m.delegate_report.details)["xnnpack_flags"] == "0x43"  # latest=1 still ORs 0x40 in
    with edgeq.load(out, delegate="xnnpack") as m:  # another delegate: the tuned options do not follow it
        assert "latest_features" not in dict(m.delegate_report.details)


def test_default_search_tries_other_delegates_and_reports_skipped_ones(monkeypatch):
    calls: list = []
    p50 = {("xnnpack", 1): 1.0, "edgetpu": "DelegateUnavailableError: no libedgetpu",
           ("gpu", None): 1.5, ("gpu", 1): 1.4, ("litert-cpu", None): 9.0}
    monkeypatch.setattr(tune_mod, "run_benchmark", _fake_bench(p50, calls, default=1.2))
    res = tune_mod.tune(INT8, threads=[1], runs=1, warmup=0)
    skipped = dict(res.skipped)
    assert "selector" in skipped["auto"] and "reference" in skipped["cpu-ref"]
    assert "no libedgetpu" in skipped["edgetpu"] and "does not load here" in skipped["edgetpu"]
    assert "pruned" in skipped["litert-cpu"] and "2x the best p50" in skipped["litert-cpu"]
    assert {c.delegate for c in res.ranked} == {"xnnpack", "cpu", "gpu"} and res.winner.label == "xnnpack"
    assert ("gpu", 1) in calls and not any(label.startswith("litert-cpu") and n == 1 for label, n in calls)


def test_errors_are_clear_and_come_before_any_measurement(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_mod, "run_benchmark", lambda *a, **k: pytest.fail("measured before checking"))
    existing = tmp_path / "out.tflite"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="--force"):
        tune_mod.tune(INT8, threads=[1], delegates=["cpu"], output=existing)
    assert existing.read_bytes() == b"keep"
    with pytest.raises(OutputExistsError, match="is the input"):
        tune_mod.tune(INT8, threads=[1], delegates=["cpu"], output=INT8, force=True)
    with pytest.raises(ModelError, match="no edgeq metadata"):
        tune_mod.tune(FOREIGN, threads=[1], delegates=["cpu"], output=tmp_path / "f.tflite")
    with pytest.raises(UsageError, match="selector"):
        tune_mod.tune(INT8, delegates=["auto"])
    with pytest.raises(UsageError, match="unknown delegate"):
        tune_mod.tune(INT8, delegates=["nope"])
    with pytest.raises(UsageError, match="positive integers"):
        tune_mod.tune(INT8, threads=[0])
    with pytest.raises(UsageError, match="runs must be"):
        tune_mod.tune(INT8, runs=0)


def test_every_failing_candidate_is_an_error_naming_them(monkeypatch):
    monkeypatch.setattr(tune_mod, "run_benchmark", _fake_bench({"cpu": "ModelError: broken"}, []))
    with pytest.raises(edgeq.EdgeqError, match="cpu/1: ModelError: broken"):
        tune_mod.tune(INT8, threads=[1], delegates=["cpu"])


def test_cli_prints_the_table_and_writes_model_and_json(tmp_path, capsys):
    out, report = tmp_path / "t.tflite", tmp_path / "t.json"
    code = main(["tune", str(INT8), "--threads", "1", "--delegate", "cpu,xnnpack", "--runs", "2", "--warmup", "0",
                 "-o", str(out), "--json", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "rank delegate" in captured.out and "winner:" in captured.out
    d = json.loads(report.read_text())
    assert len(d["ranked"]) == 3 and d["runtime"] == read_metadata(out.read_bytes()).runtime
    assert sorted(str(c["options"]) for c in d["ranked"]) == ["{'latest': '1'}", "{}", "{}"]  # xnnpack's variant
    code = main(["tune", str(INT8), "--threads", "1", "--delegate", "cpu", "-o", str(out)])
    assert code != 0 and "--force" in capsys.readouterr().err
    assert main(["tune", str(INT8), "--threads", "one"]) == 2


def test_edgeq_run_uses_and_shows_the_tuned_config(tmp_path, capsys):
    path = _with_runtime(tmp_path, {"delegate": "cpu", "num_threads": 1})
    code = main(["run", str(path), "--source", "synthetic://64x64@30", "--max-frames", "3", "--json",
                 str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tuned: delegate cpu and 1 thread(s)" in err and "delegate cpu" in err


def test_a_model_file_can_never_make_load_open_a_library(tmp_path):
    """The tuned delegate comes from a file: a library path there is refused, never loaded."""
    import json

    from edgeq.errors import ModelError
    from edgeq.metadata import METADATA_NAME, embed_metadata

    data = (DATA / "fashion_int8.tflite").read_bytes()
    meta = edgeq.read_metadata(data).to_dict()
    for delegate, words in (("/tmp/evil.so", "library path"), ("libevil.so.1", "library path"),
                            ("nosuch", "not a registered delegate")):
        meta["runtime"] = {"delegate": delegate, "num_threads": 1}
        path = tmp_path / "m.tflite"
        path.write_bytes(embed_metadata(data, {METADATA_NAME: json.dumps(meta).encode()}))
        with pytest.raises(ModelError, match=words):
            edgeq.load(path)


def test_bench_uses_the_tuned_config_by_default_and_explicit_arguments_override_it(tmp_path, capsys):
    from edgeq.bench import run_benchmark

    path = _with_runtime(tmp_path, {"delegate": "xnnpack", "num_threads": 2, "options": {"latest": "1"}})
    (r,) = run_benchmark([str(path)], runs=2, warmup=0, isolate=False)
    assert r.ok and (r.delegate, r.threads, dict(r.options)) == ("xnnpack", 2, {"latest": "1"})
    assert "delegate xnnpack (latest=1) and 2 thread(s)" in r.tuned and r.to_dict()["tuned"] == r.tuned
    (r,) = run_benchmark([str(path)], threads=[1], runs=2, warmup=0, isolate=False)
    assert (r.delegate, r.threads, dict(r.options)) == ("xnnpack", 1, {"latest": "1"}) and "thread" not in \
        r.tuned.split("from")[0]
    (r,) = run_benchmark([str(path)], ["cpu"], [1], runs=2, warmup=0, isolate=False)
    assert (r.delegate, r.threads, r.options, r.tuned) == ("cpu", 1, (), "")
    (r,) = run_benchmark([str(INT8)], runs=2, warmup=0, isolate=False)  # not tuned: auto, 1 thread
    assert (r.delegate, r.threads, r.tuned) == ("auto:xnnpack", 1, "")
    code = main(["bench", str(path), "--runs", "2", "--warmup", "0", "--in-process"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "xnnpack*" in out.out and "tuned: delegate xnnpack (latest=1) and 2 thread(s)" in out.out
    code = main(["bench", str(path), "--runs", "2", "--warmup", "0", "--in-process", "--delegate", "cpu",
                 "--threads", "1"])
    out = capsys.readouterr()
    assert code == 0 and "tuned:" not in out.out and "*" not in out.out and " cpu " in out.out


def test_pipeline_layout_is_measured_on_the_source_embedded_and_used_by_run(tmp_path, capsys):
    """tune --pipeline: the winner's every-frame pipeline layout on a real source goes into the metadata,
    and `edgeq run` without --threads uses it (with --threads, the caller's count wins)."""
    out = tmp_path / "tuned.tflite"
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack"], runs=2, warmup=0, confirm=0, search_options=False,
                        pipeline="synthetic://64x48@30", pipeline_frames=12, output=out)
    layouts = {(t.threads, t.instances) for t in res.pipeline.trials}
    assert (1, 1) in layouts and all(t.frames == 12 for t in res.pipeline.trials if t.fps is not None)
    runtime = read_metadata(out.read_bytes()).runtime
    chosen = (runtime["pipeline_threads"], runtime["pipeline_instances"])
    assert chosen == (res.pipeline.threads, res.pipeline.instances) and chosen in layouts
    assert runtime["pipeline_fps"] > 0 and runtime["num_threads"] == 1
    assert "pipeline: edgeq run gets" in tune_mod.format_table(res)
    assert json.loads(json.dumps(res.to_dict()))["pipeline"]["threads"] == chosen[0]
    report = tmp_path / "run.json"
    capsys.readouterr()
    assert main(["run", str(out), "-s", "synthetic://64x48@30", "--max-frames", "6", "--json", str(report)]) == 0
    assert "tuned for the pipeline" in capsys.readouterr().err
    got = json.loads(report.read_text())
    assert (got["threads"], got["instances"]) == chosen
    assert main(["run", str(out), "-s", "synthetic://64x48@30", "--max-frames", "6", "--threads", "1",
                 "--json", str(report), "--force"]) == 0
    assert "tuned for the pipeline" not in capsys.readouterr().err
    got = json.loads(report.read_text())
    assert (got["threads"], got["instances"]) == (1, 1)


def test_pipeline_layout_in_metadata_is_validated():
    meta = read_metadata(INT8.read_bytes())
    for bad in ({"pipeline_threads": 0}, {"pipeline_instances": "2"}, {"pipeline_fps": "fast"}):
        with pytest.raises(ValueError, match="runtime pipeline_"):
            type(meta).from_dict({**meta.to_dict(), "runtime": {"delegate": "xnnpack", **bad}})


def test_load_watch_sees_another_process_busy_on_a_core():
    """A busy process that is not this one's (not yet reaped) child counts as others' load."""
    import subprocess
    import sys
    import time

    from edgeq.sysload import LoadWatch

    watch = LoadWatch.start()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(1.6)
        others = watch.others()
    finally:
        busy.wait()
    assert others is not None and others >= 0.5, others


def test_tuning_under_load_says_so(monkeypatch, tmp_path):
    from edgeq.sysload import LoadWatch

    monkeypatch.setattr(LoadWatch, "others", lambda self: 1.2)
    out = tmp_path / "t.tflite"
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack"], runs=2, warmup=0, confirm=0, search_options=False,
                        output=out)
    assert res.others_load == 1.2 and "1.20 of" in res.warnings[0] and "idle machine" in res.warnings[0]
    assert "warning: other processes used 1.20" in tune_mod.format_table(res)
    assert "others' load 1.20 cores" in read_metadata(out.read_bytes()).runtime["tuned_on"]
    monkeypatch.setattr(LoadWatch, "others", lambda self: 0.05)
    res = tune_mod.tune(INT8, threads=[1], delegates=["xnnpack"], runs=2, warmup=0, confirm=0, search_options=False)
    assert res.warnings == () and "warning:" not in tune_mod.format_table(res)
