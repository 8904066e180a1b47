"""The decoder registry is the single source of decoders, result types draw and serialise themselves,
and what the pipeline warns about reaches the run's report. No TensorFlow: a stand-in model."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from helpers import FakeCapture, FakeModel, ListSource, Marker, numbered_frames

import edgeq.metadata
from edgeq.errors import ModelError, UsageError
from edgeq.pipeline import (
    CameraSource,
    ImageFolderSource,
    JsonLinesSink,
    Pipeline,
    RunOptions,
    Sink,
    SourceOptions,
    StopReason,
    annotate,
    format_report,
)
from edgeq.postprocess import (
    Classification,
    Decoder,
    Detections,
    RawOutputs,
    TopK,
    choose_decoder,
    decoder_names,
    get_decoder,
    help_text,
    register,
    top_k,
    unregister,
)


# --------------------------------------------------------------------------------------------
# One Classification, one top-k
# --------------------------------------------------------------------------------------------
def test_classification_has_the_runtime_fields():
    assert [f.name for f in dataclasses.fields(Classification)] == ["index", "label", "score"]
    c = Classification(3, "bag", 0.5)
    assert (c.index, c.label, c.score) == (3, "bag", 0.5) and "index=3" in repr(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.score = 1.0  # type: ignore[misc]


def test_top_k_is_stable_on_ties_returns_at_least_one_and_refuses_empty_outputs():
    assert [c.index for c in top_k(np.array([0.2, 0.5, 0.5, 0.1]), k=3)] == [1, 2, 0]
    assert [c.index for c in top_k(np.array([0.2, 0.5]), k=0)] == [1]
    with pytest.raises(ModelError, match="empty"):
        top_k(np.zeros((1, 0)))


def _old_annotate(image, result, fps):
    """annotate() as it was before results drew themselves: the reference the new one must match."""
    out = image.copy()
    if isinstance(result, Detections):
        for (x0, y0, x1, y1), score, label in zip(result.boxes, result.scores, result.labels):
            p0, p1 = (int(x0), int(y0)), (int(x1), int(y1))
            cv2.rectangle(out, p0, p1, (0, 255, 0), 2)
            cv2.putText(out, f"{label} {score:.2f}", (p0[0], max(12, p0[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 255, 0), 1, cv2.LINE_AA)
    lines = [result.caption()] if isinstance(result, TopK) and result.classes else []
    lines.append(f"{fps:.1f} FPS")
    for i, text in enumerate(lines):
        cv2.putText(out, text, (8, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (8, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


@pytest.mark.parametrize("result", [
    TopK((Classification(3, "bag", 0.875), Classification(1, "shirt", 0.125))),
    TopK(()),
    Detections(np.array([[20, 30, 100, 90]], np.float32), np.array([0.9]), np.array([1]), ("car",)),
    RawOutputs(({"shape": [1, 4], "min": 0.0, "max": 1.0},)),
])
def test_results_draw_themselves_exactly_as_before(result):
    frame = np.full((120, 160, 3), 60, np.uint8)
    np.testing.assert_array_equal(annotate(frame, result, fps=12.5), _old_annotate(frame, result, 12.5))


def test_top_k_result_json_and_caption_are_unchanged():
    r = TopK(top_k(np.array([[0.125, 0.875, 0.025]]), ("a", "b"), k=2))
    assert r.to_dict() == {"type": "classification", "top": [{"class_id": 1, "label": "b", "score": 0.875},
                                                             {"class_id": 0, "label": "a", "score": 0.125}]}
    assert r.caption() == "b 0.88" and TopK(()).caption() == ""


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------
BUILTIN = ("classify, ssd, yolo, raw, ssd-anchors, mediapipe-face-short, mediapipe-face-full, mediapipe-palm, "
           "landmarks, mediapipe-face-landmark, mediapipe-hand-landmark, segment")

def test_a_registered_decoder_shows_up_everywhere_and_leaves_with_unregister(marker_decoder):
    assert get_decoder("marker") is marker_decoder and "marker" in decoder_names()
    assert "marker: a red square" in help_text()
    assert edgeq.metadata.TASKS == ("classify", "detect", "other", "landmarks", "segment", "mark")
    with pytest.raises(UsageError, match="already registered"):
        register(marker_decoder)
    unregister("marker")
    assert "marker" not in decoder_names()
    assert edgeq.metadata.TASKS == ("classify", "detect", "other", "landmarks", "segment")
    register(marker_decoder)  # back for the fixture's teardown


def test_unknown_names_list_the_registered_ones(marker_decoder):
    with pytest.raises(UsageError, match=f"unknown postprocess 'nope'; expected one of {BUILTIN}, marker"):
        get_decoder("nope")
    with pytest.raises(UsageError, match=f"{BUILTIN}, marker"):
        RunOptions(postprocess="nope")


def test_automatic_choice_follows_priority_and_fits():
    five = [(1, 4)] * 5
    assert choose_decoder(five).name == "raw"
    entry = register(Decoder("five-heads", "detect", "test", lambda s, t: None if len(s) == 5 else "not 5",
                             lambda outputs, ctx: RawOutputs(()), priority=5))
    try:
        assert choose_decoder(five) is entry
        assert choose_decoder([(1, 10)]).name == "classify"  # its check keeps it off other models
        raw = unregister("raw")
        try:
            with pytest.raises(ModelError, match="no registered decoder fits.*classify: expects one output"):
                choose_decoder([(1, 7, 7, 32), (1, 2)])
        finally:
            register(raw)
    finally:
        unregister("five-heads")
    assert sorted(decoder_names()) == sorted(BUILTIN.split(", "))  # raw went back in at the end


class AnnotatingSink(Sink):
    name = "annotating"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write(self, item) -> None:
        self.frames.append(annotate(item.image, item.result, item.fps))


def test_a_registered_decoder_is_selectable_and_drawn_with_no_other_change(marker_decoder, tmp_path):
    sink, jsonl = AnnotatingSink(), tmp_path / "r.jsonl"
    model = FakeModel([np.full((1, 10), 0.25)])
    r = Pipeline(model, ListSource(numbered_frames(3)), [sink, JsonLinesSink(jsonl)],
                 RunOptions(postprocess="marker", mode="every-frame")).run()
    assert r.postprocess == "marker" and r.frames_processed == 3
    assert all(tuple(f[-1, -1]) == (0, 0, 255) for f in sink.frames)  # drawn by Marker.draw
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["result"] for row in rows] == [Marker(0.25).to_dict()] * 3
    # Without the option the same model still gets the automatic choice.
    auto = Pipeline(model, ListSource(numbered_frames(1))).run()
    assert auto.postprocess == "classify"


# --------------------------------------------------------------------------------------------
# Stop reasons and warnings in the report
# --------------------------------------------------------------------------------------------
def test_stop_reasons_are_an_enum_serialised_as_the_same_strings():
    p = Pipeline(FakeModel([np.zeros((1, 10))]), ListSource(numbered_frames(2)))
    r = p.run()
    assert r.stop_reason is StopReason.END_OF_INPUT and r.stop_reason == "end_of_input"
    d = json.loads(json.dumps(r.to_dict()))
    assert d["stop_reason"] == "end_of_input" and d["warnings"] == []
    assert "stopped: end_of_input after" in format_report(r)
    with pytest.raises(UsageError, match="unknown stop reason 'bored'"):
        p.stop("bored")


def test_a_camera_that_ignores_the_requested_size_warns_in_the_report(tmp_path, monkeypatch):
    device = tmp_path / "video7"  # a device path that exists; the capture itself is the stand-in
    device.write_bytes(b"")
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture(640, 480, frames=4))
    src = CameraSource(str(device), SourceOptions(width=1280, height=720))
    r = Pipeline(FakeModel([np.zeros((1, 10))]), src, options=RunOptions(mode="every-frame")).run()
    expected = f"camera {device}: requested 1280x720, the driver gave 640x480"
    assert r.frames_processed == 4 and r.warnings == (expected,)
    assert r.to_dict()["warnings"] == [expected]


def test_unreadable_images_and_an_unwritten_video_warn_in_the_report(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    r = Pipeline(FakeModel([np.zeros((1, 10))]), ImageFolderSource(tmp_path)).run()
    assert r.frames_processed == 1 and r.frames_corrupt == 1
    assert r.warnings == (f"skipping unreadable image {tmp_path / 'b.jpg'}",)
