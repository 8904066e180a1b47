"""``edgeq demo``: the whole story on the bundled defaults, in a few minutes, into one report.

Convert the bundled Fashion-MNIST model (int8 and the float32 reference), evaluate both on real
held-out images, benchmark every registered delegate (those unavailable here are reported as
skipped, with the reason), run the camera pipeline on real street footage, and write
``report.json`` + ``report.html``. Every step reads only files in the checkout or installed by
``.ci/setup``; sizes are options so tests can run it small.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

from .demo_detector import detector_paths, run_detector
from .demo_detector import unavailable_reason as detector_unavailable
from .errors import DataError, UsageError

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "models" / "fashion_mnist_dsconv.keras"
BUNDLED_LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIBRATION = ROOT / "calibration_data"
VTEST = pathlib.Path(os.environ.get("EDGEQ_VTEST", ROOT / ".data" / "vtest.avi"))
SYNTHETIC = "synthetic://640x480@30?frames=300"
CPU_DELEGATES = ("xnnpack", "cpu")  # the delegates whose speed depends on the thread count

Info = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """What the demo does and how big; the defaults take a few minutes on 2 cores."""

    out_dir: str = "edgeq-demo"
    calibration_samples: int = 200
    eval_samples: int = 10_000        # the whole Fashion-MNIST test set (fewer: a seeded subset)
    bench_runs: int = 100
    bench_warmup: int = 10
    threads: tuple[int, ...] = (1, 2)  # for xnnpack and cpu; the other delegates run once each
    delegates: tuple[str, ...] | None = None  # None: every registered delegate
    video: str | None = None          # None: vtest.avi when present, else a synthetic source
    max_frames: int | None = None     # None: the whole clip
    detector: bool = True             # also quantize MediaPipe's face detector and run it on real photos
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("calibration_samples", "eval_samples", "bench_runs"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise UsageError(f"threads must be positive integers, got {self.threads}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"max_frames must be >= 1, got {self.max_frames}")


@dataclasses.dataclass(frozen=True)
class DemoResult:
    out_dir: pathlib.Path
    outputs: dict[str, pathlib.Path]  # what -> file: the models, the annotated video, report.html, report.json
    inputs: Any                       # edgeq.report.ReportInputs (what report.json holds)
    seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def report_html(self) -> pathlib.Path:
        return self.outputs["report"]


def _paths(opts: DemoOptions) -> dict[str, pathlib.Path]:
    out = pathlib.Path(opts.out_dir)
    return {"int8": out / "fashion_mnist_int8.tflite", "float": out / "fashion_mnist_float32.tflite",
            "video": out / "annotated.mp4", "html": out / "report.html", "json": out / "report.json"}


def check_demo(opts: DemoOptions) -> tuple[dict[str, pathlib.Path], str]:
    """The bundled inputs exist and no output would be overwritten without force: before any work."""
    from .fileio import check_outputs

    for path, what in ((BUNDLED_MODEL, "bundled model"), (CALIBRATION, "calibration images"),
                       (BUNDLED_LABELS, "labels")):
        if not path.exists():
            raise DataError(f"{what} not found at {path}: edgeq demo runs from a checkout of the edgeq repository "
                            "(git clone, then bash .ci/setup)")
    video = opts.video or (str(VTEST) if VTEST.is_file() else SYNTHETIC)
    paths = _paths(opts)
    recipes = {f"{k} recipe": p.with_name(p.stem + ".recipe.json") for k, p in paths.items() if k in ("int8", "float")}
    created = {**{k: v for k, v in paths.items() if k not in ("html", "json")}, **recipes}
    if opts.detector and detector_unavailable() is None:
        created.update({k: v for k, v in detector_paths(opts.out_dir).items() if "faces" not in k or "video" in k
                        or "results" in k})
    check_outputs([BUNDLED_MODEL, CALIBRATION, BUNDLED_LABELS, video], force=opts.force, created=created,
                  reports={"report.html": paths["html"], "report.json": paths["json"]})
    return paths, video


def _convert(opts: DemoOptions, paths: dict[str, pathlib.Path], info: Info,
             progress: Progress | None) -> tuple[list[dict[str, Any]], list[str]]:
    from .convert.converter import convert

    results, warnings = [], []
    for key, recipe in (("int8", "int8"), ("float", "float32")):
        info(f"converting the bundled model: {recipe} -> {paths[key]}")
        r = convert(str(BUNDLED_MODEL), str(CALIBRATION) if recipe == "int8" else None, str(paths[key]),
                    recipe=recipe, labels=str(BUNDLED_LABELS), num_samples=opts.calibration_samples,
                    force=opts.force, progress=progress if recipe == "int8" else None)
        info(f"    {r.size_bytes / 1024:.1f} KiB, full integer: {r.report.full_integer}, {r.seconds:.1f} s")
        results.append(r.to_dict())
        warnings.extend(r.warnings)
    return results, warnings


def _evaluate(opts: DemoOptions, paths: dict[str, pathlib.Path], info: Info,
              progress: Progress | None) -> tuple[list[dict[str, Any]], list[str]]:
    from .accuracy import evaluate
    from .datasets import FASHION_MNIST_DIR, fashion_mnist_available

    if not fashion_mnist_available():
        return [], [f"accuracy not measured: Fashion-MNIST is not installed in {FASHION_MNIST_DIR} "
                    "(bash .ci/setup installs Debian's dataset-fashion-mnist)"]
    info(f"evaluating float32 and int8 on {opts.eval_samples} held-out Fashion-MNIST test images")
    rep = evaluate(str(paths["float"]), [str(paths["int8"])], str(FASHION_MNIST_DIR), limit=opts.eval_samples,
                   seed=0, progress=progress)
    for m in rep.models:
        info(f"    {pathlib.Path(m.path).name}: top-1 {m.top1:.2f} %")
    return [rep.to_dict()], list(rep.warnings)


def _bench(opts: DemoOptions, paths: dict[str, pathlib.Path], info: Info) -> list[dict[str, Any]]:
    from .bench import run_benchmark
    from .runtime.delegates import DELEGATES

    delegates = list(opts.delegates or [d for d in DELEGATES if d != "auto"])  # auto: one of the others
    groups = [([d for d in delegates if d in CPU_DELEGATES], list(opts.threads)),
              ([d for d in delegates if d not in CPU_DELEGATES], [None])]
    models = [str(paths["float"]), str(paths["int8"])]
    total = sum(len(d) * len(t) for d, t in groups) * len(models)
    info(f"benchmarking {len(models)} models x {', '.join(delegates)} ({total} combinations, "
         f"{opts.bench_runs} timed runs each, each in its own process)")
    done = 0

    def progress(r: Any) -> None:
        nonlocal done
        done += 1
        state = f"skipped: {r.error}" if r.error else f"p50 {r.latency_ms.p50:.3f} ms"
        info(f"    [{done}/{total}] {pathlib.Path(r.model).name} {r.delegate} threads={r.threads or '-'}: {state}")

    results = []
    for group, threads in groups:
        if group:
            results += run_benchmark(models, group, threads, runs=opts.bench_runs, warmup=opts.bench_warmup,
                                     progress=progress)
    return [r.to_dict() for r in results]


def _run(opts: DemoOptions, paths: dict[str, pathlib.Path], video: str, info: Info) -> dict[str, Any]:
    from .fileio import to_jsonable
    from .pipeline import Pipeline, RunOptions, VideoSink, open_source
    from .runtime import load

    max_frames = opts.max_frames
    src = open_source(video)
    info(f"running the camera pipeline on {src.description} (every frame"
         + (f", at most {max_frames}" if max_frames else "") + f") -> {paths['video']}")
    sink = VideoSink(paths["video"], overwrite=opts.force)
    with load(str(paths["int8"]), delegate="auto") as model:
        pipeline = Pipeline(model, src, [sink], RunOptions(mode="every-frame", max_frames=max_frames),
                            status=lambda s: info("    " + s.line()), model_name=str(paths["int8"]))
        report = pipeline.run()
    info(f"    {report.frames_processed} frames at {report.fps:.1f} FPS, median frame age "
         f"{report.latency_ms.p50:.1f} ms, delegate {report.delegate}")
    return to_jsonable(report.to_dict())


def _notes(opts: DemoOptions, video: str, inputs: Any, seconds: dict[str, float]) -> tuple[str, ...]:
    notes = [f"Converted the bundled Fashion-MNIST model ({BUNDLED_MODEL.name}) to full int8, calibrated on "
             f"{opts.calibration_samples} real training images, and to the float32 reference "
             f"({seconds['convert']:.0f} s)."]
    for ev in inputs.evals:
        subset = "all" if ev["samples"] >= 10_000 else f"a seeded random subset of {ev['samples']}"
        notes.append(f"Evaluated both on {subset} of the 10,000 held-out Fashion-MNIST test images, never seen "
                     f"in training or calibration ({seconds['eval']:.0f} s).")
    skipped = sorted({r["delegate"] for r in inputs.benches if r.get("error")})
    measured = sorted({r["delegate"] for r in inputs.benches if not r.get("error")})
    notes.append(f"Benchmarked delegates {', '.join(measured) or 'none'}"
                 + (f"; skipped {', '.join(skipped)} (not available here, reasons below)" if skipped else "")
                 + f" ({seconds['bench']:.0f} s).")
    what = "real street footage" if video != SYNTHETIC else "a synthetic source (vtest.avi not found: bash .ci/setup)"
    notes.append(f"Ran the camera pipeline on {what}: {pathlib.Path(video).name} ({seconds['run']:.0f} s). "
                 "The classifier was trained on 28x28 clothing images, so its labels on street scenes are "
                 "meaningless: this step measures the pipeline, not accuracy.")
    return tuple(notes)


def _detector_step(opts: DemoOptions, video: str, conversions: list[dict[str, Any]], runs: list[dict[str, Any]],
                   warnings: list[str], info: Info) -> tuple[str, ...]:
    """MediaPipe's face detector, quantized and run on real photos (or the reason it was skipped)."""
    if not opts.detector:
        return ()
    reason = detector_unavailable()
    if reason is not None:
        info(f"skipping the detector step: {reason}")
        return (f"Skipped the detector step: {reason}.",)
    conversion, run, faces, more = run_detector(detector_paths(opts.out_dir), opts.force, info)
    conversions.append(conversion)
    runs.append(run)
    warnings.extend(more)
    return (f"Quantized MediaPipe's trained float face detector (a foreign .tflite) to full int8, calibrated on 7 "
            f"real photos, and ran it on {run['frames_processed']} others (6 with a face, 2 without): {faces} "
            "face(s) found, boxes and keypoints drawn in faces.mp4.",)


def run_demo(opts: DemoOptions = DemoOptions(), *, info: Info = lambda _msg: None,
             progress: Callable[[str], Progress | None] = lambda _label: None) -> DemoResult:
    """Every step of the demo, in order; ``info`` gets one line per step, ``progress(label)`` a bar."""
    from .fileio import dump_json
    from .report import ReportInputs, collect_environment, write_report

    started = time.perf_counter()
    paths, video = check_demo(opts)
    pathlib.Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    conversions, warnings = _convert(opts, paths, info, progress("calibrating"))
    seconds["convert"], t = time.perf_counter() - t, time.perf_counter()
    evals, eval_warnings = _evaluate(opts, paths, info, progress("evaluating"))
    seconds["eval"], t = time.perf_counter() - t, time.perf_counter()
    benches = _bench(opts, paths, info)
    seconds["bench"], t = time.perf_counter() - t, time.perf_counter()
    run = _run(opts, paths, video, info)
    seconds["run"] = time.perf_counter() - t
    runs = [run]
    detector_note = _detector_step(opts, video, conversions, runs, warnings, info)
    inputs = ReportInputs(tuple(conversions), tuple(evals), tuple(benches), tuple(runs), collect_environment(),
                          sources=(str(paths["json"]),))
    inputs = dataclasses.replace(inputs, notes=_notes(opts, video, inputs, seconds) + detector_note)
    dump_json(inputs.to_dict(), paths["json"])
    info(f"writing {paths['html']}")
    write_report(inputs, paths["html"], title="edgeq demo: Fashion-MNIST, float vs int8, on this machine")
    outputs = {"int8 model": paths["int8"], "float reference": paths["float"], "annotated video": paths["video"],
               "report": paths["html"], "results": paths["json"]}
    if len(runs) > 1:
        found = detector_paths(opts.out_dir)
        outputs.update({"int8 face detector": found["detector"], "faces video": found["faces video"]})
    return DemoResult(pathlib.Path(opts.out_dir), outputs, inputs, time.perf_counter() - started,
                      tuple(warnings + eval_warnings + list(run["warnings"])))
