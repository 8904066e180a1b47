"""What decoders return: results that serialise themselves (JSON) and draw themselves on a frame.

``to_dict()`` is the per-frame JSON of `edgeq run --jsonl`; ``draw(image)`` paints the result on a
BGR frame in place and returns how many caption lines it used at the top left, so the caller's own
overlays (the FPS line) go below them. OpenCV is imported only when drawing.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError
from ..preprocess import FrameTransform


@dataclasses.dataclass(frozen=True)
class FrameContext:
    """What a decoder needs to know about the frame besides the outputs."""

    transform: FrameTransform
    source_size: tuple[int, int]  # (width, height) of the captured frame
    input_size: tuple[int, int]  # (width, height) of the model input
    labels: tuple[str, ...] = ()


class Result(Protocol):
    """The interface every decoder's result has (sinks rely on nothing else)."""

    def to_dict(self) -> dict[str, Any]: ...

    def draw(self, image: np.ndarray) -> int: ...


def label_for(labels: Sequence[str], i: int) -> str:
    """The label of class ``i``, or its number when the model has no label for it."""
    return labels[i] if 0 <= i < len(labels) else str(i)


def draw_caption(image: np.ndarray, text: str, line: int) -> None:
    """White text with a black outline at caption ``line`` (0 = top) of the frame's top left."""
    import cv2

    y = 22 + 22 * line
    cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Classification:
    """One ranked class of a classifier's output."""

    index: int
    label: str
    score: float


def top_k(scores: Any, labels: Sequence[str] = (), k: int = 5) -> tuple[Classification, ...]:
    """The ``k`` best classes of a (1, C) or (C,) score vector, best first (ties keep index order).

    Scores are reported as the model outputs them; at least one class is returned.
    """
    flat = np.asarray(scores, np.float32).reshape(-1)
    if flat.size == 0:
        raise ModelError("classification output is empty")
    k = max(1, min(int(k), flat.size))
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    return tuple(Classification(int(i), label_for(labels, int(i)), float(flat[i])) for i in top)


@dataclasses.dataclass(frozen=True)
class TopK:
    """A classifier's result for one frame: its top classes, best first."""

    classes: tuple[Classification, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "classification",
                "top": [{"class_id": c.index, "label": c.label, "score": c.score} for c in self.classes]}

    def caption(self) -> str:
        return f"{self.classes[0].label} {self.classes[0].score:.2f}" if self.classes else ""

    def draw(self, image: np.ndarray) -> int:
        """The best class as the first caption line."""
        if not self.classes:
            return 0
        draw_caption(image, self.caption(), 0)
        return 1


# --------------------------------------------------------------------------------------------
# Detections
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Detections:
    """Boxes as (x0, y0, x1, y1) in source-image pixels; ``keypoints`` (N, K, 2) too, where the head has them."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]
    keypoints: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        dets = [{"box": [round(float(v), 2) for v in b], "score": float(s), "class_id": int(c), "label": lab}
                for b, s, c, lab in zip(self.boxes, self.scores, self.class_ids, self.labels)]
        if self.keypoints is not None:
            for d, kps in zip(dets, self.keypoints):
                d["keypoints"] = [[round(float(x), 2), round(float(y), 2)] for x, y in kps]
        return {"type": "detections", "detections": dets}

    def draw(self, image: np.ndarray) -> int:
        """A green box with "label score" above it per detection; no caption lines."""
        import cv2

        for (x0, y0, x1, y1), score, label in zip(self.boxes, self.scores, self.labels):
            p0, p1 = (int(x0), int(y0)), (int(x1), int(y1))
            cv2.rectangle(image, p0, p1, (0, 255, 0), 2)
            cv2.putText(image, f"{label} {score:.2f}", (p0[0], max(12, p0[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 255, 0), 1, cv2.LINE_AA)
        for kps in self.keypoints if self.keypoints is not None else ():
            for x, y in kps:
                cv2.circle(image, (int(x), int(y)), 3, (0, 0, 255), -1, cv2.LINE_AA)
        return 0


# --------------------------------------------------------------------------------------------
# Raw outputs
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RawOutputs:
    """For models without a known head: output shapes and value ranges only."""

    summary: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "raw", "outputs": list(self.summary)}

    def draw(self, image: np.ndarray) -> int:
        """Nothing to show on the frame."""
        return 0
