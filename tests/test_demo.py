"""`edgeq demo` end to end, small (the sizes are options): every output, the report readable again, the
page sound in a real browser, and no output replaced without --force."""
from __future__ import annotations

import json

import pytest
from browser import CHROMIUM, open_page

from edgeq.errors import OutputExistsError

pytestmark = pytest.mark.convert
pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, fashion_test, vtest_path):
    from edgeq.demo import DemoOptions, run_demo

    lines: list[str] = []
    opts = DemoOptions(out_dir=str(tmp_path_factory.mktemp("demo")), calibration_samples=20, eval_samples=200,
                       bench_runs=5, bench_warmup=1, threads=(1,), delegates=("xnnpack", "cpu-ref"), max_frames=30)
    return run_demo(opts, info=lines.append), lines, opts


def test_demo_writes_every_output(demo):
    result, lines, _ = demo
    for what, path in result.outputs.items():
        assert path.is_file() and path.stat().st_size > 0, what
    assert any("converting" in line for line in lines) and any("benchmarking" in line for line in lines)
    assert any("camera pipeline" in line for line in lines)


def test_demo_results_are_real_and_read_back(demo):
    from edgeq.report import read_results

    result, _, _ = demo
    inputs = read_results([result.outputs["results"]])
    assert [c["recipe"]["name"] for c in inputs.conversions][:2] == ["int8", "float32"]  # (+ the detector)
    assert inputs.conversions[0]["full_integer"] and inputs.conversions[0]["calibration"]["used"] == 20
    ev = inputs.evals[0]
    assert ev["samples"] == 200 and ev["labelled"] and all(m["top1"] > 70 for m in ev["models"])
    assert {(r["delegate"], r["threads"]) for r in inputs.benches} == {("xnnpack", 1), ("cpu-ref", None)}
    assert all(len(r["samples_ms"]) == 5 for r in inputs.benches if not r["error"])
    run = inputs.runs[0]
    assert run["frames_processed"] == 30 and "vtest.avi" in run["source"]["description"] and run["timeline"]["fps"]
    assert inputs.environment["cores"] >= 1 and "ai-edge-litert" in json.dumps(inputs.environment)
    assert any("200 of the 10,000" in n or "subset of 200" in n for n in inputs.notes)


def test_demo_quantizes_a_real_detector_and_finds_the_faces(demo):
    """MediaPipe's float face detector, quantized by edgeq and run on 8 real photos: 6 with the face, 2 without."""
    from edgeq.demo_detector import unavailable_reason
    from edgeq.report import read_results

    if unavailable_reason() is not None:
        pytest.skip(f"detector step not run here: {unavailable_reason()}")
    result, lines, _ = demo
    inputs = read_results([result.outputs["results"]])
    det = inputs.conversions[2]
    assert det["recipe"]["name"] == "int8" and det["full_integer"]
    assert det["output"].endswith("face_detector_int8.tflite")
    faces = [json.loads(line) for line in (result.out_dir / "faces.jsonl").read_text().splitlines()]
    found = [len(r["result"]["detections"]) for r in faces]
    assert found == [1, 1, 1, 1, 1, 1, 0, 0]  # one face in each portrait view, none on the cup or the cat
    assert inputs.runs[1]["frames_processed"] == 8 and result.outputs["faces video"].stat().st_size > 0
    assert any("6 face(s) found" in n for n in inputs.notes)


def test_demo_report_page(demo):
    html = demo[0].report_html.read_text()
    assert "edgeq demo" in html and "float32" in html and "int8" in html
    if CHROMIUM is not None:
        page = open_page(demo[0].report_html)
        from edgeq.demo_detector import unavailable_reason

        runs = 1 if unavailable_reason() is not None else 2  # the detector's run is a second pipeline panel
        assert page.console == () and page.images_ok == page.images == 3 + runs


def test_demo_never_replaces_outputs_without_force(demo):
    from edgeq.demo import DemoOptions, run_demo

    with pytest.raises(OutputExistsError, match="--force"):
        run_demo(DemoOptions(out_dir=demo[2].out_dir))


def test_demo_command_checks_before_work(demo, capsys):
    from edgeq.cli import main

    assert main(["demo", "--out", demo[2].out_dir]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["demo", "--threads", "0"]) == 2
