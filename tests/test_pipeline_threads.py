"""`--threads auto`: the pipeline's inference thread count chosen by a trial of each count on the real source.

No timing asserts: which count wins depends on the machine; what is checked is that every
candidate is measured, the winner is one of them and follows the stated rule, and the run after
the choice still finalises its video and report.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import cv2
import numpy as np
import pytest
from helpers import ListSource, Marker, numbered_frames

from edgeq.cli import main
from edgeq.errors import EdgeqError, ModelError, UsageError
from edgeq.pipeline import (
    Frame,
    ImageFolderSource,
    Pipeline,
    RunOptions,
    Source,
    SyntheticSource,
    ThreadTrial,
    VideoFileSource,
    available_cores,
    choose_pipeline_threads,
    decode_frame_number,
    encode_frame_number,
    format_report,
    layout_candidates,
    open_source,
    parse_threads,
    thread_candidates,
)
from edgeq.pipeline.threads import PREFER_FEWER, _pick
from edgeq.postprocess import Decoder, register, unregister
from edgeq.runtime import load

pytestmark = pytest.mark.convert


def _loader(path, opened: list):
    def load_model(threads: int):
        m = load(path, delegate="xnnpack", num_threads=threads)
        opened.append((threads, m))
        return m
    return load_model


def test_every_candidate_is_measured_on_the_real_video_and_the_winner_is_one_of_them(int8_model_path, vtest_path):
    opened: list = []
    choice = choose_pipeline_threads(_loader(int8_model_path, opened), lambda: VideoFileSource(vtest_path),
                                     candidates=(1, 2), frames=12, rounds=2)
    assert choice.threads in (1, 2)
    assert [t.threads for t in choice.trials] == [1, 2]
    for t in choice.trials:
        assert t.error is None and t.frames == 12 and len(t.fps_rounds) == 2
        assert t.fps == max(t.fps_rounds) > 0 and t.inference_ms > 0
    # rounds interleave (1, 2, then 2, 1): four fresh models, each closed after its trial
    assert [threads for threads, _ in opened] == [1, 2, 2, 1]
    assert all(m.interpreter is None for _, m in opened)
    assert choice == _pick(choice.trials, 12, 2)  # the rule below, applied to what was measured
    summary = choice.summary()
    assert f"chose {choice.threads} inference thread(s)" in summary
    assert all(f"{t.threads}: {t.fps:.1f}" in summary for t in choice.trials)
    d = choice.to_dict()
    assert d["threads"] == choice.threads and [t["threads"] for t in d["trials"]] == [1, 2]


def test_a_live_source_is_tried_at_its_own_rate(int8_model_path):
    # A camera cannot deliver faster than it captures: on a live source the trial measures the
    # pipeline at the camera's rate, so counts tie unless one cannot keep up. Unthrottled, this model
    # runs the 96x64 pipeline at several hundred FPS; a late first frame (a fresh interpreter, a busy
    # machine) lets the queued frames after it finish in a burst, hence the margin above 50.
    choice = choose_pipeline_threads(_loader(int8_model_path, []), lambda: open_source("synthetic://96x64@50"),
                                     candidates=(1, 2), frames=20, rounds=1)
    assert choice.threads in (1, 2)
    for t in choice.trials:
        assert t.error is None and t.frames == 20 and 0 < t.fps <= 50 * 1.5


def test_a_count_that_fails_is_reported_and_the_others_still_chosen_from(int8_model_path, vtest_path):
    def load_model(threads: int):
        if threads == 2:
            raise ModelError("two threads refused (test)")
        return load(int8_model_path, delegate="xnnpack", num_threads=threads)

    choice = choose_pipeline_threads(load_model, lambda: VideoFileSource(vtest_path), candidates=(1, 2),
                                     frames=6, rounds=2)
    assert choice.threads == 1
    failed = choice.trials[1]
    assert failed.fps is None and "two threads refused" in failed.error
    assert "2: failed (two threads refused (test))" in choice.summary()


def test_no_measurable_count_is_an_error_that_says_what_to_do(int8_model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeqError, match=r"no thread count could be measured.*give --threads N"):
        choose_pipeline_threads(_loader(int8_model_path, []), lambda: open_source(str(empty)), candidates=(1,),
                                frames=5, rounds=1)


def _trial(threads: int, fps: float | None) -> ThreadTrial:
    return ThreadTrial(threads, fps, (fps,) if fps else (), 1.0 if fps else None, 10 if fps else 0,
                       None if fps else "failed")


def test_more_threads_win_only_by_a_clear_margin():
    near = 100.0 * (1 + PREFER_FEWER) * 0.99
    clear = 100.0 * (1 + PREFER_FEWER) * 1.01
    assert _pick((_trial(1, 100.0), _trial(2, near)), 10, 1).threads == 1
    picked = _pick((_trial(1, 100.0), _trial(2, near)), 10, 1)
    assert "using fewer cores" in picked.reason and "(2: " in picked.reason
    assert _pick((_trial(1, 100.0), _trial(2, clear)), 10, 1).threads == 2
    assert _pick((_trial(1, 100.0), _trial(2, clear)), 10, 1).reason == "the fastest"
    assert _pick((_trial(1, None), _trial(2, 50.0), _trial(3, 51.0)), 10, 1).threads == 2
    # a second instance costs a core like a second thread: it too must win clearly
    two = dataclasses.replace(_trial(1, near), instances=2)
    assert (_pick((_trial(1, 100.0), two), 10, 1).instances, _pick((_trial(1, 100.0), two), 10, 1).threads) == (1, 1)
    two = dataclasses.replace(_trial(1, clear), instances=2)
    assert _pick((_trial(1, 100.0), _trial(2, 100.0), two), 10, 1).instances == 2
    with pytest.raises(EdgeqError, match="1 thread"):
        _pick((_trial(1, None),), 10, 1)


@pytest.mark.parametrize("value, expected", [("1", 1), ("4", 4), (3, 3), ("auto", "auto"), ("AUTO", "auto"),
                                             (None, None)])
def test_parse_threads_accepts_counts_and_auto(value, expected):
    assert parse_threads(value) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "", True])
def test_parse_threads_refuses_the_rest_and_lists_what_is_valid(value):
    with pytest.raises(UsageError, match=r"expected a positive integer .* or 'auto'"):
        parse_threads(value)


def test_candidates_are_one_to_the_cores_this_process_may_use():
    assert thread_candidates(3) == (1, 2, 3)
    assert thread_candidates() == tuple(range(1, available_cores() + 1))
    assert layout_candidates(3) == ((1, 1), (2, 1), (3, 1), (1, 2), (1, 3))
    assert layout_candidates(1) == ((1, 1),)


def test_instance_layouts_are_tried_too_and_cost_cores_like_threads(int8_model_path, vtest_path):
    opened: list = []
    choice = choose_pipeline_threads(_loader(int8_model_path, opened), lambda: VideoFileSource(vtest_path),
                                     candidates=(1, (1, 2)), frames=8, rounds=1)
    assert [(t.threads, t.instances) for t in choice.trials] == [(1, 1), (1, 2)]
    assert [threads for threads, _ in opened] == [1, 1, 1]  # the 1x2 trial loaded two instances
    assert (choice.threads, choice.instances) in ((1, 1), (1, 2))
    assert "1x2: " in choice.summary()
    with pytest.raises(UsageError, match="positive thread counts or"):
        choose_pipeline_threads(_loader(int8_model_path, []), lambda: VideoFileSource(vtest_path), candidates=(0,))


def test_cli_threads_auto_chooses_reports_every_count_and_finalises_video_and_report(int8_model_path, vtest_path,
                                                                                    tmp_path, capsys):
    video, report_path = tmp_path / "out.avi", tmp_path / "r.json"
    rc = main(["run", "--delegate", "xnnpack", str(int8_model_path), "--source", str(vtest_path), "--threads",
               "auto", "--max-frames", "15", "--output", str(video), "--json", str(report_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(report_path.read_text())
    choice = report["thread_choice"]
    layouts = list(layout_candidates())  # 1..cores threads, then 2..cores single-threaded instances
    assert [(t["threads"], t["instances"]) for t in choice["trials"]] == layouts
    assert all(t["fps"] > 0 and t["frames"] == choice["frames_per_trial"] for t in choice["trials"])
    assert (report["threads"], report["instances"]) == (choice["threads"], choice["instances"]) in layouts
    assert report["frames_processed"] == 15 and report["stop_reason"] == "max_frames"
    assert f"--threads auto chose {choice['threads']} inference thread(s)" in err
    # the summary table names every layout tried, instances as THREADSxINSTANCES
    per = ", ".join(f"{t['threads']}x{t['instances']}" if t["instances"] > 1 else f"{t['threads']}"
                    for t in choice["trials"])
    assert f"threads: {choice['threads']}" in out and "(auto; pipeline FPS per threads[xinstances] " in out
    assert [p.split(":")[0] for p in out.split("threads[xinstances] ")[1].split(")")[0].split(", ")] == per.split(", ")
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_cli_invalid_threads_is_one_clear_line_listing_what_is_valid(int8_model_path, vtest_path, value, capsys):
    rc = main(["run", str(int8_model_path), "--source", str(vtest_path), "--threads", value])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"Invalid value for '--threads': {value!r}: expected a positive integer" in err
    assert "or 'auto'" in err and "Traceback" not in err


class _Collect:
    """A sink that keeps what reached it, in order."""

    name = "collect"

    def __init__(self) -> None:
        self.items: list = []

    def write(self, item) -> None:
        self.items.append(item)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["every-frame", "realtime"])
def test_instances_run_consecutive_frames_and_finish_them_in_order(int8_model_path, tmp_path, mode):
    if mode == "every-frame":  # a folder of numbered frames: nothing may be skipped
        for n in range(1, 41):
            image = np.full((96, 128, 3), 90, np.uint8)
            encode_frame_number(image, n)
            cv2.imwrite(str(tmp_path / f"{n:03d}.png"), image)
        src = ImageFolderSource(tmp_path)
    else:  # a live camera: the newest frame only, drops allowed
        src = SyntheticSource(160, 120, 200.0, frames=60)
    sink = _Collect()
    models = [load(int8_model_path, delegate="xnnpack", num_threads=1) for _ in range(3)]
    try:
        report = Pipeline(models[0], src, [sink], RunOptions(mode=mode), replicas=models[1:]).run()
    finally:
        for m in models:
            m.close()
    assert report.instances == 3 and report.stop_reason.value == "end_of_input"
    seqs = [item.seq for item in sink.items]
    assert len(seqs) == report.frames_processed > 0 and seqs == sorted(set(seqs))
    # each result carries its own frame (the number drawn into the image), never a neighbour's
    assert all(decode_frame_number(item.image) == item.seq for item in sink.items)
    if mode == "every-frame":
        assert seqs == list(range(1, 41))
    assert "x 3 instances" in format_report(report)


def test_instances_stop_at_max_frames_exactly(int8_model_path, vtest_path):
    models = [load(int8_model_path, delegate="xnnpack", num_threads=1) for _ in range(2)]
    try:
        report = Pipeline(models[0], VideoFileSource(vtest_path), (), RunOptions(max_frames=7),
                          replicas=models[1:]).run()
    finally:
        for m in models:
            m.close()
    assert report.frames_processed == 7 and report.stop_reason.value == "max_frames"


def test_a_replica_must_be_another_instance_of_the_same_model(int8_model_path):
    with load(int8_model_path, delegate="xnnpack") as m, pytest.raises(UsageError, match="replica 1 must be another"):
        Pipeline(m, open_source("synthetic://64x48@10"), replicas=[m])


def test_cli_instances_are_loaded_run_and_reported(int8_model_path, vtest_path, tmp_path, capsys):
    report_path, jsonl = tmp_path / "r.json", tmp_path / "r.jsonl"
    rc = main(["run", "--delegate", "xnnpack", str(int8_model_path), "--source", str(vtest_path), "--threads", "1",
               "--instances", "2", "--max-frames", "9", "--jsonl", str(jsonl), "--json", str(report_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(report_path.read_text())
    assert report["instances"] == 2 and report["threads"] == 1 and report["frames_processed"] == 9
    assert [json.loads(line)["seq"] for line in jsonl.read_text().splitlines()] == list(range(1, 10))
    assert "threads: 1 x 2 instances" in out


class _SlowModel:
    """A real model whose every inference takes ``delay_s`` longer, and that knows when one is under way."""

    def __init__(self, model, delay_s: float) -> None:
        self._model = model
        self.delay_s = delay_s
        self.active = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def run(self, tensors):
        self.active += 1
        try:
            time.sleep(self.delay_s)
            return self._model.run(tensors)
        finally:
            self.active -= 1


def test_a_stop_waits_for_the_inferences_in_flight_before_returning(int8_model_path, vtest_path):
    # The caller closes the models once run() returns: no instance may still be inside run() then.
    class StopAtFirst(_Collect):
        pipeline = None

        def write(self, item) -> None:
            super().write(item)
            self.pipeline.stop()

    sink = StopAtFirst()
    # the first instance is quick, so its result stops the run while the others are still busy
    models = [_SlowModel(load(int8_model_path, delegate="xnnpack", num_threads=1), delay) for delay in (0, 1, 1)]
    try:
        sink.pipeline = Pipeline(models[0], VideoFileSource(vtest_path), [sink], replicas=models[1:])
        report = sink.pipeline.run()
        assert [m.active for m in models] == [0, 0, 0]
    finally:
        for m in models:
            m.close()
    assert report.stop_reason.value == "interrupted" and report.frames_processed >= 1
    assert report.frames_unprocessed >= 0 and len(sink.items) == report.frames_processed


def test_cli_threads_auto_with_fixed_instances_tries_thread_counts_only(int8_model_path, vtest_path, tmp_path,
                                                                      capsys):
    report_path = tmp_path / "r.json"
    rc = main(["run", "--delegate", "xnnpack", str(int8_model_path), "--source", str(vtest_path), "--threads", "auto",
               "--instances", "1", "--max-frames", "5", "--json", str(report_path)])
    assert rc == 0, capsys.readouterr().err
    choice = json.loads(report_path.read_text())["thread_choice"]
    assert [(t["threads"], t["instances"]) for t in choice["trials"]] == [(t, 1) for t in thread_candidates()]


@pytest.mark.parametrize("instances", [1, 3])
def test_a_decoder_sees_frames_in_order_one_at_a_time_whatever_the_instances(int8_model_path, instances):
    # Results are postprocessed on the instances' own threads: a decoder (a tracker may keep state)
    # must still get the frames in frame order and never two at once.
    widths, overlaps, inside = [], [], threading.Lock()

    def decode(outputs, ctx):
        if not inside.acquire(blocking=False):
            overlaps.append(ctx.source_size[0])
            inside.acquire()
        try:
            time.sleep(0.002)  # long enough for another thread to arrive while this one decodes
            widths.append(ctx.source_size[0])
        finally:
            inside.release()
        return Marker(float(np.max(outputs[0])))

    register(Decoder("order-probe", "mark", "records the frame order (tests)", lambda shapes, task: None, decode,
                     priority=500))
    frames = [np.full((48, 64 + n, 3), 90, np.uint8) for n in range(1, 25)]  # frame n is 64 + n wide
    models = [load(int8_model_path, delegate="xnnpack", num_threads=1) for _ in range(instances)]
    try:
        r = Pipeline(models[0], ListSource(frames), (), RunOptions(mode="every-frame", postprocess="order-probe"),
                     replicas=models[1:]).run()
    finally:
        unregister("order-probe")
        for m in models:
            m.close()
    assert r.stop_reason.value == "end_of_input" and r.frames_processed == 24
    assert widths == [64 + n for n in range(1, 25)] and overlaps == []


def test_instances_reading_their_own_frames_count_duplicates_and_end_on_a_source_failure(int8_model_path):
    # Every-frame with replicas: the instances read the source themselves (no capture thread); a
    # stale frame is still never new, and a source that fails ends the run with what it delivered.
    class Failing(Source):
        def __init__(self) -> None:
            super().__init__("fails after frame 6")
            self.seqs = iter([1, 2, 2, 3, 4, 4, 4, 5, 6])

        def _open(self) -> None:
            pass

        def read(self):
            seq = next(self.seqs, None)
            if seq is None:
                self.failure = "the test source failed after frame 6"
                return None
            return Frame(np.full((48, 64, 3), seq * 20, np.uint8), seq, time.monotonic(), 0.0)

    sink = _Collect()
    models = [load(int8_model_path, delegate="xnnpack", num_threads=1) for _ in range(2)]
    try:
        r = Pipeline(models[0], Failing(), [sink], RunOptions(mode="every-frame"), replicas=models[1:]).run()
    finally:
        for m in models:
            m.close()
    assert r.stop_reason.value == "source_failed" and "after frame 6" in r.failure
    assert [item.seq for item in sink.items] == [1, 2, 3, 4, 5, 6] and r.frames_duplicate == 3
    assert r.frames_captured == r.frames_processed == 6 and r.frames_unprocessed == 0


@pytest.mark.parametrize("instances", [1, 2])
def test_a_failing_decoder_ends_the_run_with_its_error_after_the_inferences_in_flight(int8_model_path, instances):
    # The caller closes the models once run() raises too: no instance may still be inside run() then.
    calls = []

    def decode(outputs, ctx):
        calls.append(ctx.source_size)
        if len(calls) == 3:
            raise ValueError("the decoder failed on frame 3")
        return None

    register(Decoder("fails-third", "mark", "fails on the third frame (tests)", lambda shapes, task: None, decode,
                     priority=500))
    models = [_SlowModel(load(int8_model_path, delegate="xnnpack", num_threads=1), 0.3) for _ in range(instances)]
    try:
        with pytest.raises(ValueError, match="failed on frame 3"):
            Pipeline(models[0], ListSource(numbered_frames(40)), (),
                     RunOptions(mode="every-frame", postprocess="fails-third"), replicas=models[1:]).run()
        assert [m.active for m in models] == [0] * instances and len(calls) == 3
    finally:
        unregister("fails-third")
        for m in models:
            m.close()
