"""The demo's detector step: MediaPipe's trained float face detector, quantized to int8 by edgeq and run
through the camera pipeline on real photos, boxes and keypoints drawn.

The detector (``face_detection_short_range.tflite``) comes from the mediapipe 0.10.14 wheel, unpacked by
``.ci/setup``; it runs on scikit-image's sample photos (the astronaut portrait is NASA's, public domain) in
a few framings, two without a face. It is calibrated on closer views of that face in other lightings and
one photo without a face, never the photos it then runs on. What it is calibrated on matters: on footage
without faces (vtest.avi) the score output never sees a positive logit, its int8 range tops out at
sigmoid(0) = 0.5 and a cat passes as a face; a photo of the astronaut's suit alone drives the score logits
to -23000 and spends the whole int8 range on them. Without the model or the extras the step is skipped,
and the demo says why.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

MEDIAPIPE = pathlib.Path(os.environ.get("EDGEQ_MEDIAPIPE", pathlib.Path(__file__).resolve().parent.parent / ".data"
                                        / "mediapipe" / "modules"))
FACE_MODEL = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"
PREPROCESS = {"value_range": "-1,1", "resize": "letterbox"}  # BlazeFace: RGB in [-1, 1], aspect kept
DECODER = "mediapipe-face-short"
FACE_BOX = (180, 78, 270, 186)  # x0, y0, x1, y1 of the face in skimage's 512x512 astronaut portrait (by eye)


def detector_paths(out_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
    out = pathlib.Path(out_dir)
    return {"detector": out / "face_detector_int8.tflite", "detector recipe": out / "face_detector_int8.recipe.json",
            "faces video": out / "faces.mp4", "faces results": out / "faces.jsonl", "faces": out / "faces",
            "calibration faces": out / "faces_calibration"}


def unavailable_reason() -> str | None:
    """Why the detector step cannot run here, or None."""
    if not FACE_MODEL.is_file():
        return f"{FACE_MODEL} is missing (bash .ci/setup unpacks MediaPipe's models)"
    for module, extra in (("ai_edge_quantizer", "tflite"), ("skimage", "eval")):
        if importlib.util.find_spec(module) is None:
            return f"it needs {module} (pip install 'edgeq[{extra}]')"
    return None


def _views(calibration: bool) -> list[Any]:
    """The run set: the portrait in six framings and two photos without a face (a cup, a cat). The
    calibration set: closer views of the face in other lightings, and another photo without a face."""
    import cv2
    import numpy as np
    from skimage import data

    img = data.astronaut()
    if calibration:  # close views of the face (as in the detector's training data), in other lightings
        views = []
        for grow, light in ((1.5, 1.0), (2.0, 0.7), (2.5, 1.25), (3.0, 1.0), (1.8, 0.85), (2.2, 1.1)):
            x0, y0, x1, y1 = FACE_BOX
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, grow * max(x1 - x0, y1 - y0) / 2
            crop = img[max(0, int(cy - half)):int(cy + half), max(0, int(cx - half)):int(cx + half)]
            views.append(np.clip(crop.astype(np.float32) * light, 0, 255).astype(np.uint8))
        # one photo without a face: the astronaut's suit alone drives the score logits to -23000 and would
        # take the whole int8 range of the score output
        return views + [data.rocket()]
    return [img, img[:, ::-1], img[0:384, 64:448], img[20:276, 100:356], cv2.resize(img, (256, 256)),
            img[40:420, 10:470], data.coffee(), data.chelsea()]


def write_face_photos(folder: pathlib.Path, force: bool, calibration: bool = False) -> int:
    """Eight real photos into ``folder`` (the run set, or the calibration set: see ``_views``)."""
    import cv2

    from .fileio import write_bytes_atomic

    views = _views(calibration)
    folder.mkdir(parents=True, exist_ok=True)
    for i, view in enumerate(views):
        ok, png = cv2.imencode(".png", cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
        write_bytes_atomic(folder / f"photo_{i:02d}.png", png.tobytes(), exclusive=not force)
    return len(views)


def run_detector(paths: dict[str, pathlib.Path], force: bool,
                 info: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any], int, list[str]]:
    """Convert, then run on the photos: (conversion JSON, run JSON, faces found, warnings)."""
    from .convert.converter import convert
    from .fileio import to_jsonable
    from .pipeline import JsonLinesSink, Pipeline, RunOptions, VideoSink, open_source
    from .runtime import load

    write_face_photos(paths["calibration faces"], force, calibration=True)
    info(f"quantizing MediaPipe's float face detector to int8, calibrated on 7 other real photos "
         f"-> {paths['detector']}")
    conv = convert(str(FACE_MODEL), str(paths["calibration faces"]), str(paths["detector"]), recipe="int8",
                   preprocess_options=PREPROCESS, postprocess=DECODER, task="detect", force=force)
    info(f"    {conv.size_bytes / 1024:.1f} KiB, full integer: {conv.report.full_integer}, {conv.seconds:.1f} s")
    n = write_face_photos(paths["faces"], force)
    info(f"running it on {n} real photos -> {paths['faces video']} (boxes and keypoints drawn)")
    sinks = [VideoSink(paths["faces video"], fps=2.0, overwrite=force),
             JsonLinesSink(paths["faces results"], overwrite=force)]
    with load(str(paths["detector"]), delegate="auto") as model:
        report = Pipeline(model, open_source(str(paths["faces"])), sinks, RunOptions(mode="every-frame"),
                          model_name=str(paths["detector"])).run()
    rows = [json.loads(line) for line in paths["faces results"].read_text().splitlines()]
    faces = sum(len(r["result"].get("detections", ())) for r in rows)
    info(f"    {faces} face(s) found in {report.frames_processed} photos, {report.fps:.1f} FPS")
    return conv.to_dict(), to_jsonable(report.to_dict()), faces, list(conv.warnings) + list(report.warnings)
