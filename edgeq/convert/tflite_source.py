"""A float ``.tflite`` source (MediaPipe, model zoos) -> full-integer int8 through ai-edge-quantizer.

ai-edge-quantizer is not turnkey on real models: MediaPipe's store their weights as fp16
constants behind DEQUANTIZE ops (and sparse ones behind DENSIFY), which the quantizer takes for
activations and quantizes asymmetrically (CONV_2D then fails to allocate: "zero_point != 0"), and
they have no signature def. The pre-pass here folds every constant-producing op (DEQUANTIZE and
DENSIFY of constants) into plain fp32 constant buffers, computed by LiteRT's own kernels (so
sparse formats need no re-implementation), removes those ops, normalises the old opcode field and
adds a signature. The result is bit-exact with the original and quantizes to full integer.
Models with custom ops (MediaPipe's own kernels) cannot be calibrated: LiteRT cannot execute them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import pathlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConversionError, ModelError, UsageError
from ..preprocess import Preprocess, resolve_preprocess
from . import tflite_passes as passes
from .calibration import CalibrationDataset
from .io_types import set_io_dtype
from .quantize import CalibratedModel
from .recipes import Recipe

log = logging.getLogger(__name__)
SIGNATURE_KEY = "serving_default"
_CUSTOM = 32
# edgeq recipe -> ai-edge-quantizer recipe function (int4: weights only; activations stay float)
AEQ_RECIPES = {"int8": "static_wi8_ai8", "uint8": "static_wi8_ai8", "int16x8": "static_wi8_ai16",
               "int4-weights": "weight_only_wi4_afp32", "int4-dynamic": "dynamic_wi4_afp32"}


@dataclasses.dataclass(frozen=True)
class FloatTflite:
    """A float .tflite source after the pre-pass: ready for ai-edge-quantizer."""

    path: str
    model: bytes                     # the folded, signed model (float, numerically the original)
    input_name: str
    input_shape: tuple[int, ...]
    folded_ops: int                  # DEQUANTIZE/DENSIFY ops folded into fp32 constants
    rewritten_ops: int               # RELU fused into the op before; DEPTH_TO_SPACE, PRELU rewritten
    float_weights_bytes: int         # the fp32 constants' bytes (the compression baseline)
    source_bytes: int = 0            # the original file's size (fp16 weights stay fp16 there)


def read_float_tflite(path: str | pathlib.Path, data: bytes | None = None) -> FloatTflite:
    """Validate a float .tflite source (the file, or ``data`` named ``path``) and run the pre-pass; every
    refusal says what to do instead."""
    schema = passes.schema()
    p = pathlib.Path(path)
    buf = p.read_bytes() if data is None else data
    try:
        model = passes.unpack(buf)
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises many types
        raise ModelError(f"{p} is not a readable .tflite model: {exc}") from exc
    custom = sorted({(c.customCode or b"?").decode(errors="replace") for c in model.operatorCodes
                     if c.builtinCode == _CUSTOM})
    if custom:
        raise ConversionError(
            f"{p.name} uses custom op(s) {', '.join(custom)} (kernels that ship with the app that made the "
            "model, e.g. MediaPipe, not with LiteRT). They have no integer kernel anywhere, and LiteRT cannot even "
            "run them, so the model cannot be calibrated; --allow-float-fallback cannot help. Replace them with "
            "builtin ops in the source model (e.g. TRANSPOSE_CONV + ADD for Convolution2DTransposeBias)")
    if len(model.subgraphs) != 1:
        raise ConversionError(f"{p.name} has {len(model.subgraphs)} subgraphs (control flow); only single-graph "
                              "float models can be quantized")
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1:
        raise ConversionError(f"{p.name} has {len(sg.inputs)} inputs; edgeq quantizes single-input image models")
    inp = sg.tensors[sg.inputs[0]]
    if inp.type != schema.TensorType.FLOAT32:
        raise ModelError(f"{p.name} is already quantized (input type {_type_name(inp.type)}); edgeq quantizes "
                         "float models: convert the float original")
    sig = inp.shapeSignature if inp.shapeSignature is not None else inp.shape
    if sig is None or any(int(d) < 0 for d in list(sig)[1:]):
        dims = [int(d) for d in (sig if sig is not None else [])]
        raise ModelError(f"{p.name} has a dynamic input shape {dims}; give it a static one first "
                         "(edgeq edgetpu fix-shapes MODEL -o OUT --input-size WxH)")
    folded = passes.fold_constants(model, buf)
    fused = passes.fuse_activations(model)
    rewritten = passes.depth_to_space_as_transpose(model) + passes.prelu_as_max(model)
    passes.add_signature(model, SIGNATURE_KEY)
    passes.compact(model)
    data = passes.pack(model)
    weights = sum(len(b.data) for b in model.buffers if b.data is not None)
    return FloatTflite(str(p), data, inp.name.decode() if isinstance(inp.name, bytes) else str(inp.name),
                       tuple(int(d) for d in inp.shape), folded, fused + rewritten, weights, len(buf))


def _type_name(t: int) -> str:
    schema = passes.schema()
    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}.get(t, str(t)).lower()


def prepare_tflite_source(path: str, data: bytes | None, dataset: CalibrationDataset | None,
                          preprocess: Preprocess | None,
                          options: dict[str, Any] | None) -> tuple[FloatTflite, Preprocess, tuple[str, ...]]:
    """The pre-passed source and its preprocessing contract: given, or built from the input tensor and the
    options (for a foreign model a guess, said so); the calibration data is preprocessed with it."""
    src = read_float_tflite(path, data)
    if preprocess is not None:
        pre, warnings = preprocess, ()
    else:
        resolved = resolve_preprocess(src.input_shape, options, model=pathlib.Path(path).name, foreign=True)
        pre, warnings = resolved.preprocess, resolved.warnings
    if pre.channels != src.input_shape[-1] or (pre.height, pre.width) != tuple(src.input_shape[1:3]):
        raise UsageError(f"the preprocessing makes {pre.height}x{pre.width}x{pre.channels} tensors but "
                         f"{pathlib.Path(path).name} takes {list(src.input_shape)}; drop --input-size or match it")
    if dataset is not None:
        if dataset.preprocess is None:
            dataset.preprocess = pre
        elif preprocess is None:
            pre = dataset.preprocess
    if src.folded_ops:
        log.info("pre-pass: folded %d DEQUANTIZE/DENSIFY op(s) of constant (fp16/sparse) weights into float32 "
                 "constants, rewrote %d RELU/DEPTH_TO_SPACE/PRELU op(s)", src.folded_ops, src.rewritten_ops)
    return src, pre, warnings


# ---- quantize ----------------------------------------------------------------------------------
def import_quantizer() -> Any:
    """ai-edge-quantizer, or how to get it."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError as exc:
        raise ConversionError("quantizing a .tflite model needs ai-edge-quantizer: pip install 'edgeq[tflite]'") \
            from exc
    return quantizer


def check_tflite_recipe(rec: Recipe) -> None:
    """Refuse, before any work, the recipe options the .tflite route does not implement."""
    if rec.name not in AEQ_RECIPES and not (rec.name == "mixed" and rec.activations == "int8"):
        raise UsageError(f"recipe {rec.name!r} is not available for a .tflite source; use one of "
                         f"{', '.join(AEQ_RECIPES)}")
    unsupported = [flag for flag, on in (("--range-method", rec.range_method != "minmax"),
                                         ("float op types (float_ops)", bool(rec.float_ops))) if on]
    if unsupported:
        raise UsageError(f"{' and '.join(unsupported)} are not available for a .tflite source yet; convert the "
                         "Keras/SavedModel original for them")


def aeq_recipe(rec: Recipe) -> list[dict[str, Any]]:
    """The ai-edge-quantizer recipe for an edgeq recipe (per-tensor weights when asked)."""
    from ai_edge_quantizer import recipe as aeq

    entries = getattr(aeq, AEQ_RECIPES.get(rec.name, "static_wi8_ai8"))()  # "mixed": int8 with float ops
    if not rec.per_channel:
        for e in entries:
            wcfg = e.get("op_config", {}).get("weight_tensor_config")
            if wcfg:
                wcfg["granularity"] = "TENSORWISE"
    return entries


def quantize_float_tflite(src: FloatTflite, dataset: CalibrationDataset | None, rec: Recipe) -> bytes:
    """Calibrate (static recipes) and quantize the pre-passed model with ai-edge-quantizer (the recipe's
    float_nodes kept in float)."""
    return CalibratedTflite.calibrate_source(src, dataset, rec).quantize(rec.float_nodes)


class CalibratedTflite(CalibratedModel):
    """The pre-passed float model and ai-edge-quantizer's recorded ranges, quantized any number of times
    with chosen ops kept float: what the mixed-precision search needs (``CalibratedModel``'s interface;
    a node is an op's first output tensor name, the op is left unquantized by a ``no_quantize`` entry)."""

    def __init__(self, src: FloatTflite, qsvs: dict[str, Any], recipe: Recipe):
        super().__init__(None, src.model, recipe)
        self.src, self.qsvs = src, qsvs

    @classmethod
    def calibrate_source(cls, src: FloatTflite, dataset: CalibrationDataset | None, rec: Recipe) -> CalibratedTflite:
        quantizer = import_quantizer()
        with _quiet():
            q = quantizer.Quantizer(src.model, aeq_recipe(rec))
            qsvs: dict[str, Any] = {}
            if q.need_calibration:
                if dataset is None:
                    raise UsageError(f"recipe {rec.name!r} needs calibration data (-c/--calibration)")
                qsvs = q.calibrate({SIGNATURE_KEY: list(_samples(src, dataset))})
        return cls(src, qsvs, rec)

    @property
    def float_size(self) -> int:
        return self.src.source_bytes or len(self.data)

    def with_recipe(self, recipe: Recipe) -> CalibratedTflite:
        return CalibratedTflite(self.src, self.qsvs, recipe)

    def quantize(self, float_nodes: Sequence[str] = (), float_ops: Sequence[str] = ()) -> bytes:
        if float_ops:
            raise UsageError("float op types (float_ops) are not available for a .tflite source; name the ops "
                             "(float_nodes)")
        scopes = self._scopes()
        unknown = sorted(set(float_nodes) - set(scopes))
        if unknown:
            raise UsageError(f"float_nodes not in this model: {unknown[:3]}; the recipe was made for another model")
        quantizer = import_quantizer()
        with _quiet():
            q = quantizer.Quantizer(self.data, aeq_recipe(self.recipe))
            for node in dict.fromkeys(float_nodes):
                q.update_quantization_recipe(regex="^" + re.escape(scopes[node]) + "$", operation_name="*",
                                             algorithm_key="no_quantize")
            data = bytes(q.quantize(self.qsvs or None, enable_progress_report=False).quantized_model)
        data = passes.inline_buffers(data)
        return set_io_dtype(data, self.recipe.effective_io_dtype) if self.recipe.full_integer else data

    def _scopes(self) -> dict[str, str]:
        """{first output tensor name: the op's scope as ai-edge-quantizer matches it ("out1;out2;")}."""
        from ..tflite_format import load_model_file

        _, mf = load_model_file(self.data)
        names = [[mf.main.tensors[o].name for o in op.outputs] for op in mf.main.operators if op.outputs]
        return {n[0]: ";".join(n) + ";" for n in names}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ai-edge-quantizer prints size reports and progress bars, and warns about its debug interpreter: edgeq
    reports its own."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _samples(src: FloatTflite, dataset: CalibrationDataset) -> Iterator[dict[str, np.ndarray]]:
    for sample in dataset:
        yield {src.input_name: sample[None, ...].astype(np.float32)}
