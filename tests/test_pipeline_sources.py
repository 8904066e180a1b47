"""Sources and sinks through their real code paths (files, folders, local HTTP stream, refusals)."""
from __future__ import annotations

import pathlib
import socket
import time

import cv2
import numpy as np
import pytest
from helpers import MjpegServer

from edgeq.errors import SourceError, UsageError
from edgeq.pipeline import (
    CameraSource,
    FrameResult,
    ImageFolderSource,
    JsonLinesSink,
    PreviewSink,
    SinkError,
    SourceOptions,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
    VideoSink,
    decode_frame_number,
    encode_frame_number,
    gui_available,
    open_source,
)


def test_open_source_dispatches_each_form(tmp_path, vtest_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert isinstance(open_source("0"), CameraSource)
    assert isinstance(open_source("/dev/video2"), CameraSource)
    assert isinstance(open_source(str(vtest_path)), VideoFileSource)
    assert isinstance(open_source("rtsp://127.0.0.1:8554/cam"), StreamSource)
    assert isinstance(open_source("http://127.0.0.1/x.mjpg"), StreamSource)
    assert isinstance(open_source(str(tmp_path)), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "*.png")), ImageFolderSource)
    s = open_source("synthetic://320x240@15?frames=4")
    assert isinstance(s, SyntheticSource) and (s.width, s.height, s.fps, s.frames) == (320, 240, 15.0, 4)


def test_video_file_delivers_every_frame_with_sequence_and_timestamps(vtest_path):
    with VideoFileSource(vtest_path) as src:
        assert src.nominal_fps == pytest.approx(10.0) and src.frame_count == 795
        frames = [(f.seq, f.timestamp, f.image.shape) for f in src]
    assert [f[0] for f in frames] == list(range(1, 796))
    assert all(b[1] >= a[1] for a, b in zip(frames, frames[1:]))
    assert frames[0][2] == (576, 768, 3) and src.corrupt_frames == 0 and src.failure is None
    assert src._cap is None  # released on exit
    assert src.nominal_fps == pytest.approx(10.0) and src.info()["nominal_fps"] == pytest.approx(10.0)


def test_truncated_video_ends_with_a_failure_not_an_exception(tmp_path, vtest_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(vtest_path.read_bytes()[:3_000_000])
    with VideoFileSource(cut) as src:
        n = sum(1 for _ in src)
    assert 100 < n < 795
    assert "truncated" in src.failure and src.corrupt_frames == 0


@pytest.mark.parametrize("spec, words", [
    ("/dev/video7", ["/dev/video7 does not exist", "V4L2"]),
    ("5", ["camera 5", "/dev/video5 does not exist"]),
    ("missing_clip.mp4", ["not an existing file", "synthetic://"]),
])
def test_unopenable_sources_say_what_was_tried(spec, words):
    with pytest.raises(SourceError) as err:
        open_source(spec).open()
    for w in words:
        assert w in str(err.value)


def test_not_a_video_and_empty_folder(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(SourceError, match="FFmpeg backend cannot decode"):
        open_source(str(bad)).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no image files found"):
        open_source(str(tmp_path / "empty")).open()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_stream_retries_with_backoff_then_errors():
    port = _free_port()  # nothing listens there: connections are refused
    delays: list[float] = []
    src = StreamSource(f"rtsp://127.0.0.1:{port}/cam", SourceOptions(max_reconnects=3, reconnect_backoff_s=0.2),
                       sleep=delays.append)
    with pytest.raises(SourceError, match="4 times with backoff"):
        src.open()
    assert delays == [0.2, 0.4, 0.8] and len(src.attempts) == 4


def test_stream_reconnects_after_a_drop_then_ends_cleanly_when_gone():
    server = MjpegServer(frames=10, connections=2)
    src = StreamSource(server.url, SourceOptions(max_reconnects=2, reconnect_backoff_s=0.05, open_timeout_s=2,
                                                 read_timeout_s=2))
    try:
        with src:
            seqs = [f.seq for f in src]
    finally:
        server.close() if server.served < 2 else None
    assert src.reconnects == 1
    assert 18 <= len(seqs) <= 20 and seqs == list(range(1, len(seqs) + 1))
    assert "did not come back after 2 reconnect attempts" in src.failure


def test_image_folder_skips_and_counts_corrupt_images(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((16, 16, 3), i * 50, np.uint8))
    (tmp_path / "img2.png").write_bytes(b"\x89PNG broken")
    with ImageFolderSource(tmp_path) as src:
        means = [int(f.image.mean()) for f in src]
    assert means == [0, 50, 150] and src.corrupt_frames == 1


def test_synthetic_frames_carry_their_number_and_duplicates_repeat_it():
    with SyntheticSource(160, 120, fps=20, frames=6, duplicate_every=3) as src:  # 50 ms late skips one
        frames = list(src)
    seqs = [f.seq for f in frames]
    assert seqs == [0, 1, 1, 2, 3, 3, 4, 5, 5]
    assert [decode_frame_number(f.image) for f in frames] == seqs
    with pytest.raises(UsageError, match="synthetic://WIDTHxHEIGHT@FPS"):
        open_source("synthetic://big")


def test_synthetic_source_is_paced_and_skips_like_a_camera_when_read_late():
    with SyntheticSource(160, 120, fps=50, frames=40) as src:
        t0 = time.monotonic()
        first = [src.read() for _ in range(10)]
        assert time.monotonic() - t0 == pytest.approx(9 / 50, abs=0.05)  # paced at 50 FPS
        time.sleep(0.2)  # reader falls ~10 frames behind
        late = src.read()
    assert late.seq >= first[-1].seq + 9 and src.skipped_frames == late.seq - first[-1].seq - 1


def _result(image, seq):
    return FrameResult(seq, 0.0, 0.001, {}, None, image, 25.0)


def test_video_sink_writes_under_a_temp_name_and_finalises_a_playable_file(tmp_path):
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, fps=25)
    for n in range(12):
        image = np.full((240, 320, 3), 90, np.uint8)
        encode_frame_number(image, n)
        sink.write(_result(image, n))
        assert not out.exists()  # never a half file under the real name
    sink.close()
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    cap = cv2.VideoCapture(str(out))
    numbers = []
    while (ok_img := cap.read())[0]:
        numbers.append(decode_frame_number(ok_img[1]))
    assert numbers == list(range(12)) and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25)


def test_realtime_video_holds_each_result_until_the_next_so_it_plays_at_real_speed(tmp_path):
    out = tmp_path / "held.mp4"
    sink = VideoSink(out)
    sink.start(SyntheticSource(320, 240, fps=25), "realtime")
    # Results for source frames 0, 1, 4 and 5 of a 25 FPS camera (2 and 3 were dropped).
    for n in (0, 1, 4, 5):
        image = np.full((240, 320, 3), 90, np.uint8)
        encode_frame_number(image, n)
        sink.write(FrameResult(n, 100.0 + n / 25, 100.1 + n / 25, {}, None, image, 25.0))
    sink.close()
    cap = cv2.VideoCapture(str(out))
    numbers = []
    while (ok_img := cap.read())[0]:
        numbers.append(decode_frame_number(ok_img[1]))
    # Six frames for six source frame times: frame 1 is shown until frame 4 arrives.
    assert numbers == [0, 1, 1, 1, 4, 5] and sink.frames_written == 6


def test_sink_errors_are_clear(tmp_path):
    with pytest.raises(SinkError, match="unsupported video container '.webm'.*mp4"):
        VideoSink(tmp_path / "x.webm")
    if gui_available():
        pytest.skip("this OpenCV has a GUI, so --show works and there is no error to check")
    with pytest.raises(UsageError, match="headless"):
        PreviewSink()


def test_jsonl_sink_is_atomic(tmp_path):
    out = tmp_path / "r.jsonl"
    sink = JsonLinesSink(out)
    sink.start(None, "every-frame")
    sink.write(_result(np.zeros((4, 4, 3), np.uint8), 7))
    assert not out.exists()
    sink.close()
    assert out.read_text().count("\n") == 1 and '"seq": 7' in out.read_text()
    assert [p.name for p in pathlib.Path(tmp_path).iterdir()] == ["r.jsonl"]


def test_annotate_draws_detection_boxes_where_they_are_and_leaves_the_frame_alone():
    from edgeq.pipeline import Detections, annotate

    frame = np.zeros((120, 160, 3), np.uint8)
    det = Detections(np.array([[20, 30, 100, 90]], np.float32), np.array([0.9]), np.array([1]), ("car",))
    out = annotate(frame, det, fps=12.5)
    assert frame.max() == 0  # the captured frame is not modified
    assert tuple(out[60, 20]) == (0, 255, 0) and tuple(out[90, 60]) == (0, 255, 0)  # left and bottom edges
    assert out[60, 60].max() == 0  # inside the box untouched
    assert out[5:30, :80].max() > 0  # FPS overlay drawn top-left
