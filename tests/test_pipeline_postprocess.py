"""Postprocess decoders, stats arithmetic and the newest-frame slot, on constructed inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeq.errors import ModelError, UsageError
from edgeq.pipeline import (
    FrameContext,
    LatencyRecorder,
    LatestFrameSlot,
    RateMeter,
    choose_decoder,
    decode_ssd,
    decode_yolo,
    get_decoder,
    nms,
    rate,
    top_k,
)
from edgeq.pipeline.sources import Frame
from edgeq.preprocess import Preprocess


def letterbox_ctx(src_w=640, src_h=480, size=320, labels=("person", "car", "dog")):
    pre = Preprocess(height=size, width=size, resize="letterbox")
    transform, _, _ = pre.geometry(src_w, src_h)
    return FrameContext(transform, (src_w, src_h), (size, size), labels)


def test_top_k_orders_scores_and_names_labels():
    scores = np.array([[0.1, 0.7, 0.05, 0.15]], np.float32)
    c = top_k(scores, ("a", "b", "c"), k=3)
    assert tuple(x.index for x in c) == (1, 3, 0)
    assert tuple(x.label for x in c) == ("b", "3", "a")  # index without a label falls back to its number
    assert tuple(x.score for x in c) == pytest.approx((0.7, 0.15, 0.1))
    assert tuple(x.index for x in top_k(scores, k=10)) == (1, 3, 0, 2)


def test_letterbox_mapping_of_ssd_boxes_back_to_the_source():
    ctx = letterbox_ctx()  # 640x480 -> 320x240 content, padded 40 px top and bottom
    assert (ctx.transform.scale_x, ctx.transform.offset_y) == (0.5, 40)
    # A box covering source pixels x 100..300, y 50..250 sits at input x 50..150, y 65..165.
    boxes = np.array([[[65 / 320, 50 / 320, 165 / 320, 150 / 320], [0, 0, 1, 1]]], np.float32)
    det = decode_ssd(boxes, np.array([[2, 0]], np.float32), np.array([[0.9, 0.3]], np.float32),
                     np.array([2], np.float32), ctx, score_threshold=0.5)
    assert len(det) == 1 and det.labels == ("dog",)
    np.testing.assert_allclose(det.boxes[0], [100, 50, 300, 250], atol=1e-3)


def test_ssd_count_limits_detections_and_boxes_are_clipped():
    ctx = letterbox_ctx()
    boxes = np.array([[[0, 0, 1, 1], [0.2, 0.2, 0.4, 0.4]]], np.float32)
    det = decode_ssd(boxes, np.array([[0, 1]]), np.array([[0.9, 0.95]]), np.array([1.0]), ctx)
    assert len(det) == 1  # count says only the first is valid
    # The padded band (input y < 40) maps outside the source and is clipped to the frame.
    np.testing.assert_allclose(det.boxes[0], [0, 0, 640, 480], atol=1e-3)


def test_nms_suppresses_overlaps_within_a_class_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.5, class_ids=np.array([0, 0, 0, 1])).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5, max_detections=1).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_yolo_v5_rows_decoded_with_objectness_nms_and_letterbox():
    ctx = letterbox_ctx()
    # Rows: cx, cy, w, h (input pixels), objectness, 3 class scores.
    rows = np.array([
        [100, 115, 100, 100, 0.9, 0.1, 0.9, 0.0],   # car, input box 50..150 x 65..165
        [102, 117, 100, 100, 0.8, 0.1, 0.9, 0.0],   # duplicate of it, suppressed
        [250, 150, 40, 40, 0.9, 0.9, 0.0, 0.0],     # person
        [200, 200, 40, 40, 0.1, 0.0, 0.0, 0.9],     # low objectness: dropped by threshold
    ] + [[0] * 8] * 16, np.float32)[None]  # a real head has many more rows than values per row
    det = decode_yolo(rows, ctx, score_threshold=0.25, iou_threshold=0.5)
    assert det.labels == ("car", "person")
    np.testing.assert_allclose(det.boxes[0], [100, 50, 300, 250], atol=1e-3)
    assert det.scores[0] == pytest.approx(0.81)


def test_yolo_v8_transposed_normalised_layout():
    ctx = letterbox_ctx()
    # (1, 4 + C, N) with coordinates in 0..1 of the input, no objectness.
    cols = np.zeros((1, 7, 50), np.float32)
    cols[0, :4, 0] = [100 / 320, 115 / 320, 100 / 320, 100 / 320]
    cols[0, 4 + 1, 0] = 0.8
    det = decode_yolo(cols, ctx)
    assert len(det) == 1 and det.class_ids.tolist() == [1]
    np.testing.assert_allclose(det.boxes[0], [100, 50, 300, 250], atol=1e-2)


def test_bad_heads_and_names_give_clear_errors():
    ctx = letterbox_ctx()
    with pytest.raises(ModelError, match="YOLO output"):
        decode_yolo(np.zeros((2, 2, 2, 2)), ctx)
    with pytest.raises(ModelError, match="4 outputs"):
        get_decoder("ssd").decode([np.zeros((1, 4))], ctx)
    with pytest.raises(UsageError, match="expected one of classify, ssd, yolo, .*segment"):
        get_decoder("segmentation")


def test_decoder_chosen_from_output_shapes():
    assert choose_decoder([(1, 10)]).name == "classify"
    assert choose_decoder([(1, 10, 4), (1, 10), (1, 10), (1,)]).name == "ssd"
    assert choose_decoder([(1, 25200, 85)]).name == "yolo"
    assert choose_decoder([(1, 7, 7, 32)]).name == "raw"


def test_fps_counts_intervals_not_frames():
    assert rate(31, 10.0, 11.0) == pytest.approx(30.0)  # 31 frames over 1 s = 30 intervals
    assert math.isnan(rate(1, 10.0, 10.0))
    meter = RateMeter(window=10)
    for i in range(100):
        meter.tick(5.0 + i / 20)
    assert meter.fps == pytest.approx(20.0) and meter.recent_fps == pytest.approx(20.0)


def test_latency_recorder_is_exact_then_bounded():
    rec = LatencyRecorder(capacity=1000)
    values = np.arange(1, 101, dtype=float)
    for v in values:
        rec.add(v)
    d = rec.summary()
    assert (d.count, d.mean, d.max) == (100, pytest.approx(50.5), 100)
    assert d.p50 == pytest.approx(np.percentile(values, 50)) and d.p99 == pytest.approx(np.percentile(values, 99))
    for v in np.random.default_rng(0).uniform(0, 10, 20000):
        rec.add(v)
    assert len(rec._samples) == 1000 and rec.count == 20100  # memory stays bounded
    assert rec.summary().p50 == pytest.approx(5.0, abs=0.6)


def test_latest_slot_keeps_newest_counts_drops_and_never_repeats():
    slot = LatestFrameSlot()
    img = np.zeros((2, 2, 3), np.uint8)
    for seq in range(5):
        slot.put(Frame(img, seq, float(seq), 0.0))
    assert slot.take(0.01).seq == 4 and slot.dropped == 4
    assert slot.take(0.01) is None  # the same frame is never handed out twice
    slot.put(Frame(img, 5, 5.0, 0.0))
    slot.close()
    assert slot.take(0.01).seq == 5  # a frame put before close is still delivered
    end = slot.take(0.01)
    assert end is not None and not isinstance(end, Frame) and slot.take(0.01) is end  # then the end marker
