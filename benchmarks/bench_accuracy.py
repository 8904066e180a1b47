"""Accuracy table: PTQ (min/max, percentile, MSE, auto ranges, int16x8) / mixed to a budget / QAT.

For the bundled Fashion-MNIST model and the hard case (models/hard_case), every variant is
converted with edgeq from the same 200 calibration images (a seeded sample of the 300 in
calibration_data/, from the training split) and evaluated side by side against the float Keras
model on the real Fashion-MNIST test set (10,000 images) with ``edgeq.accuracy.evaluate``.
Whatever is chosen by measurement is chosen on a validation split disjoint from the test images
(the last 5,000 training images): the mixed model's search, and the QAT run's best epoch (trained
on the first 55,000 training images; the hard case only, by default), with a control row: the same
fine-tuning without fake quantization, then plain PTQ. The "auto" range row
measures on the 100 calibration_data images that calibration did not use.

    .venv/bin/python benchmarks/bench_accuracy.py [--limit N] [--budget 0.5] [--qat-epochs 6] [--markdown]

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
from edgeq.datasets import FASHION_MNIST_DIR, load_fashion_mnist  # noqa: E402
from edgeq.errors import ConversionError  # noqa: E402

MODELS = {
    "bundled (fashion_mnist_dsconv)": ROOT / "models" / "fashion_mnist_dsconv.keras",
    "hard case (outlier channel)": ROOT / "models" / "hard_case" / "hard_case.keras",
}
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"


QAT_MODELS = ("hard case (outlier channel)",)
VALIDATION = slice(55000, 60000)     # of the training split: disjoint from the 10,000 test images


def validation_data():
    x, y = load_fashion_mnist("train")
    return read_eval_data(x[VALIDATION], y[VALIDATION])


def variants(budget: float, val) -> list[tuple[str, dict]]:
    """(row name, keyword arguments); a row with max_accuracy_drop goes through edgeq.accuracy.convert_to_budget."""
    return [
        ("int8 min/max (default)", {}),
        ("int8 percentile 99.99", {"recipe": edgeq.make_recipe("int8", range_method="percentile")}),
        ("int8 MSE-optimal", {"recipe": edgeq.make_recipe("int8", range_method="mse")}),
        ("int8 auto range (measured)", {"recipe": edgeq.make_recipe("int8", range_method="auto")}),
        ("int16x8 (whole model)", {"recipe": "int16x8"}),
        (f"mixed, budget {budget:g} pt (chosen on validation)", {"max_accuracy_drop": budget, "eval_data": val}),
    ]


def finetune_control(keras_path: pathlib.Path, tmp: str, epochs: int) -> tuple[str, str, str]:
    """The control for QAT: the same fine-tuning without fake quantization (best epoch on validation),
    then plain PTQ int8. Returns (row name, .tflite path, note)."""
    import keras

    x, y = load_fashion_mnist("train")
    xf = x[..., None].astype("float32") / 255
    keras.utils.set_random_seed(0)
    m = keras.models.load_model(keras_path, compile=False)
    m.compile(keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    best, weights = -1.0, m.get_weights()
    for _ in range(epochs):
        h = m.fit(xf[:VALIDATION.start], y[:VALIDATION.start], batch_size=64, epochs=1, verbose=0,
                  validation_data=(xf[VALIDATION], y[VALIDATION]))
        if h.history["val_accuracy"][0] > best:
            best, weights = h.history["val_accuracy"][0], m.get_weights()
    m.set_weights(weights)
    src, out = pathlib.Path(tmp) / "finetuned.keras", pathlib.Path(tmp) / "finetuned-int8.tflite"
    m.save(src)
    edgeq.convert(str(src), str(CALIB), str(out), labels=str(LABELS))
    return (f"control: float fine-tune {epochs} epochs, then PTQ int8", str(out),
            "same data/epochs/lr as QAT, no fake quantization")


def qat_variant(keras_path: pathlib.Path, out: pathlib.Path, epochs: int) -> tuple[str, str]:
    """QAT on train[:55000], best epoch on the validation split; the checkpoint also converted for the Edge TPU."""
    x, y = load_fashion_mnist("train")
    t0 = time.perf_counter()
    r = edgeq.qat(str(keras_path), read_eval_data(x[:VALIDATION.start], y[:VALIDATION.start]), validation_data(),
                  out, epochs=epochs, lr=5e-4, labels=str(LABELS))
    tpu = edgeq.convert(r.checkpoint, str(CALIB), out.with_name(out.stem + "-edgetpu.tflite"), target="edgetpu")
    first = tpu.edgetpu.first_unmapped
    verdict = "maps fully" if first is None and not tpu.edgetpu.refused else (
        f"first unmapped op {first.op}" if first is not None else "refused")
    note = (f"QAT {time.perf_counter() - t0:.0f} s, best epoch {r.best_epoch}/{len(r.history) - 1} "
            f"({r.stopped}); full integer {'yes' if r.conversion.report.full_integer else 'NO'}; "
            f"Edge TPU check (uint8): {verdict}")
    return f"QAT int8, {epochs} epochs (best epoch on validation)", note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, help="evaluate on a seeded subset (default: all 10,000 test images)")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--qat-epochs", type=int, default=6, help="0: no QAT rows")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    data = read_eval_data(FASHION_MNIST_DIR).subset(args.limit)
    rows: list[tuple] = []
    skipped: list[tuple[str, str, str]] = []
    val = validation_data()
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for model_name, keras_path in MODELS.items():
            outputs, notes = [], []
            for vname, kw in variants(args.budget, val):
                out = pathlib.Path(tmp) / f"{keras_path.stem}-{len(outputs)}.tflite"
                t0 = time.perf_counter()
                try:
                    verb = convert_to_budget if "max_accuracy_drop" in kw else edgeq.convert
                    res = verb(str(keras_path), str(CALIB), str(out), labels=str(LABELS), **kw)
                except ConversionError as exc:  # e.g. 16x8 has no HARD_SWISH kernel: a row saying so
                    skipped.append((model_name, vname, str(exc).splitlines()[0]))
                    continue
                note = f"convert {time.perf_counter() - t0:.1f} s"
                if res.accuracy and "range_selection" in res.accuracy:
                    note += f"; chose {res.accuracy['range_selection']['chosen']}"
                if res.accuracy and "steps" in res.accuracy:
                    step = res.accuracy["steps"][res.accuracy["chosen_step"]]
                    note += (f"; {len(step['float_layers'])} tensor(s) float ({len(step['float_nodes'])} ops)"
                             + ("" if res.accuracy["met"] else f"; MISSED by {res.accuracy['miss']:.2f}"))
                outputs.append(str(out))
                notes.append((vname, note))
            if args.qat_epochs and model_name in QAT_MODELS:
                out = pathlib.Path(tmp) / f"{keras_path.stem}-qat.tflite"
                notes.append(qat_variant(keras_path, out, args.qat_epochs))
                outputs.append(str(out))
                name, path, note = finetune_control(keras_path, tmp, args.qat_epochs)
                notes.append((name, note))
                outputs.append(path)
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
