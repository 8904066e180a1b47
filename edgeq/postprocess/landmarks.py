"""Keypoint / landmark heads (MediaPipe face mesh, hand landmarks): points in model-input pixels -> frame pixels.

The points output is (1, ..., N*D) with D = 2 or 3 values per point (x, y[, z]) in model-input pixels
(MediaPipe's ``TensorsToLandmarksCalculator`` divides by ``input_image_width``/``height``); an optional
presence output (1, ..., 1) says whether the object is there (a logit for the face mesh, a probability for
the hand model). Points are mapped back through the letterbox/crop like boxes are.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .registry import Decoder, DecoderOption, Shapes, optioned_decoder, register
from .results import FrameContext, draw_caption

OPTIONS = (
    DecoderOption("num_points", "int", "landmarks in the points output"),
    DecoderOption("values_per_point", "int", "2 (x, y) or 3 (x, y, z)", 3),
    DecoderOption("points_output", "int", "index of the points output", 0),
    DecoderOption("presence_output", "int", "index of the presence-score output (-1: none)", -1),
    DecoderOption("presence_activation", "str", "sigmoid (a logit) or none (a probability)", "none"),
    DecoderOption("min_presence", "float", "report no points below this presence score", 0.5),
)


@dataclasses.dataclass(frozen=True)
class Landmarks:
    """Points (N, 2) in source-image pixels (empty when absent), their z (model units) and the presence score."""

    points: np.ndarray
    z: np.ndarray | None
    presence: float | None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "landmarks", "presence": self.presence,
                             "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]}
        if self.z is not None and len(self.points):
            d["z"] = [round(float(v), 3) for v in self.z]
        return d

    def draw(self, image: np.ndarray) -> int:
        """A dot per point and the presence score as one caption line."""
        import cv2

        for x, y in self.points:
            cv2.circle(image, (int(x), int(y)), 2, (0, 255, 255), -1, cv2.LINE_AA)
        if self.presence is None:
            return 0
        draw_caption(image, f"presence {self.presence:.2f}", 0)
        return 1


def _why_not(shapes: Shapes, o: Mapping[str, Any]) -> str | None:
    if not o["num_points"]:
        return ("needs --postprocess-option num_points=N (and values_per_point, presence_output) or a preset "
                "(mediapipe-face-landmark, mediapipe-hand-landmark)")
    if o["values_per_point"] not in (2, 3) or o["presence_activation"] not in ("sigmoid", "none"):
        return "option values_per_point must be 2 or 3, presence_activation sigmoid or none"
    p, q = o["points_output"], o["presence_output"]
    if not 0 <= p < len(shapes) or q >= len(shapes):
        return f"output indices points_output={p}, presence_output={q} do not exist ({len(shapes)} outputs)"
    want = o["num_points"] * o["values_per_point"]
    if int(np.prod(shapes[p])) != want or shapes[p][-1] != want:
        return f"expects output {p} with {o['num_points']}x{o['values_per_point']}={want} values, got {list(shapes[p])}"
    if q >= 0 and int(np.prod(shapes[q])) != 1:
        return f"expects presence output {q} with one value, got {list(shapes[q])}"
    return None


def decode_landmarks(outputs: Sequence[Any], o: Mapping[str, Any], ctx: FrameContext) -> Landmarks:
    """Points output -> Landmarks in source pixels; a presence score outside [0, 1] is an error."""
    why = _why_not([tuple(np.shape(x)) for x in outputs], o)
    if why:
        raise ModelError(f"landmark decoder: {why}")
    pts = np.asarray(outputs[o["points_output"]], np.float32).reshape(o["num_points"], o["values_per_point"])
    presence = None
    if o["presence_output"] >= 0:
        presence = float(np.asarray(outputs[o["presence_output"]], np.float64).reshape(-1)[0])
        if o["presence_activation"] == "sigmoid":
            presence = float(1.0 / (1.0 + np.exp(-np.clip(presence, -100, 100))))
        if not 0.0 <= presence <= 1.0:
            raise ModelError(f"landmark presence score {presence:.4g} is outside [0, 1]: output "
                             f"{o['presence_output']} is a logit (presence_activation=sigmoid) or not a presence score")
        if presence < o["min_presence"]:
            return Landmarks(np.zeros((0, 2), np.float32), None, presence)
    x, y = ctx.transform.to_source(pts[:, 0], pts[:, 1])
    z = pts[:, 2].copy() if o["values_per_point"] == 3 else None
    return Landmarks(np.stack([x, y], axis=1).astype(np.float32), z, presence)


def _bind(o: Mapping[str, Any]) -> tuple[Any, Any]:
    def fits(shapes: Shapes, task: str | None) -> str | None:
        return _why_not(shapes, o)

    def decode(outputs: Sequence[Any], ctx: FrameContext) -> Landmarks:
        return decode_landmarks(outputs, o, ctx)

    return fits, decode


def landmark_decoder(name: str, help: str, priority: int = 100, **defaults: Any) -> Decoder:
    """A registered landmark decoder whose option defaults are ``defaults`` (a preset) over OPTIONS'."""
    return register(optioned_decoder(name, "landmarks", help, OPTIONS, _bind, priority=priority, **defaults))


LANDMARKS = landmark_decoder("landmarks", "keypoints/landmarks in model-input pixels (num_points=N, ...)",
                             priority=45)
# mediapipe/modules/face_landmark/tensors_to_face_landmarks.pbtxt: TensorsToLandmarks num_landmarks 468,
# input_image_width/height 192 (x, y, z); face_landmark_cpu.pbtxt: the face flag through TensorsToFloats with
# activation SIGMOID (a logit).
FACE_MESH = landmark_decoder("mediapipe-face-landmark", "MediaPipe face mesh (468 points x 3, face-presence logit)",
                             priority=44, num_points=468, values_per_point=3, presence_output=1,
                             presence_activation="sigmoid")
# mediapipe/modules/hand_landmark/hand_landmark_cpu.pbtxt: num_landmarks 21, input_image_width/height 224;
# output 0 the 21x3 image landmarks, output 1 the hand flag, read by TensorsToFloats without activation and
# thresholded at 0.5 (ThresholdingCalculator): a probability.
HAND = landmark_decoder("mediapipe-hand-landmark", "MediaPipe hand landmarks lite/full (21 points x 3, presence)",
                        priority=44, num_points=21, values_per_point=3, presence_output=1)
