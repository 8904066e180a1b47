"""``edgeq eval --postprocess NAME``: what quantization costs a detector, a landmark model or a segmenter.

Every model's outputs go through the same registered decoder (``edgeq.postprocess``) on the same
preprocessed images; the decoded results are compared with labels or, unlabelled, with the float
reference's own results:

* detection: mAP@0.5 and mAP@0.5:0.95 by pycocotools' COCOeval (no hand-written mAP), against a COCO
  JSON or a YOLO txt folder, or against the reference's detections; plus matched-box IoU and score
  differences (greedy one-to-one matching at IoU >= 0.5, best scores first);
* landmarks: mean point error normalised by the size sqrt(w * h) of the reference points' bounding box;
* segmentation: mIoU over the classes present in either mask.

The JSON layout is the classification comparison's (``models``, ``comparisons``) plus a ``task`` field.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from ..postprocess import Detections, FrameContext, Landmarks, SegmentationMask, box_iou, resolve_decoder
from .data import EvalData, read_eval_data
from .evaluate import common_preprocess
from .labels import DetectionLabels, read_detection_labels, read_mask_labels
from .runners import TFLiteRunner


@dataclasses.dataclass(frozen=True)
class TaskReport:
    """Per-model metrics (reference first) and per-candidate comparisons, in the classification layout."""

    task: str
    postprocess: str
    data: str
    samples: int
    labelled: bool
    preprocess: Any
    models: tuple[dict[str, Any], ...]
    comparisons: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "postprocess": self.postprocess, "data": self.data, "samples": self.samples,
                "labelled": self.labelled, "preprocess": self.preprocess.to_dict(), "models": list(self.models),
                "comparisons": list(self.comparisons), "warnings": list(self.warnings)}


def coco_map(truth: Sequence[Detections], found: Sequence[Detections], class_agnostic: bool = False) -> dict[str, Any]:
    """mAP@0.5:0.95 and mAP@0.5 of ``found`` against ``truth`` (per image, same order) by pycocotools' COCOeval.

    None when the truth holds no box (COCO's -1: nothing to recall).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise UsageError("detection mAP needs pycocotools (pip install 'edgeq[eval]')") from exc

    def anns(dets: Sequence[Detections], with_score: bool) -> list[dict[str, Any]]:
        out = []
        for img, d in enumerate(dets):
            for box, score, cls in zip(d.boxes, d.scores, d.class_ids):
                x0, y0, x1, y1 = (float(v) for v in box)
                a = {"image_id": img, "category_id": 1 if class_agnostic else int(cls) + 1,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                     "id": len(out) + 1}
                if with_score:
                    a["score"] = float(score)
                out.append(a)
        return out

    gt_anns = anns(truth, False)
    if not gt_anns:
        return {"map50": None, "map50_95": None, "truth_boxes": 0}
    dt_anns = anns(found, True)
    cats = sorted({a["category_id"] for a in gt_anns + dt_anns})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports on stdout
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(len(truth))], "annotations": gt_anns,
                      "categories": [{"id": c} for c in cats]}
        gt.createIndex()
        if not dt_anns:
            return {"map50": 0.0, "map50_95": 0.0, "truth_boxes": len(gt_anns)}
        ev = COCOeval(gt, gt.loadRes(dt_anns), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map50": round(float(ev.stats[1]), 4), "map50_95": round(float(ev.stats[0]), 4),
            "truth_boxes": len(gt_anns)}


def matched_box_stats(ref: Sequence[Detections], cand: Sequence[Detections], iou: float = 0.5) -> dict[str, Any]:
    """Greedy one-to-one matching (candidate boxes best score first, same class, IoU >= ``iou``):
    mean/min IoU and mean/max |score difference| of the matches, the boxes left unmatched and, for heads
    with keypoints, their mean distance normalised by the size sqrt(w * h) of the reference box."""
    ious, diffs, kp_errs, unmatched_ref, unmatched_cand = [], [], [], 0, 0
    for r, c in zip(ref, cand):
        free = np.ones(len(r), bool)
        for j in np.argsort(-np.asarray(c.scores), kind="stable"):
            same = free & (np.asarray(r.class_ids) == c.class_ids[j])
            if not same.any():
                unmatched_cand += 1
                continue
            o = np.where(same, box_iou(np.asarray(c.boxes[j]), np.asarray(r.boxes).reshape(-1, 4)), -1.0)
            k = int(np.argmax(o))
            if o[k] < iou:
                unmatched_cand += 1
                continue
            free[k] = False
            ious.append(float(o[k]))
            diffs.append(abs(float(c.scores[j]) - float(r.scores[k])))
            if r.keypoints is not None and c.keypoints is not None and r.keypoints.shape[1]:
                x0, y0, x1, y1 = (float(v) for v in r.boxes[k])
                size = max(float(np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0))), 1e-6)
                kp_errs.append(float(np.mean(np.linalg.norm(c.keypoints[j] - r.keypoints[k], axis=-1))) / size)
        unmatched_ref += int(free.sum())
    return {"matched": len(ious), "unmatched_reference": unmatched_ref, "unmatched_candidate": unmatched_cand,
            "mean_iou": _sig(float(np.mean(ious))) if ious else None,
            "min_iou": _sig(float(np.min(ious))) if ious else None,
            "mean_abs_score_diff": _sig(float(np.mean(diffs))) if diffs else None,
            "max_abs_score_diff": _sig(float(np.max(diffs))) if diffs else None,
            **({"keypoint_nme": _sig(float(np.mean(kp_errs)))} if kp_errs else {})}


def landmark_error(ref: Sequence[Landmarks], cand: Sequence[Landmarks]) -> dict[str, Any]:
    """Mean point distance / sqrt(w * h) of the reference points' box, over images where both found points."""
    errs, missed = [], 0
    for r, c in zip(ref, cand):
        if len(r.points) == 0 or len(c.points) != len(r.points):
            missed += int(len(r.points) != len(c.points))
            continue
        w, h = np.ptp(r.points[:, 0]), np.ptp(r.points[:, 1])
        size = max(float(np.sqrt(w * h)), 1e-6)
        errs.append(float(np.mean(np.linalg.norm(c.points - r.points, axis=1))) / size)
    return {"nme": _sig(float(np.mean(errs))) if errs else None,
            "nme_max": _sig(float(np.max(errs))) if errs else None, "images": len(errs),
            "presence_disagreements": missed}


def mean_iou(ref: Sequence[SegmentationMask], cand: Sequence[SegmentationMask]) -> dict[str, Any]:
    """mIoU over the classes present (in either mask) anywhere in the data, from summed intersections/unions."""
    inter: dict[int, int] = {}
    union: dict[int, int] = {}
    for r, c in zip(ref, cand):
        for k in np.union1d(np.unique(r.mask), np.unique(c.mask)):
            a, b = r.mask == k, c.mask == k
            inter[int(k)] = inter.get(int(k), 0) + int(np.count_nonzero(a & b))
            union[int(k)] = union.get(int(k), 0) + int(np.count_nonzero(a | b))
    per = {k: inter[k] / union[k] for k in sorted(union) if union[k]}
    return {"miou": _sig(float(np.mean(list(per.values())))) if per else None,
            "class_iou": {str(k): _sig(v) for k, v in per.items()}}


def _sig(v: float) -> float:
    """4 significant digits: small differences stay visible (1.2e-07, not 0.0)."""
    return float(f"{v:.4g}")


def compare(task: str, ref: Sequence[Any], cand: Sequence[Any]) -> dict[str, Any]:
    """The task's metrics of ``cand`` results against ``ref`` results (per image, same order)."""
    if task == "detect":
        return {**coco_map(ref, cand), **matched_box_stats(ref, cand)}
    if task == "landmarks":
        return landmark_error(ref, cand)
    if task == "segment":
        return mean_iou(ref, cand)
    raise UsageError(f"edgeq eval --postprocess compares detect, landmarks and segment decoders; this one's task is "
                     f"{task!r} (classifiers are compared without --postprocess)")


def evaluate_task(reference: Any, candidates: Sequence[Any], data: EvalData | str | os.PathLike, *,
                  postprocess: str = "auto", postprocess_options: Mapping[str, Any] | None = None,
                  labels: str | os.PathLike | DetectionLabels | None = None,
                  preprocess_options: dict[str, Any] | None = None, delegates: Sequence[str] = ("xnnpack",),
                  num_threads: int | None = None, limit: int | None = None, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> TaskReport:
    """Decode REFERENCE's and CANDIDATES' outputs on DATA with one decoder and compare the results.

    delegates: one for every model, or one per model (reference first) - e.g. a float model on
    ("xnnpack", "cpu") measures what the delegate alone changes.
    """
    if not candidates:
        raise UsageError("give at least one CANDIDATE model to compare with the reference")
    models = [reference, *candidates]
    if len(delegates) not in (1, len(models)):
        raise UsageError(f"--delegate: give one delegate, or one per model ({len(models)}), got {len(delegates)}")
    dels = list(delegates) * len(models) if len(delegates) == 1 else list(delegates)
    dataset = (data if isinstance(data, EvalData) else read_eval_data(data)).subset(limit, seed)
    if len(dataset) == 0:
        raise DataError(f"evaluation data {dataset.source} is empty")
    runners = []
    try:
        for m, d in zip(models, dels):
            name = f"{m} [{d}]" if len(set(dels)) > 1 else None
            runners.append(TFLiteRunner.open(m, num_threads=num_threads, batch=1, name=name, delegate=d))
        return _run(runners, dataset, postprocess, postprocess_options, labels, preprocess_options, progress)
    finally:
        for r in runners:
            r.close()


def _run(runners: list[TFLiteRunner], dataset: EvalData, postprocess: str, options: Mapping[str, Any] | None,
         labels: Any, preprocess_options: dict[str, Any] | None,
         progress: Callable[[int, int], None] | None) -> TaskReport:
    warnings: list[str] = []
    pre = common_preprocess(runners, preprocess_options, warnings)
    ref = runners[0]
    meta = getattr(ref._model, "metadata", None)
    decoder = resolve_decoder([tuple(o.shape) for o in ref.outputs], getattr(meta, "task", None), postprocess,
                              options, embedded=getattr(meta, "postprocess", None) or None)
    if decoder.task not in ("detect", "landmarks", "segment"):
        compare(decoder.task, [], [])  # the error naming the tasks this compares
    for r in runners[1:]:
        if [tuple(o.shape) for o in r.outputs] != [tuple(o.shape) for o in ref.outputs]:
            raise UsageError(f"{r.path} has outputs {[list(o.shape) for o in r.outputs]} but the reference {ref.path} "
                             f"has {[list(o.shape) for o in ref.outputs]}; they cannot be compared")
    results: list[list[Any]] = [[] for _ in runners]
    names: list[str] = []
    for done, (i, img) in enumerate(dataset.images(), 1):
        pixels, transform = pre.to_pixels(img, dataset.input_color)
        ctx = FrameContext(transform, (img.shape[1], img.shape[0]), (pre.width, pre.height), ref.labels)
        for k, r in enumerate(runners):
            results[k].append(decoder.decode(r.predict(pixels[None], pre), ctx))
        item = dataset.items[i]
        names.append(os.path.basename(item) if isinstance(item, str) else str(i))
        if progress is not None:
            progress(done, len(dataset))
    truth = _truth(labels, decoder.task, names, dataset, results[0])
    model_rows = []
    for k, r in enumerate(runners):
        row: dict[str, Any] = {"path": r.path, "size_bytes": r.size_bytes, "samples": len(dataset)}
        if truth is not None:
            row.update(coco_map(truth, results[k]) if decoder.task == "detect" else mean_iou(truth, results[k]))
        model_rows.append(row)
    comps = tuple({"candidate": r.path, "reference": ref.path, **compare(decoder.task, results[0], results[k]),
                   "size_bytes": r.size_bytes,
                   "size_ratio": round(ref.size_bytes / r.size_bytes, 3) if r.size_bytes else None}
                  for k, r in enumerate(runners) if k)
    if truth is None:
        warnings.append(f"{dataset.source}: no labels given: candidates are scored against the reference's own "
                        "results")
    return TaskReport(decoder.task, decoder.name, dataset.source, len(dataset), truth is not None, pre,
                      tuple(model_rows), comps, tuple(warnings))


def _truth(labels: Any, task: str, names: list[str], dataset: EvalData, ref: list[Any]) -> list[Any] | None:
    """The labels as results of the task: boxes (COCO JSON / YOLO txt) or masks (a folder of PNGs); None without."""
    if labels is None:
        return None
    if task == "detect":
        lab = labels if isinstance(labels, DetectionLabels) else read_detection_labels(labels)
        return lab.for_images(names, _image_sizes(dataset))
    if task == "segment":
        return read_mask_labels(labels, names, [r.mask.shape for r in ref], binary=set(_classes(ref)) <= {0, 1})
    raise UsageError(f"--labels scores detectors (boxes) and segmenters (masks); {task} models are compared with "
                     "the reference")


def _classes(masks: list[Any]) -> set[int]:
    return {int(v) for m in masks for v in np.unique(m.mask)}


def _image_sizes(dataset: EvalData) -> list[tuple[int, int]]:
    return [(img.shape[1], img.shape[0]) for _, img in dataset.images()]


def format_task_report(r: TaskReport) -> str:
    """A table: per model its mAP against the labels (when labelled), per candidate its metrics vs the reference."""
    lines = [f"{r.samples} images from {r.data} ({'labelled' if r.labelled else 'unlabelled'}), task {r.task}, "
             f"decoder {r.postprocess}, preprocessing {r.preprocess.describe()}"]
    for m in r.models if r.labelled else ():
        if "map50" in m:
            lines.append(f"{m['path']}: mAP@0.5 {m['map50']}, mAP@0.5:0.95 {m['map50_95']} "
                         f"({m['truth_boxes']} labelled boxes)")
        else:
            lines.append(f"{m['path']}: mIoU {m['miou']} against the label masks")
    skip = {"candidate", "reference", "size_bytes", "size_ratio", "class_iou"}
    for c in r.comparisons:
        stats = ", ".join(f"{k} {v}" for k, v in c.items() if k not in skip)
        lines.append(f"{c['candidate']} vs {c['reference']}: {stats}")
    return "\n".join(lines)
