"""What reusing one export and one calibration saves `edgeq tune`, and that int16x8 from the int8
calibration is TensorFlow's own int16x8 model, measured in one run.

MobileNetV2 (random weights, real BatchNorm statistics; --alpha, --size) with --samples calibration
images. (1) every variant `edgeq tune` builds, through its builder: one export, one calibration;
(2) the same variants as separate `edgeq.convert` calls, each exporting and calibrating again, in the
same process right after; the ratio (2)/(1) is printed. (3) the builder's int16x8 against the
separate conversion's int16x8: every tensor's type, scale and zero point, and the raw outputs.

    python benchmarks/bench_tune_variants.py [--alpha 0.35] [--size 224] [--samples 200]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
CALIB = ROOT / "calibration_data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()

    import numpy as np
    import zoo

    import edgeq
    from edgeq.convert.plan import plan_conversion
    from edgeq.tflite_format import load_model_file
    from edgeq.variants.build import variant_builder
    from edgeq.variants.specs import variant_specs

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-tune-variants-"))
    model = zoo.build("MobileNetV2", args.size, alpha=args.alpha, images=zoo.images_for(args.size, str(CALIB)))
    src = tmp / "model.keras"
    model.save(src)
    specs = variant_specs("keras_file")
    opts = {"value_range": "-1,1"}

    t0 = time.perf_counter()
    plan = plan_conversion(str(src), str(CALIB), tmp / "plan.tflite", recipe="int8", num_samples=args.samples,
                           save_recipe=False)
    with variant_builder(str(src), plan, None, opts) as builder:
        ours = {s.name: builder.build(s) for s in specs}
    reuse_s = time.perf_counter() - t0
    print(f"builder: {len(ours)} variants in {reuse_s:.1f} s  {builder.timings}")

    t0 = time.perf_counter()
    separate = {}
    for s in specs:
        t = time.perf_counter()
        separate[s.name] = edgeq.convert(str(src), str(CALIB), str(tmp / f"sep_{len(separate)}.tflite"),
                                         recipe=s.recipe, num_samples=args.samples, preprocess_options=opts,
                                         save_recipe=False)
        print(f"  separate {s.name}: {time.perf_counter() - t:.1f} s")
    separate_s = time.perf_counter() - t0
    print(f"separate: {len(separate)} conversions in {separate_s:.1f} s; separate / builder = "
          f"{separate_s / reuse_s:.2f}x")

    _, a = load_model_file(ours["int16x8"].path)
    _, b = load_model_file(separate["int16x8"].output)
    pa = {t.name: (t.dtype, t.scale, t.zero_point) for t in a.main.tensors}
    pb = {t.name: (t.dtype, t.scale, t.zero_point) for t in b.main.tensors}
    same = sum(pa[k] == pb.get(k) for k in pa)
    print(f"int16x8: {same} of {len(pa)} tensors with the same type/scale/zero point ({len(pb)} in TF's own)")
    worst = 0.0   # raw int16 inputs: TF's int16x8 input may carry no quantization parameters to map images with
    rng = np.random.default_rng(0)
    with edgeq.load(ours["int16x8"].path) as m1, edgeq.load(separate["int16x8"].output) as m2:
        for _ in range(20):
            x = rng.integers(-32768, 32767, m1.inputs[0].shape).astype(m1.inputs[0].dtype)
            worst = max(worst, float(np.max(np.abs(m1.run(x)[0].astype(np.float64) - m2.run(x)[0]))))
    print(f"int16x8 outputs on 20 random int16 inputs: max |difference| {worst:.3g} (quantized units)")


if __name__ == "__main__":
    main()
