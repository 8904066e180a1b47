"""Test doubles shared by several test files (test files never import each other)."""
from __future__ import annotations

import dataclasses
import http.server
import socketserver
import threading
import time

import cv2
import numpy as np

from edgeq.pipeline import Frame, Source
from edgeq.pipeline.synthetic import encode_frame_number
from edgeq.preprocess import Preprocess


class MjpegServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1: `frames` per connection, `connections` times, then gone."""

    def __init__(self, frames: int, connections: int) -> None:
        self.served = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.served += 1
                if outer.served > connections:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(frames):
                    img = np.full((120, 160, 3), (outer.served * 40 + i * 5) % 256, np.uint8)
                    jpg = cv2.imencode(".jpg", img)[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                     + jpg + b"\r\n")
                    time.sleep(0.005)
                if outer.served >= connections:
                    threading.Thread(target=outer.close, daemon=True).start()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclasses.dataclass(frozen=True)
class _Spec:
    shape: tuple[int, ...]


class FakeModel:
    """Just enough of an EdgeModel for the pipeline, without TensorFlow or an interpreter.

    Every frame "outputs" the given float arrays; preprocessing is a real ``Preprocess`` (so the
    frame transform is the one a real model would use).
    """

    def __init__(self, outputs, size: int = 32, labels: tuple[str, ...] = (), task: str | None = None) -> None:
        self._outputs = [np.asarray(o, np.float32) for o in outputs]
        self.outputs = [_Spec(o.shape) for o in self._outputs]
        self.preprocess = Preprocess(height=size, width=size, resize="letterbox")
        self.labels = labels
        self.metadata = type("Meta", (), {"task": task})() if task else None

    def prepare_with_transform(self, image, input_color: str = "BGR"):
        h, w = image.shape[:2]
        transform, _, _ = self.preprocess.geometry(w, h)
        return np.zeros((1, self.preprocess.height, self.preprocess.width, 3), np.float32), transform

    def run(self, tensors):
        return [o.copy() for o in self._outputs]

    def dequantize(self, raw):
        return raw


class FakeCapture:
    """A cv2.VideoCapture stand-in for a camera that delivers ``frames`` frames of its own size."""

    def __init__(self, width: int = 640, height: int = 480, frames: int = 5) -> None:
        self.width, self.height, self.left = width, height, frames

    def __call__(self, *args, **kwargs) -> FakeCapture:  # used in place of the cv2.VideoCapture class
        return self

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: self.width, cv2.CAP_PROP_FRAME_HEIGHT: self.height,
                cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)

    def grab(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def retrieve(self):
        return True, np.full((self.height, self.width, 3), 90, np.uint8)

    def release(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Marker:
    """The result of the test-time "marker" decoder: a red square in the bottom-right corner."""

    value: float

    def to_dict(self) -> dict:
        return {"type": "marker", "value": self.value}

    def draw(self, image: np.ndarray) -> int:
        image[-6:, -6:] = (0, 0, 255)
        return 0


def decode_marker(outputs, ctx) -> Marker:
    return Marker(float(np.max(outputs[0])))


class ListSource(Source):
    """Frames from a list (a stand-in for a camera whose driver returns an odd buffer now and then)."""

    kind = "list"

    def __init__(self, images):
        super().__init__("list of frames")
        self._images = list(images)

    def _open(self) -> None:
        self._i = 0

    def read(self):
        if self._i >= len(self._images):
            return None
        self._i += 1
        return Frame(self._images[self._i - 1], self._i, time.monotonic(), 0.0)


def numbered_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """BGR frames with their number (1..count) drawn in, for a ListSource that must not drop any."""
    frames = []
    for n in range(1, count + 1):
        image = np.full((height, width, 3), 90, np.uint8)
        encode_frame_number(image, n)
        frames.append(image)
    return frames
