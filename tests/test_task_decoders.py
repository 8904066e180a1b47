"""Anchor-SSD, landmark and segmentation decoders: hand-made outputs with known answers, MediaPipe's real
models on real photos (scikit-image's bundled samples), refusals, presets, auto choice and declared decoders."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest
from conftest import MEDIAPIPE

from edgeq.cli import main
from edgeq.errors import ModelError, UsageError
from edgeq.metadata import EdgeqMetadata, read_metadata, with_edgeq_metadata
from edgeq.modelinfo import inspect_model
from edgeq.postprocess import (
    FrameContext,
    auto_decoder,
    box_iou,
    decoder_names,
    get_decoder,
    resolve_decoder,
)
from edgeq.postprocess.anchors import ssd_anchors, weighted_nms
from edgeq.preprocess import FrameTransform, Preprocess

FACE_SHORT = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"
FACE_BOX = (180, 78, 270, 186)  # the astronaut's face, annotated by eye (examples/task_photos.py)
FACE_PRE = Preprocess(128, 128, "RGB", "letterbox", (127.5,), (127.5,))  # face_detection.pbtxt: [-1, 1], keep aspect


def _needs(path):
    if not path.is_file():
        pytest.skip(f"{path} missing: .ci/setup unpacks MediaPipe's models from the mediapipe 0.10.14 wheel")
    return path


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data", reason="real photos come from scikit-image (pip install 'edgeq[eval]')")
    return {n: cv2.cvtColor(getattr(data, n)(), cv2.COLOR_RGB2BGR) for n in ("astronaut", "chelsea", "coffee")}


def _ctx(pre: Preprocess, img: np.ndarray) -> tuple[np.ndarray, FrameContext]:
    pixels, t = pre.to_pixels(img)
    return pixels, FrameContext(t, (img.shape[1], img.shape[0]), (pre.width, pre.height))


def _run(model_path, pre: Preprocess, img: np.ndarray, decoder: str, **options):
    from edgeq.runtime import load

    with load(model_path, preprocess=pre) as m:
        x, t = m.prepare_with_transform(img, "BGR")
        outs = m.dequantize(m.run(x))
    ctx = FrameContext(t, (img.shape[1], img.shape[0]), (pre.width, pre.height))
    return get_decoder(decoder).configure(options).decode(outs, ctx)


# --------------------------------------------------------------------------------------------
# Anchors and box decoding: known answers
# --------------------------------------------------------------------------------------------
def test_anchor_counts_and_grid_match_mediapipe_configs():
    short = ssd_anchors((128, 128), (8, 16, 16, 16))
    assert len(short) == 896  # face_detection_short_range.pbtxt num_boxes
    assert len(ssd_anchors((192, 192), (4,), interpolated_scale_aspect_ratio=0.0)) == 2304  # full range
    assert len(ssd_anchors((192, 192), (8, 16, 16, 16))) == 2016  # palm_detection_cpu.pbtxt num_boxes
    # Layer 0: 16x16 cells, 2 anchors per cell (aspect 1 + interpolated) sharing a centre; fixed size 1x1.
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(short[1], short[0])
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16, 1, 1])
    # Layers 1-3 share stride 16: 6 anchors per cell of an 8x8 map, starting after 512.
    np.testing.assert_allclose(short[512:518, :2], [[0.5 / 8, 0.5 / 8]] * 6)
    sized = ssd_anchors((128, 128), (8,), min_scale=0.2, max_scale=0.8, fixed_anchor_size=False)
    np.testing.assert_allclose(sized[0, 2:], [0.5, 0.5])  # one layer: scale (min+max)/2
    np.testing.assert_allclose(sized[1, 2:], [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)  # interpolated to 1.0


def test_hand_made_regressors_decode_to_the_known_box_and_keypoints_through_a_letterbox():
    dec = get_decoder("mediapipe-face-short")
    anchors = ssd_anchors((128, 128), (8, 16, 16, 16))
    reg = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), -20.0, np.float32)
    a = 300  # anchor centre (x, y) = anchors[a, :2]; the box: centre +8 px, +4 px; 32 x 16 px
    reg[0, a, :4] = [8, 4, 32, 16]
    reg[0, a, 4:6] = [-10, 2]  # keypoint 0 relative to the anchor centre
    logits[0, a, 0] = 2.0
    # A 256x128 frame letterboxed into 128x128: scale 0.5, 32 px bars at top and bottom.
    ctx = FrameContext(FrameTransform(0.5, 0.5, 0.0, 32.0), (256, 128), (128, 128))
    det = dec.decode([reg, logits], ctx)
    cx, cy = anchors[a, 0] * 128 + 8, anchors[a, 1] * 128 + 4
    want = np.array([cx - 16, cy - 8 - 32, cx + 16, cy + 8 - 32]) * 2
    np.testing.assert_allclose(det.boxes[0], np.clip(want, 0, [256, 128, 256, 128]), atol=1e-3)
    assert det.scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6) and det.labels == ("face",)
    np.testing.assert_allclose(det.keypoints[0, 0], [(anchors[a, 0] * 128 - 10) * 2,
                                                     (anchors[a, 1] * 128 + 2 - 32) * 2], atol=1e-3)
    assert len(det) == 1 and det.to_dict()["detections"][0]["keypoints"][0] == [
        round(float(v), 2) for v in det.keypoints[0, 0]]


def test_weighted_nms_averages_the_overlapping_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    kps = np.zeros((3, 1, 2), np.float32)
    kps[:, 0] = [[0, 0], [4, 4], [55, 55]]
    b, s, k = weighted_nms(boxes, scores, kps, 0.3, 10)
    np.testing.assert_allclose(b[0], [0.25, 0.25, 10.25, 10.25])  # (0.9*0 + 0.3*1) / 1.2
    np.testing.assert_allclose(s, [0.9, 0.8])  # the best box's score stays
    np.testing.assert_allclose(k[0, 0], [1.0, 1.0])
    np.testing.assert_allclose(b[1], boxes[2])


# --------------------------------------------------------------------------------------------
# Real models on real photos
# --------------------------------------------------------------------------------------------
def test_face_detector_finds_the_astronauts_face_with_its_keypoints_and_nothing_on_a_cat(photos):
    det = _run(_needs(FACE_SHORT), FACE_PRE, photos["astronaut"], "mediapipe-face-short")
    assert len(det) == 1 and det.scores[0] > 0.8
    assert box_iou(np.asarray(FACE_BOX, np.float32), det.boxes)[0] > 0.7
    eyes = det.keypoints[0, :2]  # MediaPipe's keypoint order: right eye, left eye, nose, mouth, ears
    assert eyes[0, 0] < eyes[1, 0] and np.all((eyes[:, 1] > 90) & (eyes[:, 1] < 115))
    assert len(_run(FACE_SHORT, FACE_PRE, photos["chelsea"], "mediapipe-face-short")) == 0
    lenient = _run(FACE_SHORT, FACE_PRE, photos["astronaut"], "mediapipe-face-short", score_threshold="0.01",
                   nms="greedy")
    assert len(lenient) >= 1  # options reach the decoder


def test_face_mesh_points_land_on_the_face_and_hand_model_reports_no_hand(photos):
    crop = photos["astronaut"][59:205, 152:298]  # the face box enlarged 1.5x, as MediaPipe's graph crops it
    lm = _run(_needs(MEDIAPIPE / "face_landmark" / "face_landmark.tflite"), Preprocess(192, 192), crop,
              "mediapipe-face-landmark")
    assert lm.presence > 0.9 and lm.points.shape == (468, 2) and len(lm.z) == 468
    inside = (lm.points[:, 0] > 15) & (lm.points[:, 0] < 135) & (lm.points[:, 1] > 10) & (lm.points[:, 1] < 140)
    assert inside.mean() > 0.98
    hand = _run(_needs(MEDIAPIPE / "hand_landmark" / "hand_landmark_lite.tflite"), Preprocess(224, 224), crop,
                "mediapipe-hand-landmark")
    assert hand.presence < 0.5 and len(hand.points) == 0 and hand.to_dict()["points"] == []


def test_selfie_mask_covers_the_person_and_maps_back_onto_a_wide_frame(photos):
    wide = cv2.copyMakeBorder(photos["astronaut"], 0, 0, 256, 256, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    seg = _run(_needs(MEDIAPIPE / "selfie_segmentation" / "selfie_segmentation.tflite"), Preprocess(256, 256), wide,
               "segment")
    assert seg.mask.shape == wide.shape[:2]
    assert seg.mask[130, 256 + 225] == 1 and seg.mask[400, 256 + 300] == 1  # face, suit
    assert seg.mask[:, :200].sum() == 0 and seg.mask[20:60, 256 + 470:256 + 500].sum() == 0  # bars, backdrop
    d = seg.to_dict()
    assert 0.2 < d["area"] < 0.45 and d["class_share"]["foreground"] == pytest.approx(d["area"])


# --------------------------------------------------------------------------------------------
# Hand-made landmark and mask outputs
# --------------------------------------------------------------------------------------------
def test_landmarks_map_back_through_a_centre_crop_and_refuse_bad_presence():
    pts = np.array([[10, 20, 0.5], [100, 50, -1]], np.float32).reshape(1, 6)
    dec = get_decoder("landmarks").configure({"num_points": "2", "presence_output": "1"})
    ctx = FrameContext(FrameTransform(0.5, 0.5, -20.0, 0.0), (400, 256), (128, 128))
    lm = dec.decode([pts, np.array([[0.9]], np.float32)], ctx)
    np.testing.assert_allclose(lm.points, [[60, 40], [240, 100]])
    np.testing.assert_allclose(lm.z, [0.5, -1])
    with pytest.raises(ModelError, match="presence score 3.*outside \\[0, 1\\]"):
        dec.decode([pts, np.array([[3.0]], np.float32)], ctx)


def test_masks_argmax_and_probability_resized_to_the_frame():
    ctx = FrameContext(FrameTransform(0.5, 0.5, 0.0, 0.0), (32, 32), (16, 16))
    prob = np.zeros((1, 16, 16, 1), np.float32)
    prob[0, :, :8] = 0.9
    seg = get_decoder("segment").decode([prob], ctx)
    assert seg.mask.shape == (32, 32) and seg.mask[:, :15].all() and not seg.mask[:, 17:].any()
    assert seg.to_dict()["class_share"] == {"background": 0.5, "foreground": 0.5}
    scores = np.zeros((1, 16, 16, 3), np.float32)
    scores[0, :8, :, 2] = 1
    scores[0, 8:, :, 1] = 1
    seg = get_decoder("segment").decode([scores], ctx)
    assert set(np.unique(seg.mask[:16])) == {2} and set(np.unique(seg.mask[16:])) == {1}
    with pytest.raises(ModelError, match="outside \\[0, 1\\].*activation=sigmoid"):
        get_decoder("segment").decode([prob * 10], ctx)
    logits = get_decoder("segment").configure({"activation": "sigmoid"}).decode([prob * 10 - 5], ctx)
    assert logits.mask[:, :15].all()


# --------------------------------------------------------------------------------------------
# Refusals, options, auto
# --------------------------------------------------------------------------------------------
MISFITS = {
    "mediapipe-face-short": [(1, 2304, 16), (1, 2304, 1)],  # anchor count of the full-range model
    "mediapipe-face-full": [(1, 896, 16), (1, 896, 1)],
    "mediapipe-palm": [(1, 2016, 16), (1, 2016, 1)],  # 6 keypoints, not 7
    "ssd-anchors": [(1, 896, 16), (1, 896, 1)],  # no anchor options
    "landmarks": [(1, 63), (1, 1)],  # no num_points
    "mediapipe-face-landmark": [(1, 63), (1, 1), (1, 1), (1, 63)],
    "mediapipe-hand-landmark": [(1, 1, 1, 1404), (1, 1, 1, 1)],
    "segment": [(1, 896, 16), (1, 896, 1)],
    "yolo": [(1, 896, 16), (1, 896, 1)],
    "ssd": [(1, 896, 16), (1, 896, 1)],
    "classify": [(1, 896, 16), (1, 896, 1)],
}


@pytest.mark.parametrize("name", sorted(MISFITS))
def test_every_decoder_refuses_outputs_that_do_not_fit(name):
    shapes = MISFITS[name]
    reason = get_decoder(name).fits(shapes, None)
    assert reason and any(word in reason for word in ("expects", "needs", "anchor"))
    with pytest.raises(ModelError, match=f"decoder '{name}' does not fit the model's outputs"):
        resolve_decoder(shapes, None, name)


def test_yolo_on_a_face_detector_and_scores_past_one_are_errors_not_boxes():
    with pytest.raises(ModelError, match="'yolo' does not fit.*expects one output"):
        resolve_decoder([(1, 896, 16), (1, 896, 1)], None, "yolo")
    rows = np.zeros((1, 10, 6), np.float32)
    rows[0, :, :4] = [10, 10, 5, 5]
    rows[0, :, 4] = 40.0  # objectness logits, not probabilities
    rows[0, :, 5] = 25.0
    ctx = FrameContext(FrameTransform(1, 1, 0, 0), (64, 64), (64, 64))
    with pytest.raises(ModelError, match="yolo: decoded scores span \\[1000, 1000\\], outside \\[0, 1\\]"):
        get_decoder("yolo").decode([rows], ctx)
    reg, logits = np.zeros((1, 896, 16), np.float32), np.full((1, 896, 1), 7.0, np.float32)
    with pytest.raises(ModelError, match="outside \\[0, 1\\].*sigmoid"):
        get_decoder("mediapipe-face-short").configure({"score_activation": "none"}).decode([reg, logits], ctx)


def test_options_are_typed_checked_and_listed():
    d = get_decoder("mediapipe-palm").configure({"score_threshold": "0.7", "nms": "greedy"})
    assert d.settings_dict()["score_threshold"] == 0.7 and d.settings_dict()["strides"] == [8, 16, 16, 16]
    with pytest.raises(UsageError, match="has no option\\(s\\) \\['strid'\\]; valid: input_size \\(ints\\)"):
        get_decoder("mediapipe-palm").configure({"strid": "8"})
    with pytest.raises(UsageError, match="score_threshold='high'.*expected float"):
        get_decoder("yolo").configure({"score_threshold": "high"})
    with pytest.raises(UsageError, match="raw takes no options"):
        get_decoder("raw").configure({"x": "1"})
    custom = get_decoder("ssd-anchors").configure({"strides": "8,16,16,16", "num_keypoints": "6",
                                                   "input_size": "128,128"})
    assert custom.fits([(1, 896, 16), (1, 896, 1)], None) is None


AUTO = {
    "face_detection/face_detection_short_range": "mediapipe-face-short",
    "face_detection/face_detection_full_range_sparse": "mediapipe-face-full",
    "palm_detection/palm_detection_lite": "mediapipe-palm",
    "palm_detection/palm_detection_full": "mediapipe-palm",
    "face_landmark/face_landmark": "mediapipe-face-landmark",
    "hand_landmark/hand_landmark_lite": "mediapipe-hand-landmark",
    "hand_landmark/hand_landmark_full": "mediapipe-hand-landmark",
    "selfie_segmentation/selfie_segmentation": "segment",
    "selfie_segmentation/selfie_segmentation_landscape": "segment",
    "pose_detection/pose_detection": None,  # 2254 anchors x 12: no preset; refused with every reason
    "pose_landmark/pose_landmark_full": None,
    "iris_landmark/iris_landmark": None,
}


@pytest.mark.parametrize("model", sorted(AUTO))
def test_auto_picks_the_one_decoder_that_fits_each_mediapipe_model_or_refuses(model):
    shapes = [o.shape for o in inspect_model(_needs(MEDIAPIPE / f"{model}.tflite")).outputs]
    if AUTO[model] is None:
        with pytest.raises(ModelError, match="no decoder fits.*mediapipe-face-short: .*segment: "):
            auto_decoder(shapes)
    else:
        assert auto_decoder(shapes).name == AUTO[model]


def test_default_choice_leaves_generic_masks_to_auto_names_and_metadata():
    from edgeq.postprocess import choose_decoder

    depth_like = [(1, 256, 256, 1)]
    assert choose_decoder(depth_like).name == "raw"  # a depth map has this shape too
    assert choose_decoder(depth_like, "segment").name == "segment"  # a model declared a segmenter
    assert auto_decoder(depth_like).name == "segment" and resolve_decoder(depth_like, None, "auto").name == "segment"
    assert choose_decoder([(1, 896, 16), (1, 896, 1)]).name == "mediapipe-face-short"  # exact presets are taken


def test_auto_refuses_when_several_fit():
    from edgeq.postprocess import Decoder, register, unregister

    register(Decoder("face-twin", "detect", "test", lambda s, t: None if len(s) == 2 else "no",
                     lambda o, c: None, priority=36))
    try:
        with pytest.raises(ModelError, match="2 decoders fit outputs .* \\(mediapipe-face-short, face-twin\\)"):
            auto_decoder([(1, 896, 16), (1, 896, 1)])
    finally:
        unregister("face-twin")
    assert "face-twin" not in decoder_names()


# --------------------------------------------------------------------------------------------
# Declared in the model: metadata, convert's declaration, run without flags
# --------------------------------------------------------------------------------------------
def test_declared_decoder_is_validated_embedded_and_used_by_run(photos, tmp_path, capsys):
    from edgeq.convert.plan import declared_postprocess

    declared = declared_postprocess("mediapipe-face-short", {"score_threshold": "0.6"})
    assert declared == {"name": "mediapipe-face-short", "options": {"score_threshold": 0.6}}
    with pytest.raises(UsageError, match="no option"):
        declared_postprocess("mediapipe-face-short", {"nope": "1"})
    with pytest.raises(UsageError, match="name the decoder to embed"):
        declared_postprocess("auto", None)
    meta = EdgeqMetadata(preprocess=FACE_PRE, task="detect", postprocess=declared)
    model = tmp_path / "face.tflite"
    model.write_bytes(with_edgeq_metadata(_needs(FACE_SHORT).read_bytes(), meta))
    assert read_metadata(model.read_bytes()).postprocess == declared
    for bad in ({"name": 3}, {"name": "x", "extra": 1}, {"name": "x", "options": {"k": {"a": 1}}}):
        with pytest.raises(ValueError):
            EdgeqMetadata.from_dict({**meta.to_dict(), "postprocess": bad})
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, img in photos.items():
        cv2.imwrite(str(folder / f"{name}.png"), img)
    lines, video = tmp_path / "r.jsonl", tmp_path / "r.avi"
    assert main(["run", str(model), "-s", str(folder), "--jsonl", str(lines), "-o", str(video)]) == 0
    assert "postprocess mediapipe-face-short" in capsys.readouterr().err
    rows = {json.loads(x)["seq"]: json.loads(x)["result"] for x in lines.read_text().splitlines()}
    faces = [r["detections"] for r in rows.values() if r["detections"]]
    assert len(faces) == 1 and len(faces[0]) == 1 and len(faces[0][0]["keypoints"]) == 6
    assert video.stat().st_size > 0
    assert main(["run", str(model), "-s", str(folder), "--postprocess", "yolo"]) == 1
    assert "'yolo' does not fit" in capsys.readouterr().err


def _examples():
    spec = importlib.util.spec_from_file_location("task_photos", MEDIAPIPE.parents[2] / "examples" / "task_photos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_cli_options_and_auto(photos, tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photos["astronaut"])
    lines = tmp_path / "a.jsonl"
    args = ["run", str(_needs(FACE_SHORT)), "-s", str(folder), "--range=-1,1", "--resize", "letterbox"]
    assert main([*args, "--postprocess", "auto", "--jsonl", str(lines)]) == 0
    assert "postprocess mediapipe-face-short" in capsys.readouterr().err
    assert main([*args, "--postprocess", "mediapipe-face-short", "--postprocess-option", "score_threshold=0.99"]) == 0
    assert main([*args, "--postprocess", "mediapipe-face-short", "--postprocess-option", "bogus=1"]) == 2
    assert "no option(s) ['bogus']" in capsys.readouterr().err
    assert main([*args, "--postprocess-option", "score_threshold=0.5"]) == 2
    assert "needs --postprocess NAME" in capsys.readouterr().err


def test_predict_decodes_with_the_declared_decoder(photos, tmp_path):
    import edgeq

    meta = EdgeqMetadata(preprocess=FACE_PRE, task="detect", postprocess={"name": "mediapipe-face-short",
                                                                          "options": {}})
    model = tmp_path / "face.tflite"
    model.write_bytes(with_edgeq_metadata(_needs(FACE_SHORT).read_bytes(), meta))
    with edgeq.load(model) as m:
        faces = m.predict(photos["astronaut"])
        assert len(faces) == 1 and box_iou(np.asarray(FACE_BOX, np.float32), faces.boxes)[0] > 0.7
        assert [len(r) for r in m.predict([photos["chelsea"], photos["astronaut"]])] == [0, 1]


@pytest.mark.convert
def test_convert_embeds_a_declared_decoder_only_when_it_fits(tmp_path):
    from conftest import BUNDLED_KERAS, CALIBRATION_DIR

    import edgeq

    with pytest.raises(UsageError, match="--postprocess yolo does not fit the converted model's outputs"):
        edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "y.tflite"), num_samples=10,
                      postprocess="yolo")
    assert not (tmp_path / "y.tflite").exists()
    out = tmp_path / "c.tflite"
    edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(out), num_samples=10, task=None,
                  postprocess="classify")
    meta = read_metadata(out.read_bytes())
    assert meta.postprocess == {"name": "classify", "options": {}} and meta.task == "classify"


def test_tf_od_api_layout_yx_order_exponential_sizes_and_sized_anchors():
    """y, x, h, w regressors with exp sizes against non-fixed anchors (TF Object Detection API heads)."""
    dec = get_decoder("ssd-anchors").configure({"strides": "32", "input_size": "64,64", "fixed_anchor_size": "false",
                                                "interpolated_scale_aspect_ratio": "0", "yx_order": "true",
                                                "exp_box_size": "true", "box_scale": "10,10,5,5", "nms": "greedy"})
    anchors = ssd_anchors((64, 64), (32,), interpolated_scale_aspect_ratio=0.0, fixed_anchor_size=False)
    assert anchors.shape == (4, 4) and np.allclose(anchors[:, 2:], 0.44921875)  # (0.1484375 + 0.75) / 2
    reg = np.zeros((1, 4, 4), np.float32)
    reg[0, 3] = [1.0, 2.0, 0.0, 5.0]  # dy=1, dx=2 (x scale 10), h = exp(0) * a, w = exp(1) * a
    logits = np.full((1, 4, 1), -9.0, np.float32)
    logits[0, 3] = 3.0
    det = dec.decode([reg, logits], FrameContext(FrameTransform(1, 1, 0, 0), (64, 64), (64, 64)))
    a = anchors[3]
    cx, cy = (2 / 10 * a[2] + a[0]) * 64, (1 / 10 * a[3] + a[1]) * 64
    w, h = np.e * a[2] * 64, a[3] * 64
    np.testing.assert_allclose(det.boxes[0], np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 64),
                               rtol=1e-5)
    assert len(det) == 1 and det.keypoints.shape == (1, 0, 2)
    weighted = dec.configure({"nms": "weighted"}).decode([reg, logits], FrameContext(FrameTransform(1, 1, 0, 0),
                                                                                     (64, 64), (64, 64)))
    np.testing.assert_allclose(weighted.boxes, det.boxes)
    assert weighted.keypoints.shape == (1, 0, 2)


def test_segment_names_its_output_among_several():
    shapes = [(1, 64, 64, 1), (1, 1)]
    assert "expects one output" in get_decoder("segment").fits(shapes, None)
    assert get_decoder("segment").configure({"output": "0"}).fits(shapes, None) is None
