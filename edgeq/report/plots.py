"""The report's figures, drawn with matplotlib from the JSON results (never from live objects).

Each ``*_figure`` returns a matplotlib Figure; ``png_bytes`` renders one for embedding in the HTML
page and ``save_png`` writes one atomically (``edgeq run/eval --plot``).
"""
from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from ..errors import EdgeqError, UsageError

STAGE_ORDER = ("capture", "preprocess", "inference", "postprocess", "sink")
FLOAT_COLOR, INT8_COLOR, OTHER_COLOR = "#8c8c8c", "#2a7ab8", "#e08a2c"


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or a UsageError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("plots need matplotlib: pip install 'edgeq[plot]'") from exc
    return plt


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def save_png(fig: Any, path: str | os.PathLike) -> None:
    from ..fileio import write_bytes_atomic

    try:
        write_bytes_atomic(path, png_bytes(fig))
    except OSError as exc:
        raise EdgeqError(f"cannot write plot {path}: {exc.strerror or exc}") from exc


def _color(label: str) -> str:
    low = label.lower()
    if "float" in low or low.endswith(".keras") or low.endswith(".h5"):
        return FLOAT_COLOR
    return INT8_COLOR if "int8" in low or "uint8" in low else OTHER_COLOR


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float], fmt: str) -> None:
    bars = ax.bar(range(len(values)), values, color=[_color(label) for label in labels])
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, fontsize=8, rotation=15 if len(labels) > 3 else 0)
    for b, v in zip(bars, values):
        ax.annotate(format(v, fmt), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.grid(axis="y", alpha=0.3)


def size_figure(sizes: Sequence[tuple[str, int]]) -> Any:
    """Model file sizes (KiB), float next to int8."""
    fig, ax = pyplot().subplots(figsize=(max(4.5, 1.3 * len(sizes)), 3.4))
    _bars(ax, [s[0] for s in sizes], [s[1] / 1024 for s in sizes], ".1f")
    ax.set_ylabel("size (KiB)")
    ax.set_title("model size")
    fig.tight_layout()
    return fig


def accuracy_figure(ev: dict[str, Any]) -> Any:
    """Top-1 per model and agreement with the reference per candidate, from one eval result."""
    models = ev.get("models") or []
    labelled = ev.get("labelled") and all(m.get("top1") is not None for m in models)
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.4))
    names = [pathlib.Path(m["path"]).name for m in models]
    if labelled:
        _bars(axes[0], names, [m["top1"] for m in models], ".2f")
        low = min(m["top1"] for m in models)
        axes[0].set_ylim(max(0.0, low - 10), 100)
        axes[0].set_title(f"top-1 accuracy, {ev.get('samples')} labelled samples")
        axes[0].set_ylabel("%")
    else:
        axes[0].text(0.5, 0.5, "unlabelled data: no accuracy", ha="center", va="center")
        axes[0].set_axis_off()
    comps = ev.get("comparisons") or []
    _bars(axes[1], [pathlib.Path(c["candidate"]).name for c in comps], [c["agreement"] for c in comps], ".2f")
    if comps:
        axes[1].set_ylim(max(0.0, min(c["agreement"] for c in comps) - 5), 100)
    axes[1].set_title("top-1 agreement with the float reference")
    axes[1].set_ylabel("%")
    fig.tight_layout()
    return fig


def _box_stats(r: dict[str, Any]) -> dict[str, Any]:
    """Box statistics from the raw samples when the result kept them, else from its summary."""
    import numpy as np

    label = f"{pathlib.Path(r['model']).stem}  {r['delegate']}  threads={r.get('threads') or '-'}"
    samples = r.get("samples_ms")
    if samples:
        a = np.asarray(samples, dtype=float)
        p1, q1, med, q3, p99 = np.percentile(a, [1, 25, 50, 75, 99])
        return {"label": label, "med": med, "q1": q1, "q3": q3, "whislo": p1, "whishi": p99, "mean": a.mean(),
                "fliers": a[(a < p1) | (a > p99)]}
    s = r["latency_ms"]
    return {"label": label + " (summary)", "med": s["p50"], "q1": s["min"], "q3": s["p90"], "whislo": s["min"],
            "whishi": s["p99"], "mean": s["mean"], "fliers": []}


def latency_figure(benches: Sequence[dict[str, Any]]) -> Any:
    """Latency distributions per model x delegate x threads (box p25-p75, whiskers p1-p99), one row each."""
    import matplotlib

    ok = [r for r in benches if not r.get("error") and r.get("latency_ms")]
    fig, ax = pyplot().subplots(figsize=(9.5, 1.2 + 0.42 * len(ok)))
    stats = [_box_stats(r) for r in ok]
    version = tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit())
    orient = {"orientation": "horizontal"} if version >= (3, 10) else {"vert": False}
    boxes = ax.bxp(stats, showmeans=True, patch_artist=True, flierprops={"markersize": 2, "alpha": 0.4}, **orient)
    for patch, r in zip(boxes["boxes"], ok):
        patch.set_facecolor(_color(r.get("input_dtype", "") + pathlib.Path(r["model"]).name))
        patch.set_alpha(0.7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("latency per inference (ms, log scale)")
    ax.set_title("latency per delegate and thread count (box p25-p75, whiskers p1-p99, triangle = mean)",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def run_figure(run: dict[str, Any]) -> Any:
    """The camera pipeline: FPS over time, per-stage latency, frame age over time, frames dropped."""
    fig, axes = pyplot().subplots(2, 2, figsize=(10, 6.4))
    _fps_axes(axes[0][0], run)
    _stage_axes(axes[0][1], run)
    _age_axes(axes[1][0], run)
    _drop_axes(axes[1][1], run)
    fig.suptitle(f"{pathlib.Path(run.get('model') or 'model').name} on "
                 f"{(run.get('source') or {}).get('description', 'source')} ({run.get('mode')}, "
                 f"{run.get('delegate')})", fontsize=10)
    fig.tight_layout()
    return fig


def _fps_axes(ax: Any, run: dict[str, Any]) -> None:
    tl = run.get("timeline") or {}
    pts = [(t, f) for t, f in zip(tl.get("t_s", []), tl.get("fps", [])) if f is not None]
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=INT8_COLOR, marker=".",
                label=f"processed FPS (per {tl.get('bin_s', 1):g} s)")
    if run.get("fps") is not None:
        ax.axhline(run["fps"], color="black", ls="--", lw=1, label=f"overall {run['fps']:.1f} FPS")
    if run.get("source_fps_nominal"):
        ax.axhline(run["source_fps_nominal"], color=OTHER_COLOR, ls=":", lw=1,
                   label=f"source declares {run['source_fps_nominal']:.1f}")
    if not pts:
        ax.text(0.5, 0.5, "no per-second series in this result", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("frames per second")
    ax.set_title("FPS over time", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if any(tl.get("dropped") or ()):
        twin = ax.twinx()
        twin.step(tl["t_s"], tl["dropped"], where="post", color="#b03030", lw=1)
        twin.set_ylabel("frames dropped (cumulative)", color="#b03030", fontsize=8)
        twin.set_ylim(bottom=0)
        handles += twin.get_lines()
        labels += ["frames dropped (cumulative)"]
    ax.legend(handles, labels, fontsize=7, loc="lower right")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def _stage_axes(ax: Any, run: dict[str, Any]) -> None:
    stages = run.get("stages") or {}
    names = [n for n in STAGE_ORDER if (stages.get(n) or {}).get("count")] + ["frame age"]
    dists = [stages[n] for n in names[:-1]] + [run.get("latency_ms") or {}]
    y = list(range(len(names)))
    for key, color, off in (("p50", INT8_COLOR, -0.25), ("p95", OTHER_COLOR, 0.0), ("p99", "#b03030", 0.25)):
        ax.barh([v + off for v in y], [d.get(key) or 0 for d in dists], height=0.25, color=color, label=key)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(0, 12 * max([d.get("p99") or 0 for d in dists] + [1.0]))  # room on the right for the legend
    ax.set_xlabel("ms")
    ax.set_title("latency per stage (and capture -> result)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def _age_axes(ax: Any, run: dict[str, Any]) -> None:
    tl = run.get("timeline") or {}
    pts = [(t, a, i) for t, a, i in zip(tl.get("t_s", []), tl.get("age_ms", []), tl.get("inference_ms", []))
           if a is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=OTHER_COLOR, marker=".", label="frame age (mean)")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], color=INT8_COLOR, marker=".", label="inference (mean)")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no per-second series in this result", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("ms")
    ax.set_title("frame age (capture -> result) over time", fontsize=10)
    ax.grid(alpha=0.3)


def _drop_axes(ax: Any, run: dict[str, Any]) -> None:
    keys = [("processed", "frames_processed"), ("dropped", "frames_dropped"), ("duplicate", "frames_duplicate"),
            ("corrupt", "frames_corrupt"), ("unprocessed", "frames_unprocessed")]
    values = [int(run.get(k) or 0) for _, k in keys]
    bars = ax.bar([k for k, _ in keys], values, color=[INT8_COLOR, "#b03030", FLOAT_COLOR, FLOAT_COLOR,
                                                       FLOAT_COLOR])
    for b, v in zip(bars, values):
        ax.annotate(str(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"frames (captured {run.get('frames_captured')})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
