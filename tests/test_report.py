"""`edgeq report`, `run/eval --plot` and the pipeline's per-second series, on real results of the fixtures.

The page is opened in Debian's headless chromium: it must load with no console message, decode every
embedded plot, and draw them (the int8 colour is on screen).
"""
from __future__ import annotations

import json
import re

import pytest
from browser import CHROMIUM, open_page, screenshot
from conftest import TEST_DATA

from edgeq.cli import main
from edgeq.errors import DataError
from edgeq.pipeline.stats import Timeline

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")

INT8 = TEST_DATA / "fashion_int8.tflite"
FLOAT = TEST_DATA / "fashion_float.tflite"
FASHION = "/usr/share/datasets/fashion-mnist"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium "
                                    "(.ci/setup installs it); the page is not checked in a real browser")


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def results(tmp_path_factory, fashion_test):
    """bench, run and eval --json of the committed fixtures, made by the CLI as a user would."""
    d = tmp_path_factory.mktemp("results")
    assert cli("bench", INT8, FLOAT, "--delegate", "xnnpack,cpu", "--threads", "1", "--runs", "20", "--in-process",
               "--json", d / "bench.json") == 0
    assert cli("run", INT8, "-s", "synthetic://320x240@30?frames=60", "--mode", "every-frame", "--json",
               d / "run.json", "--plot", d / "run.png") == 0
    assert cli("eval", FLOAT, INT8, "--data", FASHION, "--limit", "300", "--json", d / "eval.json",
               "--plot", d / "eval.png") == 0
    return d


def test_run_and_eval_plot_pngs(results):
    for name in ("run.png", "eval.png"):
        data = (results / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_run_report_has_a_per_second_series(results):
    run = json.loads((results / "run.json").read_text())
    tl = run["timeline"]
    assert tl["bin_s"] > 0 and len(tl["t_s"]) == len(tl["fps"]) == len(tl["age_ms"]) == len(tl["dropped"]) >= 1
    frames = sum(f * tl["bin_s"] for f in tl["fps"][:-1])
    assert frames <= run["frames_processed"]  # full bins hold at most the frames processed
    assert all(a is None or a > 0 for a in tl["age_ms"])


def test_timeline_bins_merge_and_stay_bounded():
    tl = Timeline(start=100.0, bin_s=1.0, max_bins=4)
    for k in range(11):  # one frame per second for 11 s
        tl.add(100.0 + k + 0.5, age_ms=10.0 + k, inference_ms=1.0, dropped=k)
    d = tl.to_dict()
    assert d["bin_s"] == 4.0 and len(d["t_s"]) == 3  # 11 s in bins of 4 s
    assert d["fps"][:2] == [1.0, 1.0]  # 4 frames per 4 s
    assert d["age_ms"][0] == pytest.approx(11.5) and d["dropped"] == [3, 7, 10]
    assert d["fps"][2] == pytest.approx(3 / 2.5)  # the partial last bin: 3 frames up to the last result


def test_timeline_last_sliver_has_no_rate():
    tl = Timeline(start=0.0, bin_s=1.0)
    for t in (0.1, 0.4, 0.7, 1.02):
        tl.add(t, age_ms=5.0, inference_ms=1.0, dropped=0)
    d = tl.to_dict()
    assert d["fps"] == [3.0, None] and d["age_ms"] == [5.0, 5.0]  # one frame 20 ms into a bin: no rate


def test_report_page_from_saved_results(results, tmp_path):
    out = tmp_path / "report.html"
    assert cli("report", results / "bench.json", results / "run.json", results / "eval.json", "-o", out) == 0
    html = out.read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) == 4  # accuracy, latency, run
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from the network"
    for text in ("Latency per delegate and thread count", "Camera pipeline", "Accuracy: 300 samples",
                 "Environment", "frames dropped"):
        assert text in html
    data = json.loads(re.search(r'<script type="application/json" id="edgeq-results">(.*?)</script>', html,
                                re.S).group(1))
    assert len(data["bench"]) == 4 and data["run"][0]["frames_processed"] == 60 and data["eval"][0]["samples"] == 300
    assert cli("report", results / "run.json", "-o", out) == 1  # exists: --force needed
    assert cli("report", results / "run.json", "-o", results / "run.json", "--force") != 0  # never over an input


def test_report_refuses_what_is_not_a_result(tmp_path, capsys):
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    assert cli("report", junk, "-o", tmp_path / "r.html") == 1
    assert "not an edgeq result" in capsys.readouterr().err
    from edgeq.report import read_results

    with pytest.raises(DataError, match="not found"):
        read_results([tmp_path / "missing.json"])


@needs_chromium
def test_report_loads_in_headless_chromium(results, tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "report.html"
    assert cli("report", results / "bench.json", results / "run.json", results / "eval.json", "-o", out) == 0
    page = open_page(out)
    assert page.console == (), f"console messages: {page.console}"
    assert page.images == 4 and page.images_ok == 4, f"{page.images_ok}/{page.images} plots decoded"
    shot = np.asarray(Image.open(screenshot(out, tmp_path / "shot.png")).convert("RGB")).astype(int)
    blue = int((np.abs(shot - [42, 122, 184]) < 12).all(axis=-1).sum())  # plots.INT8_COLOR
    assert blue > 2000, "the int8 bars/boxes are not on screen"


@needs_chromium
def test_console_check_catches_a_broken_page(tmp_path):
    """The browser check can fail: a page with a script error and a missing image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>undefinedFunction();</script></body></html>')
    page = open_page(bad)
    assert any("undefinedFunction" in m for m in page.console)
    assert page.images == 1 and page.images_ok == 0
