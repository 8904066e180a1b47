"""``edgeq report``: one self-contained HTML page from saved JSON results.

The page is a jinja2 template (``templates/report.html.j2``) filled with tables and matplotlib
figures embedded as data: URIs, plus the raw results as JSON; it needs no network, no CDN and
no script to show everything.
"""
from __future__ import annotations

import base64
import datetime
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from ..errors import EdgeqError, UsageError
from .environment import collect_environment
from .results import ReportInputs, read_results


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError as exc:
        raise UsageError("edgeq report needs jinja2 and matplotlib: pip install 'edgeq[plot]'") from exc
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(pathlib.Path(__file__).parent / "templates")),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def _data_uri(fig: Any) -> str:
    from .plots import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(fig)).decode("ascii")


def model_sizes(inputs: ReportInputs) -> list[tuple[str, int]]:
    """(label, bytes) per model file, once each: converted models, else the models an eval measured."""
    sizes: dict[str, tuple[str, int]] = {}
    for c in inputs.conversions:
        name = pathlib.Path(c["output"]).name
        sizes[name] = (f"{name}\n({c['recipe']['name']})", int(c["size_bytes"]))
    if inputs.conversions and not any(c["recipe"]["name"] == "float32" for c in inputs.conversions):
        c = inputs.conversions[0]
        sizes["float weights"] = ("float32 weights\n(source model)", int(c["float_weights_bytes"]))
    for ev in inputs.evals:
        for m in ev.get("models") or ():
            name = pathlib.Path(m["path"]).name
            sizes.setdefault(name, (name, int(m["size_bytes"])))
    return sorted(sizes.values(), key=lambda s: -s[1])


def skipped_delegates(benches: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(delegate, first reason, models) for each delegate that failed: said once, not once per model."""
    out: dict[str, tuple[str, list[str]]] = {}
    for r in benches:
        if r.get("error"):
            reason, models = out.setdefault(r["delegate"], (r["error"], []))
            name = pathlib.Path(r["model"]).name
            if name not in models:
                models.append(name)
    return [(d, reason, models) for d, (reason, models) in out.items()]


def _figures(inputs: ReportInputs) -> dict[str, Any]:
    from . import plots

    figs: dict[str, Any] = {"sizes": None, "accuracy": [], "latency": None, "runs": []}
    sizes = model_sizes(inputs)
    if sizes:
        figs["sizes"] = _data_uri(plots.size_figure(sizes))
    figs["accuracy"] = [_data_uri(plots.accuracy_figure(ev)) for ev in inputs.evals]
    if any(not r.get("error") and r.get("latency_ms") for r in inputs.benches):
        figs["latency"] = _data_uri(plots.latency_figure(inputs.benches))
    figs["runs"] = [_data_uri(plots.run_figure(run)) for run in inputs.runs]
    return figs


def render_html(inputs: ReportInputs, *, title: str = "edgeq report") -> str:
    """The page as a string (tables, embedded figures, the raw results)."""
    if inputs.empty:
        raise UsageError("nothing to report: the files hold no convert, bench, run or eval result")
    env = inputs.environment
    template = _jinja().get_template("report.html.j2")
    return template.render(
        title=title, inputs=inputs, figures=_figures(inputs), sizes=model_sizes(inputs),
        environment=env or collect_environment(), environment_is_current=env is None,
        skipped=skipped_delegates(inputs.benches), name=lambda p: pathlib.Path(str(p)).name,
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        stages=("capture", "preprocess", "inference", "postprocess", "sink"), data=inputs.to_dict())


def write_report(inputs: ReportInputs, path: str | os.PathLike, *, title: str = "edgeq report") -> pathlib.Path:
    """Render and write the page atomically."""
    from ..fileio import write_text_atomic

    html = render_html(inputs, title=title)
    try:
        return write_text_atomic(path, html)
    except OSError as exc:
        raise EdgeqError(f"cannot write report {path}: {exc.strerror or exc}") from exc


def report_from_files(paths: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                      title: str = "edgeq report") -> pathlib.Path:
    """``edgeq report RESULTS... -o OUT``: read, classify, render, write."""
    return write_report(read_results(paths), output, title=title)
