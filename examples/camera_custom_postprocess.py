"""A camera loop with your own postprocess: register a decoder, run the pipeline, get the numbers.

    python examples/camera_custom_postprocess.py MODEL.tflite [SOURCE] [--max-frames N] [--output out.mp4]

SOURCE: a camera index (0), a video file (default .data/vtest.avi), an rtsp:// URL or synthetic://640x480@30.
The decoder below shows the top class only when the model is confident, else "unsure": one
``register(Decoder(...))`` makes it a --postprocess choice too (see CONTRIBUTING.md).
"""
import argparse
import dataclasses
import pathlib
import sys

import numpy as np

import edgeq
from edgeq.pipeline import Pipeline, RunOptions, VideoSink, format_report, open_source, stop_on_signals
from edgeq.postprocess import Decoder, draw_caption, label_for, register

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Confident:
    """The per-frame result: serialises itself (--jsonl) and draws itself (annotated video)."""

    label: str
    score: float

    def to_dict(self):
        return {"label": self.label, "score": self.score}

    def draw(self, image) -> int:
        draw_caption(image, f"{self.label} {self.score:.2f}", 0)
        return 1  # caption lines used


def fits(shapes, task):  # None = this decoder can read the outputs; else why not
    return None if len(shapes) == 1 and int(np.prod(shapes[0])) > 1 else "expects one score vector"


def decode(outputs, ctx, threshold=0.6):
    scores = np.asarray(outputs[0]).reshape(-1)
    best = int(scores.argmax())
    label = label_for(ctx.labels, best) if scores[best] >= threshold else "unsure"
    return Confident(label, float(scores[best]))


register(Decoder("confident-top1", task="classify", help="top-1 class when its score >= 0.6, else 'unsure'",
                 fits=fits, decode=decode), replace=True)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("model")
ap.add_argument("source", nargs="?", default=str(ROOT / ".data" / "vtest.avi"))
ap.add_argument("--max-frames", type=int, default=None)
ap.add_argument("--output", help="annotated video (.mp4/.avi)")
args = ap.parse_args()

with edgeq.load(args.model, delegate="auto") as model:
    sinks = [VideoSink(args.output)] if args.output else []
    pipeline = Pipeline(model, open_source(args.source), sinks,
                        RunOptions(max_frames=args.max_frames, postprocess="confident-top1"), model_name=args.model)
    with stop_on_signals(pipeline):  # Ctrl-C ends the loop cleanly: the report and the video are kept
        report = pipeline.run()
print(format_report(report))
print(f"postprocess: {report.postprocess}; {report.frames_processed} frames at {report.fps:.1f} FPS")
sys.exit(0 if report.frames_processed else 1)
