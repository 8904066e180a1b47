"""Accuracy table: float / int8 (min/max) / int8 percentile / int8 MSE ranges / int16x8 / mixed to a budget.

For the bundled Fashion-MNIST model and the hard case (models/hard_case), every variant is
converted with edgeq from the same 200 calibration images (a seeded sample of the 300 in
calibration_data/) and evaluated side by side against the float Keras model on the real
Fashion-MNIST test set (10,000 images) with ``edgeq.accuracy.evaluate``. The mixed variant's
search measures its drop on that same test set, so its row is a selection on the test data.

    .venv/bin/python benchmarks/bench_accuracy.py [--limit N] [--budget 0.5] [--markdown]

Prints the table (markdown with --markdown, as pasted in the README).
"""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgeq  # noqa: E402
from edgeq.accuracy import convert_to_budget, evaluate, read_eval_data  # noqa: E402
from edgeq.datasets import FASHION_MNIST_DIR  # noqa: E402
from edgeq.errors import ConversionError  # noqa: E402

MODELS = {
    "bundled (fashion_mnist_dsconv)": ROOT / "models" / "fashion_mnist_dsconv.keras",
    "hard case (outlier channel)": ROOT / "models" / "hard_case" / "hard_case.keras",
}
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"


def variants(budget: float) -> list[tuple[str, dict]]:
    """(row name, keyword arguments); a row with max_accuracy_drop goes through edgeq.accuracy.convert_to_budget."""
    return [
        ("int8 min/max (default)", {}),
        ("int8 percentile 99.99", {"recipe": edgeq.make_recipe("int8", range_method="percentile")}),
        ("int8 MSE-optimal", {"recipe": edgeq.make_recipe("int8", range_method="mse")}),
        ("int16x8 (whole model)", {"recipe": "int16x8"}),
        (f"mixed, budget {budget:g} pt", {"max_accuracy_drop": budget, "eval_data": str(FASHION_MNIST_DIR)}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, help="evaluate on a seeded subset (default: all 10,000 test images)")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    data = read_eval_data(FASHION_MNIST_DIR).subset(args.limit)
    rows: list[tuple] = []
    skipped: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for model_name, keras_path in MODELS.items():
            outputs, notes = [], []
            for vname, kw in variants(args.budget):
                out = pathlib.Path(tmp) / f"{keras_path.stem}-{len(outputs)}.tflite"
                t0 = time.perf_counter()
                try:
                    verb = convert_to_budget if "max_accuracy_drop" in kw else edgeq.convert
                    res = verb(str(keras_path), str(CALIB), str(out), labels=str(LABELS), **kw)
                except ConversionError as exc:  # e.g. 16x8 has no HARD_SWISH kernel: a row saying so
                    skipped.append((model_name, vname, str(exc).splitlines()[0]))
                    continue
                note = f"convert {time.perf_counter() - t0:.1f} s"
                if res.accuracy:
                    step = res.accuracy["steps"][res.accuracy["chosen_step"]]
                    note += (f"; {len(step['float_layers'])} tensor(s) float ({len(step['float_nodes'])} ops)"
                             + ("" if res.accuracy["met"] else f"; MISSED by {res.accuracy['miss']:.2f}"))
                outputs.append(str(out))
                notes.append((vname, note))
            report = evaluate(str(keras_path), outputs, data)
            ref = report.models[0]
            rows.append((model_name, "float32 (Keras)", ref.top1, None, 100.0, float("inf"), ref.size_bytes, ""))
            for (vname, note), m, c in zip(notes, report.models[1:], report.comparisons):
                rows.append((model_name, vname, m.top1, c.top1_drop, c.agreement, c.sqnr_db, m.size_bytes, note))
    print_table(rows, len(data), args.markdown)
    for model_name, vname, why in skipped:
        print(f"not available: {model_name} / {vname}: {why}")


def print_table(rows: list[tuple], n: int, markdown: bool) -> None:
    head = ("model", "variant", "top-1 %", "drop pt", "agree %", "SQNR dB", "size KiB", "notes")
    print(f"Fashion-MNIST test set, {n} images; drop and agreement against the float Keras model")
    def fmt_row(r):
        return ((r[0], r[1], f"{r[2]:.2f}", "-" if r[3] is None else f"{r[3]:+.2f}", f"{r[4]:.2f}",
                              "-" if r[5] == float("inf") else f"{r[5]:.1f}", f"{r[6] / 1024:.1f}", r[7]))
    cells = [head] + [fmt_row(r) for r in rows]
    if markdown:
        for i, c in enumerate(cells):
            print("| " + " | ".join(c) + " |")
            if i == 0:
                print("|" + "---|" * len(c))
        return
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for c in cells:
        print("  ".join(v.ljust(w) if i in (0, 1, 7) else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))


if __name__ == "__main__":
    main()
