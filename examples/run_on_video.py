"""Run an edgeq model on a video (or camera/stream) and print what a camera app would get.

    python examples/run_on_video.py MODEL.tflite .data/vtest.avi [--output annotated.mp4]

The same as `edgeq run MODEL --source VIDEO --output annotated.mp4`, through the library API.
"""
from __future__ import annotations

import argparse
import sys

import edgeq.runtime
from edgeq.pipeline import JsonLinesSink, Pipeline, RunOptions, VideoSink, format_report, open_source, stop_on_signals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("source", help="video file, camera index, rtsp:// URL, image folder or synthetic://640x480@30")
    ap.add_argument("--mode", choices=["realtime", "every-frame"])
    ap.add_argument("--output", help="annotated video (.mp4/.avi)")
    ap.add_argument("--jsonl", help="per-frame results")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--range", help="value range (0,1 | -1,1 | 0,255) of a foreign model without edgeq metadata")
    args = ap.parse_args()

    sinks = [VideoSink(args.output)] if args.output else []
    if args.jsonl:
        sinks.append(JsonLinesSink(args.jsonl))
    # Preprocessing options go through edgeq's one resolver: the model's embedded contract, else one
    # inferred from its input tensor (with a warning), the options applied on top.
    options = {"value_range": args.range}
    with edgeq.runtime.load(args.model, num_threads=args.threads, preprocess=options) as model:
        pipeline = Pipeline(model, open_source(args.source), sinks,
                            RunOptions(mode=args.mode, max_frames=args.max_frames),
                            status=lambda s: print("\r" + s.line(), end="", file=sys.stderr),
                            model_name=args.model, threads=args.threads)
        with stop_on_signals(pipeline):  # Ctrl-C: stop cleanly, keep the video and the numbers
            report = pipeline.run()
    print(file=sys.stderr)
    print(format_report(report))
    print(f"\n{report.frames_processed} frames at {report.fps:.1f} FPS; median frame age "
          f"{report.latency_ms.p50:.1f} ms; dropped {report.frames_dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
