"""Freeze dynamic tensor sizes (``shape_signature`` with -1) so the Edge TPU compiler accepts a model.

Why: Keras' SavedModel export gives every tensor a dynamic batch (``shape_signature [-1, ...]``)
and the compiler refuses dynamic-sized tensors (coral.ai/docs/edgetpu/models-intro/, "Tensor
sizes are constant at compile-time"). The stored ``shape`` already holds batch 1, so freezing the
batch is safe; dynamic height/width is only frozen when the caller gives the size.

How: the LiteRT interpreter resizes the inputs and propagates shapes through every op (no shape
inference of our own); the resulting static shapes are written into the flatbuffer through the
schema object API (``edgeq.metadata.unpack_model/pack_model``). The frozen model is then run
side by side with the original on the same input and must give the same output.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from ..errors import ConversionError, ModelError, UsageError
from ..fileio import check_output, write_bytes_atomic
from ..metadata import pack_model, read_metadata, unpack_model
from ..modelcheck import check_structure
from ..preprocess import Preprocess
from ..runtime.probe import probe_model
from ..tflite_format import ModelFile, TensorInfo, load_model_file, parse_model


@dataclasses.dataclass(frozen=True)
class FrozenInput:
    name: str
    shape_signature: tuple[int, ...]
    frozen_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape_signature": list(self.shape_signature),
                "frozen_shape": list(self.frozen_shape)}


@dataclasses.dataclass(frozen=True)
class FreezeResult:
    """What freezing changed and how it was verified."""

    output: str | None
    inputs: tuple[FrozenInput, ...]
    changed_tensors: int
    verified_on: str          # description of the input both models were run on
    max_abs_diff: float       # between the original and frozen outputs (0 = identical)
    already_static: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "inputs": [i.to_dict() for i in self.inputs],
                "changed_tensors": self.changed_tensors, "already_static": self.already_static,
                "verified_on": self.verified_on, "max_abs_diff": self.max_abs_diff}


def has_dynamic_shapes(mf: ModelFile) -> bool:
    return any(t.is_dynamic for sg in mf.subgraphs for t in sg.tensors)


def frozen_input_shape(t: TensorInfo, input_size: tuple[int, int] | None) -> tuple[int, ...]:
    """Batch -> 1; dynamic height/width only from ``input_size`` (width, height); anything else fails."""
    sig = list(t.shape_signature)
    if input_size is not None and len(sig) == 4:
        width, height = input_size
        if (sig[1] >= 0 and sig[1] != height) or (sig[2] >= 0 and sig[2] != width):
            raise UsageError(f"input '{t.name}' has a fixed height/width {sig[1]}x{sig[2]} (HxW, shape_signature "
                             f"{sig}) that --input-size {width}x{height} (WxH) contradicts; freezing cannot resize a "
                             "model: drop --input-size or re-export the model at that size")
    out = []
    for axis, dim in enumerate(sig):
        if dim >= 0:
            out.append(dim)
        elif axis == 0:
            out.append(1)
        elif len(sig) == 4 and axis in (1, 2) and input_size is not None:
            out.append(input_size[1] if axis == 1 else input_size[0])
        elif len(sig) == 4 and axis in (1, 2):
            raise UsageError(f"input '{t.name}' has a dynamic height/width (shape_signature {sig}); pass the size to "
                             "freeze it (--input-size WIDTHxHEIGHT / input_size=(width, height))")
        else:
            raise UsageError(f"input '{t.name}' has dynamic dimension {axis} (shape_signature {sig}) that edgeq "
                             "cannot freeze safely; re-export the model with a fixed input shape")
    return tuple(out)


def _interpreter(data: bytes) -> Any:
    """Builtin kernels without default delegates: both models run the very same kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        return Interpreter(model_content=data, num_threads=1,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the TFLite interpreter rejected the model: {first}") from exc


def _resized(data: bytes, shapes: dict[int, tuple[int, ...]]) -> Any:
    interp = _interpreter(data)
    for tensor_index, shape in shapes.items():
        interp.resize_tensor_input(tensor_index, list(shape), strict=False)
    try:
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(f"the model does not accept the frozen input shape(s) {list(shapes.values())}: "
                              f"{exc}") from exc
    return interp


def sample_input(mf: ModelFile, image: np.ndarray | None = None, preprocess: Preprocess | None = None,
                 input_color: str = "BGR") -> tuple[np.ndarray, str]:
    """The model's first input filled from a real image (through ``Preprocess``), or a seeded pattern.

    Returns the tensor (with batch axis, in the input's dtype) and a description of where it came from.
    """
    t = mf.main.tensors[mf.main.inputs[0]]
    shape = tuple(d if d > 0 else 1 for d in t.shape)
    if image is not None and len(shape) == 4:
        pre = preprocess or (read_metadata(mf).preprocess if read_metadata(mf) else None)
        if pre is None:
            pre = Preprocess.from_options(shape[1], shape[2], shape[3])
        pixels = pre.to_pixels(image, input_color)[0]
        quantized = t.dtype in ("INT8", "UINT8") and t.scale
        x = pre.encode(pixels, t.dtype.lower() if quantized else np.float32, t.scale[0] if quantized else None,
                       (t.zero_point[0] if t.zero_point else 0) if quantized else 0)
        return x.reshape(shape).astype(t.dtype.lower()), "a real image (preprocessed as the model expects)"
    rng = np.random.default_rng(0)
    if t.dtype in ("INT8", "UINT8"):
        info = np.iinfo(t.dtype.lower())
        x = rng.integers(info.min, info.max + 1, size=shape).astype(t.dtype.lower())
    else:
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    return x, "a seeded synthetic input (no image given)"


def _run(interp: Any, x: np.ndarray) -> list[np.ndarray]:
    try:
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the model cannot run its verification sample: {first}") from exc


def freeze_shapes_bytes(data: bytes, input_size: tuple[int, int] | None = None,
                        sample: tuple[np.ndarray, str] | None = None) -> tuple[bytes, FreezeResult]:
    """Return the model with static shapes and how it was verified. ``sample``: (input tensor, description)."""
    _, mf = load_model_file(data)
    check_structure(mf)
    sg = mf.main
    if not has_dynamic_shapes(mf):
        return data, FreezeResult(None, (), 0, "not run (already static)", 0.0, already_static=True)
    if len(mf.subgraphs) > 1 and any(t.is_dynamic for g in mf.subgraphs[1:] for t in g.tensors):
        raise ModelError(f"{len(mf.subgraphs)} subgraphs with dynamic tensors (control flow): edgeq freezes only "
                         "the main subgraph; re-export the model with a fixed input shape")
    targets = {i: frozen_input_shape(sg.tensors[i], input_size) for i in sg.inputs}
    interp = _resized(data, targets)
    static = {d["index"]: tuple(int(v) for v in d["shape"]) for d in interp.get_tensor_details()}

    model_t = unpack_model(data)
    changed = 0
    for t in sg.tensors:
        tensor_t = model_t.subgraphs[0].tensors[t.index]
        if not t.is_dynamic and t.index not in targets:
            continue
        shape = static.get(t.index)
        if shape is None:
            raise ModelError(f"tensor #{t.index} '{t.name}' (shape_signature {list(t.shape_signature)}) got no "
                             "shape from the interpreter; cannot freeze it")
        if len(shape) != len(t.shape_signature) or any(s >= 0 and s != d for s, d in zip(t.shape_signature, shape)):
            raise ModelError(f"tensor #{t.index} '{t.name}': frozen shape {list(shape)} contradicts its signature "
                             f"{list(t.shape_signature)}")
        tensor_t.shape = np.asarray(shape, dtype=np.int32)
        tensor_t.shapeSignature = np.asarray(shape, dtype=np.int32)
        changed += 1
    frozen = pack_model(model_t)
    _, frozen_mf = load_model_file(frozen)
    left = [t for t in frozen_mf.main.tensors if t.is_dynamic]
    if left:
        raise ModelError(f"{len(left)} tensor(s) still dynamic after freezing, e.g. '{left[0].name}'")

    x, where = sample if sample is not None else sample_input(frozen_mf)
    before = _run(interp, x)
    frozen_interp = _interpreter(frozen)
    frozen_interp.allocate_tensors()
    after = _run(frozen_interp, x)
    diff = max((float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0)
               for a, b in zip(before, after)) if before else 0.0
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after)) or diff > 0:
        raise ConversionError(f"freezing changed the model's output on {where} (max difference {diff}); the "
                              "original model is left as it was")
    inputs = tuple(FrozenInput(sg.tensors[i].name, sg.tensors[i].shape_signature, targets[i]) for i in sg.inputs)
    return frozen, FreezeResult(None, inputs, changed, where, diff)


def freeze_shapes(model: str | os.PathLike, output: str | os.PathLike, *, input_size: tuple[int, int] | None = None,
                  image: np.ndarray | None = None, force: bool = False) -> FreezeResult:
    """Freeze a .tflite file's dynamic shapes into ``output`` (written atomically), verified on ``image``."""
    out = check_output(output, force, inputs=(model,))
    data, mf = load_model_file(model)
    check_structure(mf)
    probe_model(data, str(model), "ai-edge-litert", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")  # the kernels used here
    sample = None
    if image is not None:
        # Sample built from the original's input spec (same dtype/quantization as the frozen model).
        t = mf.main.tensors[mf.main.inputs[0]]
        static_mf = mf if not t.is_dynamic else _with_input_shape(mf, frozen_input_shape(t, input_size))
        sample = sample_input(static_mf, image)
    frozen, result = freeze_shapes_bytes(data, input_size, sample)
    parse_model(frozen, str(out))
    write_bytes_atomic(out, frozen)
    return dataclasses.replace(result, output=str(out))


def _with_input_shape(mf: ModelFile, shape: tuple[int, ...]) -> ModelFile:
    sg = mf.main
    i = sg.inputs[0]
    tensors = list(sg.tensors)
    tensors[i] = dataclasses.replace(tensors[i], shape=shape, shape_signature=shape)
    main = dataclasses.replace(sg, tensors=tuple(tensors))
    return dataclasses.replace(mf, subgraphs=(main,) + mf.subgraphs[1:])
