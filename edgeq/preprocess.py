"""The preprocessing contract: one frozen spec used for calibration, evaluation and inference.

The most common way an int8 model fails in the field is a mismatch between the preprocessing
used at calibration and at inference. edgeq writes this spec into the .tflite file and every
consumer (calibration loader, ``EdgeModel.predict``, the pipeline, ``eval``) applies the same
``Preprocess.apply``.

Images given to ``apply`` are OpenCV-style arrays: uint8 (or uint16) HxW gray, HxWx3 BGR or
HxWx4 BGRA, unless ``input_color`` says otherwise.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import PreprocessError, UsageError

RESIZE_MODES = ("stretch", "letterbox", "center-crop")
COLORS = ("RGB", "BGR", "GRAY")
MAX_INPUT_SIDE = 16384  # pixels; larger inputs are corrupt metadata or a typo, not a vision model


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
NAMED_RANGES = {
    "0,1": ((0.0,), (255.0,)),
    "-1,1": ((127.5,), (127.5,)),
    "0,255": ((0.0,), (1.0,)),
    "raw": ((0.0,), (1.0,)),
}


@dataclasses.dataclass(frozen=True)
class FrameTransform:
    """Maps model-input pixel coordinates back to source-image pixels: src = (x - offset) / scale."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_source(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[Any, Any]:
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a raw image becomes the model's input tensor (before quantization)."""

    height: int
    width: int
    color: str = "RGB"
    resize: str = "stretch"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    layout: str = "NHWC"
    pad_value: int = 0

    def __post_init__(self) -> None:
        for name, side in (("height", self.height), ("width", self.width)):
            if not _is_int(side) or not 0 < side <= MAX_INPUT_SIDE:
                raise UsageError(f"input {name} must be a whole number of pixels in 1..{MAX_INPUT_SIDE}, got {side!r}")
        if not _is_int(self.pad_value) or not 0 <= self.pad_value <= 255:
            raise UsageError(f"pad value must be a whole number in 0..255, got {self.pad_value!r}")
        if not isinstance(self.color, str) or self.color not in COLORS:
            raise UsageError(f"unknown colour order {self.color!r}; expected one of {', '.join(COLORS)}")
        if not isinstance(self.resize, str) or self.resize not in RESIZE_MODES:
            raise UsageError(f"unknown resize mode {self.resize!r}; expected one of {', '.join(RESIZE_MODES)}")
        if self.layout != "NHWC":
            raise UsageError(f"layout {self.layout!r} is not supported; TFLite vision models are NHWC")
        for name, vals in (("mean", self.mean), ("std", self.std)):
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                raise UsageError(f"--{name} values must be finite numbers, got {list(vals)}")
            if len(vals) not in (1, self.channels):
                raise UsageError(f"--{name} needs 1 or {self.channels} values for {self.color} input, got {len(vals)}")
        if any(s == 0 for s in self.std):
            raise UsageError("--std values must be non-zero")

    # ---- description -------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @property
    def value_range(self) -> tuple[float, float]:
        """The (min, max) of the float values the model sees, over all channels."""
        lo = min((0.0 - m) / s for m, s in zip(self._vec(self.mean), self._vec(self.std)))
        hi = max((255.0 - m) / s for m, s in zip(self._vec(self.mean), self._vec(self.std)))
        return float(lo), float(hi)

    @property
    def range_name(self) -> str:
        for name, (m, s) in NAMED_RANGES.items():
            if name != "raw" and self.mean == m and self.std == s:
                return "[" + name + "]" if name != "0,255" else "raw 0..255"
        return f"mean={list(self.mean)} std={list(self.std)}"

    def describe(self) -> str:
        return f"{self.width}x{self.height} {self.color} {self.resize}, values {self.range_name}"

    def _vec(self, v: tuple[float, ...]) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, np.float32), (self.channels,)).copy()

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"unknown preprocessing keys {sorted(unknown)}; expected {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                if not isinstance(d[k], (list, tuple)):
                    raise UsageError(f"preprocessing {k} must be a list of numbers, got {d[k]!r}")
                d[k] = tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                             for v in d[k])
        return cls(**d)

    def replace(self, **changes: Any) -> Preprocess:
        return dataclasses.replace(self, **changes)

    # ---- application -------------------------------------------------------------------
    def geometry(self, src_w: int, src_h: int) -> tuple[FrameTransform, tuple[int, int], tuple[int, int, int, int]]:
        """(transform, resized (w, h), crop box x0,y0,x1,y1 in source) for a source size."""
        W, H = self.width, self.height
        if self.resize == "stretch":
            return FrameTransform(W / src_w, H / src_h, 0.0, 0.0), (W, H), (0, 0, src_w, src_h)
        if self.resize == "letterbox":
            s = min(W / src_w, H / src_h)
            nw, nh = max(1, round(src_w * s)), max(1, round(src_h * s))
            ox, oy = (W - nw) // 2, (H - nh) // 2
            return FrameTransform(nw / src_w, nh / src_h, ox, oy), (nw, nh), (0, 0, src_w, src_h)
        # center-crop: crop the largest centred region with the model's aspect ratio
        s = max(W / src_w, H / src_h)
        cw, ch = min(src_w, round(W / s)), min(src_h, round(H / s))
        x0, y0 = (src_w - cw) // 2, (src_h - ch) // 2
        t = FrameTransform(W / cw, H / ch, -x0 * W / cw, -y0 * H / ch)
        return t, (W, H), (x0, y0, x0 + cw, y0 + ch)

    def to_pixels(self, image: np.ndarray, input_color: str = "BGR") -> tuple[np.ndarray, FrameTransform]:
        """Resize and colour-convert an image to uint8 HxWxC in the model's colour order."""
        import cv2

        img = _as_uint8(image)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
            raise PreprocessError(f"expected an image of shape HxW, HxWx3 or HxWx4, got {image.shape}")
        src_h, src_w = img.shape[:2]
        if src_h == 0 or src_w == 0:
            raise PreprocessError(f"empty image of shape {image.shape}")
        src = input_color.upper()
        # A pure BGR<->RGB swap commutes with crop/resize: do it on the small image (bit-identical,
        # ~20x cheaper for a camera frame). Other conversions (to gray, from BGRA) shrink the data first.
        swap_late = img.ndim == 3 and img.shape[2] == 3 and {src, self.color} == {"BGR", "RGB"}
        if not swap_late:
            img = _convert_color(img, src, self.color)
        t, (nw, nh), (x0, y0, x1, y1) = self.geometry(src_w, src_h)
        if (x0, y0, x1, y1) != (0, 0, src_w, src_h):
            img = img[y0:y1, x0:x1]
        if (img.shape[1], img.shape[0]) != (nw, nh):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if swap_late:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.resize == "letterbox" and (nw, nh) != (self.width, self.height):
            canvas = np.full((self.height, self.width) + img.shape[2:], self.pad_value, np.uint8)
            ox, oy = int(t.offset_x), int(t.offset_y)
            canvas[oy:oy + nh, ox:ox + nw] = img
            img = canvas
        if img.ndim == 2:
            img = img[:, :, None]
        return img, t

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels (HxWxC) -> float32 values in the model's range."""
        mean, std = self._vec(self.mean), self._vec(self.std)
        return (pixels.astype(np.float32) - mean) / std

    def apply(self, image: np.ndarray, input_color: str = "BGR") -> np.ndarray:
        """Full preprocessing: raw image -> float32 HxWxC tensor (no batch dimension)."""
        return self.normalize(self.to_pixels(image, input_color)[0])

    def quantize_lut(self, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
        """A (256, C) table mapping a uint8 pixel straight to the quantized input value.

        Fusing normalisation and quantization into one table lookup is exact (the float value
        of a pixel is fixed) and much cheaper per frame than float arithmetic.
        """
        px = np.arange(256, dtype=np.float32)[:, None]
        return quantize_values((px - self._vec(self.mean)) / self._vec(self.std), scale, zero_point, dtype)

    def encode(self, pixels: np.ndarray, dtype: Any, scale: float | None = None, zero_point: int = 0) -> np.ndarray:
        """uint8 pixels (from ``to_pixels``; any leading batch axes) -> the model's input values in ``dtype``.

        Integer inputs take one table lookup per pixel (normalisation and quantization fused);
        float inputs take the normalised values. The one place edgeq maps pixels to input tensors.
        """
        dt = np.dtype(dtype)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if dt.kind in "iu":
            if not scale:
                raise UsageError(f"an integer ({dt.name}) model input without quantization parameters cannot "
                                 "take images; feed ready tensors to run()")
            lut = self.quantize_lut(scale, zero_point, dt)
            return lut[pixels, np.arange(pixels.shape[-1])]
        return self.normalize(pixels).astype(dt, copy=False)

    @classmethod
    def from_options(cls, height: int, width: int, channels: int | None = None, *,
                     color: str | None = None, value_range: str | None = None,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     resize: str | None = None, default_range: str = "0,1") -> Preprocess:
        """Build a spec from CLI-style options, filling gaps from the model's input shape."""
        if color is None:
            color = "GRAY" if channels == 1 else "RGB"
        color = color.upper()
        if channels is not None and (channels == 1) != (color == "GRAY"):
            raise UsageError(f"--color {color.lower()} does not fit the model's input with {channels} channel(s)")
        if value_range is not None and (mean is not None or std is not None):
            raise UsageError("give either --range or --mean/--std, not both")
        if mean is not None or std is not None:
            m = tuple(float(v) for v in (mean if mean is not None else (0.0,)))
            s = tuple(float(v) for v in (std if std is not None else (1.0,)))
        else:
            key = (value_range or default_range).replace(" ", "").replace("[", "").replace("]", "")
            if key not in NAMED_RANGES:
                raise UsageError(f"unknown --range {value_range!r}; expected one of "
                                 f"{', '.join(NAMED_RANGES)} (or use --mean/--std)")
            m, s = NAMED_RANGES[key]
        return cls(height=int(height), width=int(width), color=color, resize=resize or "stretch", mean=m, std=s)


def quantize_values(values: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float model-input values -> TFLite's affine integers: round(x / scale) + zero point, clipped to dtype."""
    info = np.iinfo(np.dtype(dtype))
    q = np.round(np.asarray(values, dtype=np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def parse_size(text: str) -> tuple[int, int]:
    """'64x48' -> (width=64, height=48); '64' -> (64, 64)."""
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise UsageError(f"--input-size {text!r}: expected WIDTHxHEIGHT, e.g. 224x224") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise UsageError(f"--input-size {text!r}: expected WIDTHxHEIGHT with positive numbers, e.g. 224x224")
    return parts[0], parts[1]


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated numbers, e.g. 123.7,116.3,103.5") from None


def _as_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    raise PreprocessError(f"expected a uint8 or uint16 image, got dtype {image.dtype}; float arrays are "
                          "taken as already-preprocessed tensors only by EdgeModel.run")


def _convert_color(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    import cv2

    if src not in COLORS:
        raise PreprocessError(f"unknown input colour order {src!r}; expected one of {', '.join(COLORS)}")
    if img.ndim == 2:
        return img if dst == "GRAY" else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR if src != "RGB" else cv2.COLOR_RGBA2RGB)
    if src == "GRAY":
        src = "BGR"
    if dst == "GRAY":
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if src == "BGR" else cv2.COLOR_RGB2GRAY)
    if src != dst:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


# ---- one resolver: embedded contract vs options vs inference from the input tensor ---------------
@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """Preprocessing a user asked for (CLI flags or Python); each field None when not given."""

    input_size: tuple[int, int] | None = None  # (width, height)
    color: str | None = None
    value_range: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str | None = None

    @classmethod
    def from_any(cls, options: PreprocessOptions | dict[str, Any] | None) -> PreprocessOptions:
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown preprocessing option(s) {unknown}; valid: {sorted(known)}")
        d = {k: v for k, v in options.items() if v is not None}
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        if "input_size" in d:
            d["input_size"] = tuple(int(v) for v in d["input_size"])
        if "color" in d:
            d["color"] = str(d["color"]).upper()
        return cls(**d)

    @property
    def given(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def build(self, height: int | None, width: int | None, channels: int | None, *, model: str = "the model",
              default_range: str = "0,1") -> Preprocess:
        """A contract for an input of this size (None: unknown), the given options applied."""
        if self.input_size:
            width, height = self.input_size
        if not height or not width or height < 0 or width < 0:
            raise UsageError(f"cannot infer the input size of {model} (its input has dynamic height/width); "
                             "pass --input-size WIDTHxHEIGHT")
        return Preprocess.from_options(height, width, channels, color=self.color, value_range=self.value_range,
                                       mean=self.mean, std=self.std, resize=self.resize, default_range=default_range)

    def apply_to(self, base: Preprocess) -> Preprocess:
        """``base`` with the given options overriding its fields (unset options keep base's values)."""
        width, height = self.input_size or (base.width, base.height)
        rebuilt = Preprocess.from_options(height, width, base.channels, color=self.color or base.color,
                                          value_range=self.value_range, mean=self.mean, std=self.std,
                                          resize=self.resize or base.resize)
        if self.value_range is None and self.mean is None and self.std is None:
            rebuilt = rebuilt.replace(mean=base.mean, std=base.std)
        return rebuilt.replace(pad_value=base.pad_value)


@dataclasses.dataclass(frozen=True)
class ResolvedPreprocess:
    """The contract a model will be fed with, where it came from, and what the user should be told."""

    preprocess: Preprocess
    origin: str  # "embedded" | "embedded+options" | "options" | "inferred"
    warnings: tuple[str, ...] = ()


def resolve_preprocess(input_shape: Sequence[int | None] | None, options: PreprocessOptions | dict | None = None, *,
                       embedded: Preprocess | None = None, model: str = "the model", default_range: str = "0,1",
                       options_override_embedded: bool = True, foreign: bool = True) -> ResolvedPreprocess:
    """Decide the preprocessing contract, in one place for convert, run, eval, predict and the examples.

    The model's embedded contract wins unless options are given: they override it field by field
    (``options_override_embedded``) or are ignored with a warning (eval compares models, which must
    all see what they were calibrated on). Without an embedded contract the input tensor's shape and
    the options make one; for a ``foreign`` .tflite that is a guess, and the user is told so.
    """
    opts = PreprocessOptions.from_any(options)
    if embedded is not None:
        if not opts.given:
            return ResolvedPreprocess(embedded, "embedded")
        if not options_override_embedded:
            return ResolvedPreprocess(embedded, "embedded", (
                f"{model} embeds its preprocessing ({embedded.describe()}); ignoring the preprocessing options "
                f"{list(opts.given)}",))
        pre = opts.apply_to(embedded)
        return ResolvedPreprocess(pre, "embedded+options", (
            f"preprocessing options override the model's embedded contract ({embedded.describe()} -> "
            f"{pre.describe()})",))
    shape = list(input_shape or ())
    if len(shape) != 4 and not opts.input_size:
        raise UsageError(f"{model}: input shape {shape} is not an image (1, HEIGHT, WIDTH, CHANNELS); pass "
                         "--input-size WIDTHxHEIGHT if it takes images")
    _, h, w, c = shape if len(shape) == 4 else (1, None, None, None)
    pre = opts.build(h, w, c, model=model, default_range=default_range)
    if opts.given:
        return ResolvedPreprocess(pre, "options")
    warnings = (f"{model} has no edgeq metadata; assuming {pre.describe()} (pass --input-size/--color/--range/"
                "--mean/--std/--resize as used in training)",) if foreign else ()
    return ResolvedPreprocess(pre, "inferred", warnings)
