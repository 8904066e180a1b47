"""Regenerate tests/data/mobilenetv2_torch.onnx: a PyTorch MobileNetV2 exported with torch.onnx.export.

The ONNX path's fixture from PyTorch itself (the tf2onnx exports in the tests come from Keras): the
architecture of torchvision's MobileNetV2 (inverted residuals, ReLU6, width 0.35, 96x96, 10 classes),
written out here because torchvision's wheel does not import beside the CPU torch build on this machine.
Weights are seeded-random with BatchNorm statistics measured on real frames (vtest.avi), so activations
are realistic (random BatchNorm statistics would give near-zero logits and meaningless comparisons).
Needs torch and onnx, in a throwaway venv (not edgeq's):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 onnx opencv-python-headless
    /tmp/torchvenv/bin/python tests/data/make_torch_onnx.py .data/vtest.avi
"""
from __future__ import annotations

import pathlib
import sys

import cv2
import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
SIZE, WIDTH, CLASSES = 96, 0.35, 10


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_bn(inp: int, out: int, k: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(out)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers = [conv_bn(inp, hidden, 1, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, out, 1, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2's layout (setting table t, c, n, s from the paper)."""

    def __init__(self, width: float = WIDTH, classes: int = CLASSES) -> None:
        super().__init__()
        setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1)]
        inp = _make_divisible(32 * width)
        last = _make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [conv_bn(3, inp, 3, 2)]
        for t, c, n, s in setting:
            out = _make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        layers.append(conv_bn(inp, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))  # logits: a comparison on them can fail


def real_frames(video: str, count: int = 64) -> torch.Tensor:
    """NCHW float frames in [-1, 1] (the contract the tests give edgeq: --range=-1,1), RGB, 96x96."""
    cap = cv2.VideoCapture(video)
    frames = []
    while len(frames) < count:
        ok, f = cap.read()
        if not ok:
            break
        f = cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        frames.append(f.astype(np.float32) / 127.5 - 1.0)
    cap.release()
    return torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2).copy())


def main() -> None:
    torch.manual_seed(0)
    model = MobileNetV2()
    for m in model.modules():  # BatchNorm statistics := statistics of real frames (cumulative average)
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(real_frames(sys.argv[1] if len(sys.argv) > 1 else ".data/vtest.avi"))
    model.eval()
    out = HERE / "mobilenetv2_torch.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(out), input_names=["image"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    print(f"{out.relative_to(HERE.parent.parent)}: {out.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
