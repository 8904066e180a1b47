"""How much accuracy did quantization cost? Evaluate the float reference and int8 on held-out data.

    python examples/evaluate.py REFERENCE CANDIDATE.tflite [--limit N] [--data /usr/share/datasets/fashion-mnist]

REFERENCE: the float .keras/.h5/SavedModel or a float .tflite. The data: Fashion-MNIST's IDX files (Debian's
dataset-fashion-mnist), a class-folder tree or a CSV/JSON list of (path, label).
"""
import argparse

from edgeq.accuracy import evaluate, format_report

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("reference")
ap.add_argument("candidate")
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--limit", type=int, default=None, help="a seeded random subset of this many samples")
args = ap.parse_args()

report = evaluate(args.reference, [args.candidate], args.data, limit=args.limit, seed=0)
print(format_report(report))
c = report.comparisons[0]
print(f"\nint8 keeps {c.agreement:.2f} % of the float model's answers; top-1 drop {c.top1_drop:+.2f} points; "
      f"{c.reference_size_bytes / c.size_bytes:.1f}x smaller")
