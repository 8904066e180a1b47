"""The pipeline's share of the cores: every-frame `edgeq run` throughput against the machine's ceiling.

The ceiling (issue 13) is what the cores could do if the pipeline cost nothing but its work:

    ceiling FPS = cores / (decode + preprocess + inference CPU ms per frame)

* cores: the CPUs this process may use (its affinity), not the machine's count if narrowed;
* decode, preprocess: process CPU time (time.process_time: any FFmpeg helper threads count too) of
  OpenCV's grab+retrieve and of edgeq's preprocessing, measured one frame after another on
  vtest.avi in this process with a single-threaded interpreter (no XNNPACK worker spinning in
  between), never the pipeline's wall-clock stage times (a preempted stage would make the bound
  look lower);
* inference: process CPU time (time.process_time, all threads: XNNPACK's workers too) per
  inference, for the cheapest thread count measured (usually 1): the machine's bound, not one
  configuration's.

Each rep measures those CPU times and then every pipeline layout (threads x model instances)
back to back, so load from other processes hits them alike. Reported per layout: pipeline FPS
and its ratio to the rep's ceiling (median and spread), the pipeline's own CPU per frame against
the stage sum (its overhead: hand-offs, queues, bookkeeping, postprocess), and how many cores
other processes used during its runs (/proc/stat): on a shared machine that, not the pipeline,
is often where the rest of the ceiling goes. Also the ratio to standalone inference FPS.

The 224x224 model (MobileNetV2 alpha 0.35, BatchNorm statistics made real on vtest frames, int8
via edgeq.convert) is built once in a child process (TensorFlow stays out of this process) and
cached under build/.

The 224x224 model (MobileNetV2 alpha 0.35, BatchNorm statistics made real on vtest frames, int8
via edgeq.convert) is built once in a child process (TensorFlow stays out of this process) and
cached under build/.

    .venv/bin/python benchmarks/bench_pipeline.py [--alpha 0.35] [--layouts 1 2 1x2] [--reps 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"


def model_path(alpha: float) -> pathlib.Path:
    return BUILD / f"mobilenetv2_{int(round(alpha * 100)):03d}_224_int8.tflite"
VTEST = pathlib.Path(os.environ.get("EDGEQ_VTEST", ROOT / ".data" / "vtest.avi"))


def build_model(out: pathlib.Path, video: pathlib.Path, alpha: float) -> None:
    """MobileNetV2 with real BatchNorm statistics, converted to int8 (run in a child process)."""
    import zoo

    import edgeq

    frames = zoo.images_for(224, str(video), count=64)   # real street frames, RGB in [-1, 1]
    model = zoo.build("MobileNetV2", 224, alpha=alpha, images=frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    keras_path = out.with_suffix(".keras")
    model.save(keras_path)
    edgeq.convert(str(keras_path), str(video), str(out), num_samples=64, force=True,
                  preprocess_options={"input_size": (224, 224), "value_range": "-1,1"})


def ensure_model(alpha: float) -> pathlib.Path:
    path = model_path(alpha)
    if not path.exists():
        print(f"building {path} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--alpha", str(alpha), "--build-model"], check=True)
    return path


def pipeline_run(model: pathlib.Path, threads: int, instances: int) -> dict:
    from edgeq.pipeline import Pipeline, VideoFileSource
    from edgeq.runtime import load
    from edgeq.sysload import LoadWatch

    models = [load(model, num_threads=threads) for _ in range(instances)]
    try:
        t0, watch = os.times(), LoadWatch.start()
        r = Pipeline(models[0], VideoFileSource(VTEST), replicas=models[1:]).run()
        t1, others = os.times(), watch.others()
    finally:
        for m in models:
            m.close()
    if r.frames_processed != 795:
        raise SystemExit(f"pipeline processed {r.frames_processed} of 795 frames ({r.stop_reason}): not comparable")
    cpu_s = (t1.user + t1.system) - (t0.user + t0.system)
    return {"fps": r.fps, "cpu_ms_per_frame": cpu_s * 1e3 / r.frames_processed,
            "others_cores": float("nan") if others is None else others,
            "inference_ms": r.stages["inference"].mean, "capture_ms": r.stages["capture"].mean,
            "preprocess_ms": r.stages["preprocess"].mean, "postprocess_ms": r.stages["postprocess"].mean,
            "delegate": r.delegate}


def stage_cpu(model: pathlib.Path, threads: int, frames: int = 220, warmup: int = 20) -> dict:
    """CPU ms per frame of decode, preprocess and inference, one frame after another (no overlap).

    All three with time.process_time (every thread of this process): FFmpeg may decode with helper
    threads (with its default thread count thread_time missed ~15 % of decoding here), and with 2
    threads XNNPACK's workers burn CPU on both cores for one wall-clock inference, CPU that decoding
    and preprocessing cannot use.
    Also the standalone inference FPS (wall) of the same loop.
    """
    import time

    import cv2

    from edgeq.pipeline import SourceOptions, opencv_threads
    from edgeq.runtime import load

    # the decoder as VideoFileSource opens it (its decode_threads), so the two decode alike
    threads_opt = SourceOptions().decode_threads
    cap = cv2.VideoCapture(str(VTEST), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads_opt] if threads_opt else [])
    dec = pre = inf = wall = 0.0
    with load(model, num_threads=threads) as m, opencv_threads(1):  # as in the pipeline
        for i in range(frames + warmup):
            c0 = time.process_time()
            if not cap.grab():
                raise SystemExit("vtest.avi ended early")
            image = cap.retrieve()[1]
            c1 = time.process_time()
            tensor = m.prepare_with_transform(image, "BGR")[0]
            c2 = time.process_time()
            p0, w0 = c2, time.perf_counter()
            m.run([tensor])
            p1, w1 = time.process_time(), time.perf_counter()
            if i >= warmup:
                dec, pre, inf, wall = dec + c1 - c0, pre + c2 - c1, inf + p1 - p0, wall + w1 - w0
    cap.release()
    return {"decode_cpu_ms": dec * 1e3 / frames, "preprocess_cpu_ms": pre * 1e3 / frames,
            "inference_cpu_ms": inf * 1e3 / frames, "standalone_fps": frames / wall}


def ceiling_fps(cpu: dict[int, dict]) -> tuple[float, float]:
    """(ceiling FPS, CPU ms per frame it assumes) = cores / (decode + preprocess + cheapest inference CPU).

    Decode and preprocess from the single-threaded run (``cpu[1]``): with more threads, XNNPACK's
    workers may still spin after an inference and their CPU would be charged to the decoder.
    """
    from edgeq.pipeline import available_cores

    cheapest = min(c["inference_cpu_ms"] for c in cpu.values())
    per_frame = cpu[1]["decode_cpu_ms"] + cpu[1]["preprocess_cpu_ms"] + cheapest
    return available_cores() * 1000.0 / per_frame, per_frame


def parse_layout(text: str) -> tuple[int, int]:
    threads, _, instances = text.partition("x")
    return int(threads), int(instances or 1)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def report(layouts: list[tuple[int, int]], reps: list[dict]) -> dict:
    """Print one row per layout (medians over reps, spreads in brackets); return everything for --json."""
    from edgeq.pipeline import available_cores

    print(f"{'layout':>7} {'pipeline FPS':>13} {'ratio to ceiling':>22} {'vs standalone':>14} "
          f"{'CPU ms/frame':>13} {'overhead':>9} {'others':>7} {'free-core ratio':>16}")
    rows = {}
    for t, k in layouts:
        key = f"{t}x{k}"
        runs = [rep["pipeline"][key] for rep in reps]
        ratios = [run["fps"] / rep["ceiling_fps"] for run, rep in zip(runs, reps)]
        alone = [run["fps"] / rep["stage_cpu"][t]["standalone_fps"] for run, rep in zip(runs, reps)]
        overhead = [run["cpu_ms_per_frame"] - rep["stage_cpu_ms"] for run, rep in zip(runs, reps)]
        others = [run["others_cores"] for run in runs]
        # Not the goal's ratio: the same FPS against the cores other processes left free during the run.
        free = [run["fps"] * rep["stage_cpu_ms"] / 1000.0 / max(available_cores() - run["others_cores"], 0.1)
                for run, rep in zip(runs, reps)]
        rows[key] = {"fps": [r["fps"] for r in runs], "ceiling_ratio": ratios, "standalone_ratio": alone,
                     "overhead_cpu_ms": overhead, "others_cores": others, "free_core_ratio": free,
                     "goal_ceiling_met": statistics.median(ratios) >= 0.90}
        print(f"{key:>7} {statistics.median(r['fps'] for r in runs):>13.1f} {_spread(ratios):>22} "
              f"{statistics.median(alone):>14.3f} {statistics.median(r['cpu_ms_per_frame'] for r in runs):>13.2f} "
              f"{statistics.median(overhead):>9.2f} {statistics.median(others):>7.2f} {_spread(free):>16}")
    ceilings = [rep["ceiling_fps"] for rep in reps]
    print(f"ceiling {statistics.median(ceilings):.1f} FPS [{min(ceilings):.1f}-{max(ceilings):.1f}] = "
          f"{available_cores()} cores / {statistics.median(rep['stage_cpu_ms'] for rep in reps):.2f} CPU ms per frame "
          f"(decode {statistics.median(rep['stage_cpu'][1]['decode_cpu_ms'] for rep in reps):.2f} + preprocess "
          f"{statistics.median(rep['stage_cpu'][1]['preprocess_cpu_ms'] for rep in reps):.2f} + cheapest inference "
          f"{statistics.median(min(c['inference_cpu_ms'] for c in rep['stage_cpu'].values()) for rep in reps):.2f})")
    print("layout = inference threads x model instances; ratio = median [min-max] over reps; overhead = pipeline CPU "
          "per frame - the stage sum (hand-offs, postprocess, bookkeeping); others = cores other processes used "
          f"during the pipeline runs (load average now {os.getloadavg()[0]:.2f}); free-core ratio = the same FPS "
          "against cores - others, an indication on a shared machine, not the goal. Goal: ratio to ceiling >= 0.90.")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layouts", nargs="+", default=None,
                    help="THREADS or THREADSxINSTANCES (default: what --threads auto tries: 1..cores, 1x2..1xcores)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width (0.35 fast, 1.0 full size)")
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--build-model", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not VTEST.is_file():
        print(f"{VTEST} missing: .ci/run extracts vtest.avi from Debian's opencv-doc", file=sys.stderr)
        return 2
    if args.build_model:
        build_model(model_path(args.alpha), VTEST, args.alpha)
        return 0
    from edgeq.pipeline import layout_candidates

    model = ensure_model(args.alpha)
    layouts = [parse_layout(x) for x in args.layouts] if args.layouts else list(layout_candidates())
    print(f"model {model.name}, source {VTEST.name} (795 frames 768x576), every-frame, no sinks, {args.reps} reps "
          f"interleaved; load average at start {os.getloadavg()[0]:.2f}")
    reps = []
    for _ in range(args.reps):
        cpu = {t: stage_cpu(model, t) for t in sorted({1, *(t for t, _ in layouts)})}
        bound, per_frame = ceiling_fps(cpu)
        reps.append({"stage_cpu": cpu, "ceiling_fps": bound, "stage_cpu_ms": per_frame,
                     "pipeline": {f"{t}x{k}": pipeline_run(model, t, k) for t, k in layouts}})
    rows = report(layouts, reps)
    if args.json:
        from edgeq.fileio import dump_json

        dump_json({"layouts": rows, "reps": reps}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
