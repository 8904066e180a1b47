"""The pipeline end to end with the bundled int8 model: accounting, FPS arithmetic, stops, faults."""
from __future__ import annotations

import json
import time

import cv2
import pytest
from helpers import ListSource, numbered_frames

from edgeq.errors import UsageError
from edgeq.pipeline import (
    JsonLinesSink,
    Pipeline,
    RunOptions,
    Sink,
    SourceOptions,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
    VideoSink,
    format_report,
)

pytestmark = pytest.mark.convert


@pytest.fixture(scope="module")
def model(int8_model_path):
    from edgeq.runtime import load

    # xnnpack named: these tests are about the pipeline's accounting, not delegate selection.
    with load(int8_model_path, delegate="xnnpack", num_threads=1) as m:
        yield m


class SlowedModel:
    """The real model, with inference padded to a chosen time (a stand-in for a bigger model)."""

    def __init__(self, model, seconds: float) -> None:
        self._model, self.seconds = model, seconds

    def __getattr__(self, name):
        return getattr(self._model, name)

    def run(self, tensors):
        t0 = time.perf_counter()
        out = self._model.run(tensors)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - t0)))
        return out


def count_video_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_frame_processes_all_795_vtest_frames(model, vtest_path, tmp_path):
    video, lines = tmp_path / "annotated.mp4", tmp_path / "frames.jsonl"
    source = VideoFileSource(vtest_path)
    report = Pipeline(model, source, [VideoSink(video), JsonLinesSink(lines)], model_name="fashion").run()
    assert source._cap is None  # released
    assert report.mode == "every-frame" and report.stop_reason == "end_of_input"
    assert (report.frames_captured, report.frames_processed, report.frames_dropped) == (795, 795, 0)
    rows = read_jsonl(lines)
    assert [r["seq"] for r in rows] == list(range(1, 796))
    assert rows[0]["result"]["type"] == "classification" and len(rows[0]["result"]["top"]) == 5
    # FPS from timestamps: 795 results span 794 intervals.
    span = rows[-1]["result_time"] - rows[0]["result_time"]
    assert report.fps == pytest.approx(794 / span, rel=1e-6)
    assert count_video_frames(video) == 795
    for stage in ("capture", "preprocess", "inference", "postprocess", "sink"):
        assert report.stages[stage].count == 795 and report.stages[stage].p50 > 0
    assert report.latency_ms.p50 > 0 and report.delegate == model.delegate_report.delegate
    # The rate the file declares survives closing it (the report is built after the source closed).
    assert report.source_fps_nominal == pytest.approx(10) and report.source["nominal_fps"] == pytest.approx(10)
    assert "source declares 10.0" in format_report(report)
    assert report.outputs == {"video": str(video), "jsonl": str(lines)}
    d = report.to_dict()
    for key in ("source_fps", "frames_captured", "frames_processed", "frames_dropped", "fps", "stages",
                "latency_ms", "delegate", "mode"):
        assert key in d
    assert set(d["stages"]["inference"]) >= {"mean", "p50", "p95", "p99"}
    assert "frame age" in format_report(report)


def realtime_run(model, seconds, fps=30, duration=3.0, sinks=(), status=None, **src):
    source = SyntheticSource(320, 240, fps=fps, **src)
    return Pipeline(SlowedModel(model, seconds), source, list(sinks), RunOptions(duration_s=duration),
                    status=status).run()


def test_realtime_fast_model_keeps_up_with_a_30_fps_source(model):
    statuses = []
    r = realtime_run(model, 0.010, status=statuses.append)
    # The live status is throttled (every 0.5 s) and its counts only grow.
    assert 4 <= len(statuses) <= 7
    assert all(b.processed > a.processed and b.elapsed_s - a.elapsed_s >= 0.45
               for a, b in zip(statuses, statuses[1:]))
    assert "FPS" in statuses[-1].line()
    assert r.mode == "realtime" and r.stop_reason == "duration"
    assert r.source_fps == pytest.approx(30, rel=0.05)
    assert r.fps == pytest.approx(30, rel=0.08)
    assert r.frames_dropped <= 0.05 * r.frames_captured
    assert r.stages["inference"].p50 == pytest.approx(10, abs=3)


def test_realtime_slow_model_processes_20_fps_and_reports_the_rest_dropped(model):
    r = realtime_run(model, 0.050)
    assert r.fps == pytest.approx(20, rel=0.12)
    assert r.frames_dropped / r.frames_captured == pytest.approx(1 / 3, abs=0.08)
    # Every captured frame is accounted for: processed, dropped, or unprocessed at the stop: at most the one
    # waiting in the slot and the one in flight (a stop does not report an inference it did not wait for).
    assert r.frames_captured == r.frames_processed + r.frames_dropped + r.frames_unprocessed
    assert r.frames_unprocessed <= 2
    # A frame waits at most one inference in the slot: age stays around 1-2 inference times.
    assert r.latency_ms.p50 < 120


def test_realtime_video_of_a_slow_model_plays_at_the_source_speed(model, tmp_path):
    from edgeq.pipeline import decode_frame_number

    video = tmp_path / "slow.mp4"
    r = realtime_run(model, 0.050, duration=2.0, sinks=[VideoSink(video)])
    cap = cv2.VideoCapture(str(video))
    numbers = []
    while (ok_img := cap.read())[0]:
        numbers.append(decode_frame_number(ok_img[1]))
    shown = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
    assert len(shown) == r.frames_processed and r.frames_dropped > 0.2 * r.frames_captured
    # A third of the frames were dropped, yet the 30 FPS file lasts as long as the run did.
    assert len(numbers) == pytest.approx(shown[-1] - shown[0] + 1, abs=3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30)


def test_every_frame_on_a_live_source_still_reports_what_the_camera_dropped(model):
    source = SyntheticSource(320, 240, fps=30)
    r = Pipeline(SlowedModel(model, 0.050), source, options=RunOptions(mode="every-frame", duration_s=3.0)).run()
    # Bounded queues fill up, the camera cannot wait: the frames it skipped are counted as dropped.
    assert r.mode == "every-frame" and r.fps == pytest.approx(20, rel=0.12)
    assert source.skipped_frames == r.frames_dropped
    assert r.frames_dropped / (r.frames_captured + r.frames_dropped) == pytest.approx(1 / 3, abs=0.08)


def test_duplicate_frames_are_never_counted_as_new(model, tmp_path):
    lines = tmp_path / "f.jsonl"
    r = realtime_run(model, 0.005, duration=2.0, duplicate_every=2, sinks=[JsonLinesSink(lines)])
    seqs = [row["seq"] for row in read_jsonl(lines)]
    assert len(seqs) == len(set(seqs)) == r.frames_processed
    assert r.frames_duplicate >= 0.8 * r.frames_captured  # every other read was a stale frame
    assert r.fps == pytest.approx(30, rel=0.08) and r.source_fps == pytest.approx(30, rel=0.05)


def test_realtime_paces_a_file_at_its_native_fps(model, vtest_path):
    r = Pipeline(model, VideoFileSource(vtest_path), options=RunOptions(mode="realtime", duration_s=2.0)).run()
    assert r.source_fps == pytest.approx(10, rel=0.05) and r.fps == pytest.approx(10, rel=0.08)
    assert 19 <= r.frames_processed <= 22 and r.frames_dropped == 0


class SlowSink(Sink):
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds, self.written = seconds, 0

    def write(self, item) -> None:
        time.sleep(self.seconds)
        self.written += 1


def test_a_slow_sink_back_pressures_instead_of_buffering(model):
    sink = SlowSink(0.050)
    r = realtime_run(model, 0.002, sinks=[sink])
    # The sink can take 20 FPS; with a 4-deep queue the pipeline is held to that rate and the
    # surplus shows up as camera drops, not as a growing buffer.
    assert r.fps == pytest.approx(20, rel=0.15)
    assert r.frames_dropped / r.frames_captured == pytest.approx(1 / 3, abs=0.1)
    assert sink.written == r.frames_processed  # everything processed was drained before close


def test_max_frames_stops_exactly(model, vtest_path):
    r = Pipeline(model, VideoFileSource(vtest_path), options=RunOptions(max_frames=50)).run()
    assert r.stop_reason == "max_frames" and r.frames_processed == 50
    assert r.frames_captured <= 50 + 2 * RunOptions().queue_size + 1  # bounded read-ahead only


class FailingSink(Sink):
    name = "failing"

    def __init__(self) -> None:
        self.n = 0

    def write(self, item) -> None:
        self.n += 1
        if self.n == 5:
            raise OSError(28, "No space left on device")


def test_a_failing_sink_ends_the_run_with_a_partial_report(model, vtest_path):
    r = Pipeline(model, VideoFileSource(vtest_path), [FailingSink()]).run()
    assert r.stop_reason == "sink_failed" and "No space left" in r.failure
    assert 5 <= r.frames_processed < 795


def test_a_pipeline_runs_once(model):
    p = Pipeline(model, ListSource(numbered_frames(3)), options=RunOptions(mode="every-frame"))
    assert p.run().frames_processed == 3
    with pytest.raises(UsageError, match="runs once"):
        p.run()


def test_stream_drop_reconnects_then_partial_report(model):
    from helpers import MjpegServer

    server = MjpegServer(frames=10, connections=2)
    src = StreamSource(server.url, SourceOptions(max_reconnects=2, reconnect_backoff_s=0.05, open_timeout_s=2,
                                                 read_timeout_s=2))
    r = Pipeline(model, src, options=RunOptions(mode="every-frame")).run()
    assert r.stop_reason == "source_failed" and "did not come back" in r.failure
    assert r.reconnects == 1 and r.frames_processed == r.frames_captured >= 18


@pytest.fixture(scope="module")
def yolo_model(tmp_path_factory):
    """A tiny int8 'detector' whose raw YOLO head always outputs the same rows (known boxes).

    Its head is a bias: rows of cx, cy, w, h (in 64x64 input pixels), objectness, 2 class scores.
    Running it through the real pipeline checks letterbox mapping and NMS end to end.
    """
    import keras
    import numpy as np

    import edgeq

    rows = np.zeros((20, 7), np.float32)
    rows[0] = [20, 24, 16, 16, 0.9, 0.1, 0.9]   # class 1, input box x 12..28, y 16..32
    rows[1] = [21, 25, 16, 16, 0.8, 0.1, 0.9]   # overlaps row 0 in the same class: suppressed
    rows[2] = [44, 30, 8, 12, 0.9, 0.9, 0.1]    # class 0, input box x 40..48, y 24..36
    inp = keras.Input((64, 64, 3))
    dense = keras.layers.Dense(rows.size)
    out = keras.layers.Reshape(rows.shape)(dense(keras.layers.GlobalAveragePooling2D()(inp)))
    net = keras.Model(inp, out)
    dense.set_weights([np.full((3, rows.size), 1e-4, np.float32), rows.reshape(-1)])
    folder = tmp_path_factory.mktemp("yolo")
    net.save(folder / "det.keras")
    from conftest import CALIBRATION_DIR

    result = edgeq.convert(str(folder / "det.keras"), str(CALIBRATION_DIR), str(folder / "det.tflite"),
                           task="detect", num_samples=20, preprocess_options={"resize": "letterbox"})
    from edgeq.runtime import load

    with load(result.output, delegate="xnnpack") as m:
        yield m


def test_yolo_detections_mapped_through_the_letterbox_end_to_end(yolo_model, vtest_path, tmp_path):
    lines, video = tmp_path / "det.jsonl", tmp_path / "det.mp4"
    r = Pipeline(yolo_model, VideoFileSource(vtest_path), [JsonLinesSink(lines), VideoSink(video)],
                 RunOptions(max_frames=10)).run()
    assert r.postprocess == "yolo" and r.frames_processed == 10
    # 768x576 letterboxed into 64x64: scale 1/12, 8 px bands top and bottom.
    expected = {1: [144, 96, 336, 288], 0: [480, 192, 576, 336]}
    for row in read_jsonl(lines):
        dets = row["result"]["detections"]
        assert len(dets) == 2  # the overlapping duplicate was suppressed
        for d in dets:
            assert d["box"] == pytest.approx(expected[d["class_id"]], abs=2.5)  # int8 output step ~0.17 px x 12
            assert d["score"] == pytest.approx(0.81, abs=0.1)
    assert count_video_frames(video) == 10


@pytest.mark.parametrize("mode", ["every-frame", "realtime"])
def test_frames_preprocessing_cannot_take_are_skipped_and_counted(model, mode):
    import numpy as np
    good = np.full((48, 64, 3), 128, np.uint8)
    bad = np.zeros((48, 64, 2), np.uint8)          # two channels: no colour conversion can take it
    frames = [good, bad, good, bad, good]
    r = Pipeline(model, ListSource(frames), options=RunOptions(mode=mode)).run()
    assert r.stop_reason == "end_of_input" and r.frames_captured == 5
    # Every captured frame is accounted for exactly once; a skipped frame is not "unprocessed".
    assert r.frames_captured == r.frames_processed + r.frames_dropped + r.frames_corrupt + r.frames_unprocessed
    assert r.frames_unprocessed == 0  # the input ended: nothing was left queued
    if mode == "every-frame":
        assert (r.frames_corrupt, r.frames_processed, r.frames_dropped) == (2, 3, 0)
        # The first skipped frame is a warning the report carries (the CLI shows it without -v).
        assert len(r.warnings) == 1 and r.warnings[0].startswith("skipping frame 2 (and counting further ones")
    else:  # all 5 arrive at once: the newest-frame slot drops what inference cannot reach
        assert r.frames_processed >= 1
        assert r.frames_processed + r.frames_dropped + r.frames_corrupt == 5


@pytest.mark.parametrize("max_frames", [None, 2])
def test_with_replicas_frames_preprocessing_cannot_take_are_skipped_in_order(model, int8_model_path, max_frames):
    # With replicas (two frames queued per worker) a frame preprocessing cannot take is skipped and
    # counted, results still arrive in frame order, max_frames stays exact.
    import numpy as np

    from edgeq.runtime import load

    good = np.full((48, 64, 3), 128, np.uint8)
    bad = np.zeros((48, 64, 2), np.uint8)
    frames = [good, bad, bad, good, bad, good, good]
    seqs: list[int] = []

    class Collect(Sink):
        name = "collect"

        def write(self, item) -> None:
            seqs.append(item.seq)

    with load(int8_model_path, delegate="xnnpack", num_threads=1) as replica:
        r = Pipeline(model, ListSource(frames), [Collect()], RunOptions(mode="every-frame", max_frames=max_frames),
                     replicas=[replica]).run()
    if max_frames is None:
        assert r.stop_reason == "end_of_input" and seqs == [1, 4, 6, 7]
        assert (r.frames_corrupt, r.frames_processed, r.frames_unprocessed) == (3, 4, 0)
    else:
        assert r.stop_reason == "max_frames" and seqs == [1, 4] and r.frames_processed == 2
    assert r.instances == 2 and r.frames_corrupt >= 2
    assert len(r.warnings) == 1 and r.warnings[0].startswith("skipping frame 2 (and counting further ones")


def test_a_run_without_a_processed_frame_reports_no_video(model, tmp_path):
    import numpy as np

    video, lines = tmp_path / "none.mp4", tmp_path / "none.jsonl"
    bad = np.zeros((48, 64, 2), np.uint8)
    r = Pipeline(model, ListSource([bad, bad]), [VideoSink(video), JsonLinesSink(lines)]).run()
    assert r.frames_processed == 0 and r.frames_corrupt == 2
    # No frame, no video file: the report must not point at one (the JSON-lines file exists, empty).
    assert not video.exists() and r.outputs == {"jsonl": str(lines)} and lines.read_text() == ""
    assert "video:" not in format_report(r)
