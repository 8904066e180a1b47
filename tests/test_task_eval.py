"""`edgeq eval --postprocess`: pycocotools' mAP on tiny sets with known answers, labels in COCO and YOLO form,
landmark error and mIoU, and the real face detector scored on real photos against eye-annotated boxes."""
from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest
from conftest import MEDIAPIPE, ROOT

from edgeq.accuracy.labels import read_detection_labels
from edgeq.accuracy.tasks import coco_map, evaluate_task, landmark_error, matched_box_stats, mean_iou
from edgeq.cli import main
from edgeq.errors import DataError, UsageError
from edgeq.postprocess import Detections, FrameContext, Landmarks, SegmentationMask, get_decoder
from edgeq.preprocess import Preprocess
from edgeq.runtime import load

pytest.importorskip("pycocotools", reason="detection mAP needs pycocotools (pip install 'edgeq[eval]')")
FACE_SHORT = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"


def det(*boxes, scores=None, classes=None):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores if scores is not None else [0.9] * len(b), np.float32)
    c = np.asarray(classes if classes is not None else [0] * len(b), np.int64)
    return Detections(b, s, c, tuple(str(int(i)) for i in c))


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------
def test_coco_map_known_answers():
    truth = [det([0, 0, 100, 100]), det([10, 10, 60, 60], [200, 200, 300, 300])]
    assert coco_map(truth, truth) == {"map50": 1.0, "map50_95": 1.0, "truth_boxes": 3}
    # IoU 0.6 exactly (a 100x60 box inside the 100x100 one): a hit at thresholds 0.50, 0.55, 0.60 of ten.
    shifted = [det([0, 0, 100, 60]), det([10, 10, 60, 60], [200, 200, 300, 300])]
    r = coco_map([truth[0]], [shifted[0]])
    assert r["map50"] == 1.0 and r["map50_95"] == pytest.approx(0.3, abs=1e-4)
    # One of two boxes found: precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points.
    r = coco_map([truth[1]], [det([10, 10, 60, 60])])
    assert r["map50"] == pytest.approx(51 / 101, abs=1e-4) and r["map50_95"] == pytest.approx(51 / 101, abs=1e-4)
    assert coco_map([truth[0]], [det()])["map50"] == 0.0  # nothing found
    assert coco_map([det()], [truth[0]])["map50"] is None  # nothing to find: COCO has no answer


def test_matched_box_stats_known_answer():
    ref = [det([0, 0, 100, 100], [200, 200, 300, 300], scores=[0.9, 0.8])]
    cand = [det([0, 0, 100, 60], [500, 500, 510, 510], scores=[0.7, 0.6])]
    s = matched_box_stats(ref, cand)
    assert (s["matched"], s["unmatched_reference"], s["unmatched_candidate"]) == (1, 1, 1)
    assert s["mean_iou"] == pytest.approx(0.6) and s["mean_abs_score_diff"] == pytest.approx(0.2, abs=1e-6)
    assert "keypoint_nme" not in s
    kp = np.array([[[10, 10], [20, 20]]], np.float32)
    ref = [Detections(np.array([[0, 0, 100, 100]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64),
                      ("face",), kp)]
    cand = [Detections(np.array([[0, 0, 100, 100]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64),
                       ("face",), kp + [[[3, 4], [0, 0]]])]
    assert matched_box_stats(ref, cand)["keypoint_nme"] == pytest.approx(2.5 / 100)  # (5 + 0) / 2 / sqrt(100 * 100)


def test_landmark_error_and_miou_known_answers():
    pts = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    ref = [Landmarks(pts, None, 1.0), Landmarks(pts, None, 1.0)]
    cand = [Landmarks(pts + [5, 0], None, 1.0), Landmarks(np.zeros((0, 2), np.float32), None, 0.1)]
    r = landmark_error(ref, cand)
    assert r["nme"] == pytest.approx(0.05) and r["images"] == 1 and r["presence_disagreements"] == 1
    a = np.zeros((10, 10), np.uint8)
    a[:, :5] = 1
    b = np.zeros((10, 10), np.uint8)
    b[:, :4] = 1
    r = mean_iou([SegmentationMask(a, ())], [SegmentationMask(b, ())])
    assert r["class_iou"] == {"0": pytest.approx(50 / 60, abs=1e-4), "1": pytest.approx(40 / 50)}
    assert r["miou"] == pytest.approx((50 / 60 + 40 / 50) / 2, abs=1e-4)


def test_yolo_txt_and_coco_labels_give_the_same_boxes(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "dir/a.png"}, {"id": 8, "file_name": "b.png"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [20, 10, 40, 20]}],
            "categories": [{"id": 3, "name": "face"}]}
    (tmp_path / "l.json").write_text(json.dumps(coco))
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "a.txt").write_text("0 0.4 0.2 0.4 0.2\n")  # 100x100 image: cx 40, cy 20, 40x20
    for src in (tmp_path / "l.json", tmp_path / "yolo"):
        dets = read_detection_labels(src).for_images(["a.png", "b.png"], [(100, 100), (50, 50)])
        np.testing.assert_allclose(dets[0].boxes, [[20, 10, 60, 30]], atol=1e-4)
        assert list(dets[0].class_ids) == [0] and len(dets[1]) == 0
    with pytest.raises(DataError, match="no entry for image c.png"):
        read_detection_labels(tmp_path / "l.json").for_images(["c.png"], [(1, 1)])
    (tmp_path / "yolo" / "bad.txt").write_text("0 0.4 0.2\n")
    with pytest.raises(DataError, match="bad.txt:1: expected 'class cx cy w h'"):
        read_detection_labels(tmp_path / "yolo")


# --------------------------------------------------------------------------------------------
# The real face detector on real photos
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_faces(tmp_path_factory):
    data = pytest.importorskip("skimage.data", reason="real photos come from scikit-image (pip install 'edgeq[eval]')")
    spec = importlib.util.spec_from_file_location("task_photos", ROOT / "examples" / "task_photos.py")
    photos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(photos)
    out = tmp_path_factory.mktemp("faces")
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    views = photos.labelled_views(astronaut)
    negatives = {n: cv2.cvtColor(getattr(data, n)(), cv2.COLOR_RGB2BGR) for n in photos.NO_FACE}
    for stem, img in {**{k: v for k, (v, _) in views.items()}, **negatives}.items():
        cv2.imwrite(str(out / f"{stem}.png"), np.ascontiguousarray(img))
    labels = out.parent / f"{out.name}.json"
    labels.write_text(json.dumps(photos.coco_labels(views, negatives)))
    return out, labels


def test_face_detector_scored_against_eye_annotated_boxes_and_across_delegates(labelled_faces):
    if not FACE_SHORT.is_file():
        pytest.skip(f"{FACE_SHORT} missing: .ci/setup unpacks MediaPipe's models")
    folder, labels = labelled_faces
    r = evaluate_task(FACE_SHORT, [FACE_SHORT], folder, postprocess="auto", labels=labels,
                      preprocess_options={"value_range": "-1,1", "resize": "letterbox"}, delegates=("xnnpack", "cpu"))
    d = r.to_dict()
    assert d["task"] == "detect" and d["postprocess"] == "mediapipe-face-short" and d["labelled"]
    assert d["samples"] == 18 and d["models"][0]["truth_boxes"] == 14
    # Measured: 13 of the 14 faces found (the 1024x512 padded view is missed), boxes IoU ~0.8 with the annotation.
    assert d["models"][0]["map50"] >= 0.9 and 0.5 < d["models"][0]["map50_95"] < 0.8
    c = d["comparisons"][0]
    assert c["candidate"].endswith("[cpu]") and c["reference"].endswith("[xnnpack]")
    assert c["map50"] == 1.0 and c["matched"] == 13 and c["min_iou"] > 0.999 and c["max_abs_score_diff"] < 1e-4


def test_eval_cli_writes_the_task_json(labelled_faces, tmp_path, capsys):
    if not FACE_SHORT.is_file():
        pytest.skip(f"{FACE_SHORT} missing")
    folder, labels = labelled_faces
    out = tmp_path / "e.json"
    args = ["eval", str(FACE_SHORT), str(FACE_SHORT), "--data", str(folder), "--range=-1,1", "--resize", "letterbox"]
    assert main([*args, "--postprocess", "mediapipe-face-short", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["task"] == "detect" and not d["labelled"] and d["comparisons"][0]["map50"] == 1.0
    assert set(d) >= {"data", "samples", "labelled", "preprocess", "models", "comparisons", "warnings"}
    assert "scored against the reference's own results" in capsys.readouterr().err
    assert main([*args, "--postprocess", "classify"]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert main([*args, "--labels", str(labels), "--delegate", "xnnpack", "--delegate", "cpu", "--delegate",
                 "cpu"]) == 2
    with pytest.raises(UsageError, match="one per model"):
        evaluate_task(FACE_SHORT, [FACE_SHORT], folder, delegates=("cpu", "cpu", "cpu"))


def test_segmentation_scored_against_label_masks(tmp_path):
    data = pytest.importorskip("skimage.data", reason="real photos come from scikit-image")
    model = MEDIAPIPE / "selfie_segmentation" / "selfie_segmentation.tflite"
    if not model.is_file():
        pytest.skip(f"{model} missing")
    images, masks = tmp_path / "img", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("astronaut", "chelsea"):
        cv2.imwrite(str(images / f"{name}.png"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    plain = evaluate_task(model, [model], images, postprocess="segment")
    assert plain.comparisons[0]["miou"] == 1.0 and not plain.labelled
    areas = []
    with load(model, preprocess=Preprocess(256, 256)) as m:  # the reference's own masks, written as labels
        for name in ("astronaut", "chelsea"):
            img = cv2.imread(str(images / f"{name}.png"))
            x, t = m.prepare_with_transform(img)
            seg = get_decoder("segment").decode(m.dequantize(m.run(x)),
                                                FrameContext(t, (img.shape[1], img.shape[0]), (256, 256)))
            cv2.imwrite(str(masks / f"{name}.png"), seg.mask * 255)
            areas.append(seg.mask.sum())
    r = evaluate_task(model, [model], images, postprocess="segment", labels=masks)
    assert r.labelled and r.models[0]["miou"] == 1.0 and r.models[1]["miou"] == 1.0
    for name in ("astronaut", "chelsea"):  # labels without foreground: the foreground class scores 0
        cv2.imwrite(str(masks / f"{name}.png"), np.zeros(cv2.imread(str(images / f"{name}.png")).shape[:2], np.uint8))
    r = evaluate_task(model, [model], images, postprocess="segment", labels=masks)
    total = sum(cv2.imread(str(images / f"{n}.png")).shape[0] * cv2.imread(str(images / f"{n}.png")).shape[1]
                for n in ("astronaut", "chelsea"))
    assert r.models[0]["class_iou"]["1"] == 0.0
    assert r.models[0]["miou"] == pytest.approx((1 - sum(areas) / total) / 2, abs=1e-3)
    (masks / "chelsea.png").unlink()
    with pytest.raises(DataError, match="no readable label mask for image chelsea.png"):
        evaluate_task(model, [model], images, postprocess="segment", labels=masks)
