"""Coral's published Edge TPU operation table, as data, with each op's documented constraints.

Sources (read 2026-11; paraphrased, not copied):
- coral.ai/docs/edgetpu/models-intro/ ("TensorFlow models on the Edge TPU": model requirements and
  the "Supported operations" table with its "Runtime version" and "Known limitations" columns).
  The same table, as shipped for the Edge TPU inside Axis ARTPEC-7, is mirrored at
  developer.axis.com/computer-vision/on-device/system-on-chip/artpec-7/supported-ops/.
- The pre-runtime-13 table (x/y-only Mean and Pad, leading-1s Squeeze) as mirrored in
  github.com/dgist-datalab/Datalab_Intern Edge_TPU/convert_model_for_Edge_TPU.md.
- HARD_SWISH is absent from every version of the table; Coral's answer for MobileNetV3 is
  ``minimalistic=True`` (google-coral/edgetpu#353) and the request to support it is open
  (google-coral/edgetpu#272, compiler 15 and 16 logs show it on the CPU).

Each rule's ``check`` returns the reason a *documented* constraint is violated, or None. Rules
whose documentation says "may not be mapped depending on size" mark a passing verdict as an
estimate (``certain=False``): only the compiler knows.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

# Edge TPU runtime versions the current compiler (16) targets by default (-m 14 unless told).
DEFAULT_RUNTIME_VERSION = 14
ON_CHIP_CACHE_BYTES = 8 * 1024 * 1024  # "roughly 8 MB of SRAM" for parameter caching (compiler page)
# Part of that SRAM first holds the model's executable, so parameters near 8 MiB may already stream
# (compiler logs show ~6.9-7.8 MiB "used + remaining"): above this, "fits" is called tight.
TIGHT_CACHE_BYTES = 7 * 1024 * 1024
MAX_SOFTMAX_ELEMENTS = 16000


@dataclasses.dataclass(frozen=True)
class OpContext:
    """What a rule may look at: the op's tensors (as TensorInfo), options and constant inputs."""

    op: Any                        # tflite_format.OperatorInfo
    inputs: tuple[Any, ...]        # TensorInfo or None (optional input -1)
    outputs: tuple[Any, ...]
    options: Any                   # schema *OptionsT object or None
    constant: Callable[[int], np.ndarray | None]  # input position -> constant data (or None)
    runtime: int


@dataclasses.dataclass(frozen=True)
class OpRule:
    op: str                # TFLite builtin name, as in the compiler's log ("CONV_2D")
    coral_name: str        # the name in Coral's table ("Conv2d")
    min_runtime: int       # 1 = "All" runtime versions
    limitation: str        # Coral's documented limitation, paraphrased ("" = none)
    check: Callable[[OpContext], str | None] | None = None
    exact: bool = True     # False: passing the documented rule is no guarantee (size-dependent)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "coral_name": self.coral_name,
                "runtime": "all" if self.min_runtime <= 1 else f"{self.min_runtime}+",
                "limitation": self.limitation, "exact": self.exact}


def non_unit_dims(shape: tuple[int, ...]) -> int:
    return sum(1 for d in shape if d != 1)


def _fused_activation(ctx: OpContext) -> str | None:
    act = getattr(ctx.options, "fusedActivationFunction", 0) or 0
    return f"has a fused activation (code {act}); Coral: no fused activation function" if act else None


def _same_dilation(ctx: OpContext) -> str | None:
    o = ctx.options
    h, w = getattr(o, "dilationHFactor", 1) or 1, getattr(o, "dilationWFactor", 1) or 1
    if h != w:
        return f"dilation {h}x{w} differs in y and x; Coral: same dilation in x and y"
    return None


def _depthwise(ctx: OpContext) -> str | None:
    o = ctx.options
    h, w = getattr(o, "dilationHFactor", 1) or 1, getattr(o, "dilationWFactor", 1) or 1
    if ctx.runtime <= 12 and (h > 1 or w > 1):
        return f"dilated depthwise kernel ({h}x{w}) needs Edge TPU runtime 13+"
    return _same_dilation(ctx)


def _concatenation(ctx: OpContext) -> str | None:
    reason = _fused_activation(ctx)
    if reason:
        return reason
    consts = [i for i in range(len(ctx.inputs)) if ctx.constant(i) is not None]
    if consts:
        if len(ctx.inputs) != 2:
            return (f"{len(ctx.inputs)} inputs with a constant one; Coral: a constant input is only allowed "
                    "with exactly 2 inputs (a zero-padding concatenation)")
        data = ctx.constant(consts[0])
        zp = ctx.inputs[consts[0]].zero_point
        zero = zp[0] if zp else 0
        if data is not None and np.any(data.astype(np.int64) != zero):
            return "a constant input that is not all zeros; Coral: the constant must be all zeros"
    return None


def _fully_connected(ctx: OpContext) -> str | None:
    fmt = getattr(ctx.options, "weightsFormat", 0) or 0
    if fmt:
        return f"weights format {fmt}; Coral: only the default fully-connected weights format"
    out = ctx.outputs[0]
    if out is not None and non_unit_dims(out.shape) > 1:
        return f"output {list(out.shape)} is not one-dimensional; Coral: output tensor is one-dimensional"
    return None


def _axes(ctx: OpContext, position: int = 1) -> list[int] | None:
    data = ctx.constant(position)
    if data is None:
        return None
    rank = len(ctx.inputs[0].shape) if ctx.inputs[0] is not None else 4
    return sorted({int(a) % rank for a in np.ravel(data)}) if rank else []


def _mean(ctx: OpContext) -> str | None:
    axes = _axes(ctx)
    if axes is None:
        return "reduction axes are not a constant tensor"
    shape = ctx.inputs[0].shape
    rank = len(shape)
    if ctx.runtime <= 12:
        xy = {rank - 3, rank - 2} if rank >= 3 else set()
        if not set(axes) <= xy:
            return f"reduces axes {axes}; runtime <= 12 supports reduction along x and/or y only"
        return None
    if rank == 4 and 0 in axes:
        return f"reduces axes {axes} including the batch dimension; Coral: no reduction in batch dimension"
    if rank >= 1 and rank - 1 in axes and shape[-1] % 4:
        return (f"reduces the channel (z) axis of size {shape[-1]}; Coral: a z-reduction needs the z-dimension "
                "to be a multiple of 4")
    return None


def _not_batch_axes(what: str) -> Callable[[OpContext], str | None]:
    def check(ctx: OpContext) -> str | None:
        axes = _axes(ctx)
        if axes is None:
            return f"{what} axes are not a constant tensor"
        if len(ctx.inputs[0].shape) == 4 and 0 in axes:
            return f"{what} over axes {axes} includes the batch dimension; Coral: cannot operate on the batch dimension"
        return None
    return check


def _pad(ctx: OpContext) -> str | None:
    pads = ctx.constant(1)
    if pads is None:
        return "paddings are not a constant tensor"
    pads = np.asarray(pads).reshape(-1, 2)
    rank = len(pads)
    padded = [i for i in range(rank) if pads[i].any()]
    if ctx.runtime <= 12:
        xy = {rank - 3, rank - 2} if rank >= 3 else set()
        if not set(padded) <= xy:
            return f"pads dimensions {padded}; runtime <= 12 supports padding along x and/or y only"
    elif rank == 4 and 0 in padded:
        return "pads the batch dimension; Coral: no padding in batch dimension"
    return None


def _pack(ctx: OpContext) -> str | None:
    out = ctx.outputs[0]
    axis = getattr(ctx.options, "axis", 0) or 0
    if out is not None and len(out.shape) == 4 and axis % 4 == 0:
        return "packs along the batch dimension; Coral: no packing in batch dimension"
    return None


def _split(ctx: OpContext) -> str | None:
    axis = ctx.constant(0)
    data = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    if axis is not None and data is not None and len(data.shape) == 4 and int(np.ravel(axis)[0]) % 4 == 0:
        return "splits the batch dimension; Coral: no splitting in batch dimension"
    return None


def _prelu(ctx: OpContext) -> str | None:
    alpha = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    if alpha is None or not alpha.is_constant:
        return "alpha is not a constant tensor"
    if non_unit_dims(alpha.shape[:-1]) > 0:
        return (f"alpha shape {list(alpha.shape)}; Coral: alpha must be 1-dimensional (only the innermost "
                "dimension larger than 1; Keras PReLU needs shared_axes=[1, 2])")
    return None


def _three_d_io(ctx: OpContext) -> str | None:
    for t in (ctx.inputs[0], ctx.outputs[0]):
        if t is not None and non_unit_dims(t.shape) > 3:
            return f"tensor {list(t.shape)} is more than 3-dimensional; Coral: input/output is a 3-dimensional tensor"
    return None


def _resize(ctx: OpContext) -> str | None:
    return _three_d_io(ctx)


def _softmax(ctx: OpContext) -> str | None:
    t = ctx.inputs[0]
    if t is None:
        return None
    if non_unit_dims(t.shape) > 1:
        return f"input {list(t.shape)} is not 1-D; Coral: Softmax supports only a 1-D input tensor"
    n = int(np.prod(t.shape)) if t.shape else 1
    if n > MAX_SOFTMAX_ELEMENTS:
        return f"input has {n} elements; Coral: at most {MAX_SOFTMAX_ELEMENTS:,}"
    return None


def _squeeze(ctx: OpContext) -> str | None:
    if ctx.runtime >= 13:
        return None
    t = ctx.inputs[0]
    dims = list(t.shape)
    # Runtime <= 12: only leading 1s may be squeezed (no relayout).
    seen_big = False
    for d in dims[:-1]:
        if d != 1:
            seen_big = True
        elif seen_big:
            return f"input {dims} needs a relayout; runtime <= 12 squeezes leading 1s only"
    return None


def _strided_slice(ctx: OpContext) -> str | None:
    strides = ctx.constant(3)
    if strides is None:
        return "strides are not a constant tensor"
    if np.any(np.ravel(strides) != 1):
        return f"strides {np.ravel(strides).tolist()}; Coral: all strides must be 1"
    o = ctx.options
    if getattr(o, "ellipsisMask", 0):
        return "ellipsis_mask is set; Coral: ellipsis-axis-mask must be 0"
    if getattr(o, "newAxisMask", 0):
        return "new_axis_mask is set; Coral: new-axis-mask must be 0"
    return None


_RULES = (
    OpRule("ADD", "Add", 1, ""),
    OpRule("AVERAGE_POOL_2D", "AveragePool2d", 1, "No fused activation function.", _fused_activation),
    OpRule("CONCATENATION", "Concatenation", 1, "No fused activation function. A compile-time constant input is "
           "only allowed with exactly 2 inputs and must be all zeros (a zero-padding op).", _concatenation),
    OpRule("CONV_2D", "Conv2d", 1, "Same dilation in x and y.", _same_dilation),
    OpRule("DEPTHWISE_CONV_2D", "DepthwiseConv2d", 1, "Runtime <= 12: no dilation; 13+: same dilation in x and y.",
           _depthwise),
    OpRule("EXPAND_DIMS", "ExpandDims", 13, ""),
    OpRule("FULLY_CONNECTED", "FullyConnected", 1, "Only the default weights format. Output tensor is "
           "one-dimensional.", _fully_connected),
    OpRule("L2_NORMALIZATION", "L2Normalization", 1, ""),
    OpRule("LOGISTIC", "Logistic", 1, ""),
    OpRule("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", 14, "Unidirectional LSTM only."),
    OpRule("MAXIMUM", "Maximum", 1, ""),
    OpRule("MAX_POOL_2D", "MaxPool2d", 1, "No fused activation function.", _fused_activation),
    OpRule("MEAN", "Mean", 1, "Runtime <= 12: x/y reduction only. 13+: no reduction in the batch dimension; a "
           "z-reduction needs the z-dimension to be a multiple of 4.", _mean),
    OpRule("MINIMUM", "Minimum", 1, ""),
    OpRule("MUL", "Mul", 1, ""),
    OpRule("PACK", "Pack", 13, "No packing in batch dimension.", _pack),
    OpRule("PAD", "Pad", 1, "Runtime <= 12: x/y padding only. 13+: no padding in batch dimension.", _pad),
    OpRule("PRELU", "PReLU", 13, "Alpha must be constant and 1-dimensional.", _prelu),
    OpRule("QUANTIZE", "Quantize", 13, ""),
    OpRule("REDUCE_MAX", "ReduceMax", 14, "Cannot operate on the batch dimension.", _not_batch_axes("ReduceMax")),
    OpRule("REDUCE_MIN", "ReduceMin", 14, "Cannot operate on the batch dimension.", _not_batch_axes("ReduceMin")),
    OpRule("RELU", "ReLU", 1, ""),
    OpRule("RELU6", "ReLU6", 1, ""),
    OpRule("RELU_N1_TO_1", "ReLUN1To1", 1, ""),
    OpRule("RESHAPE", "Reshape", 1, "Certain reshapes might not be mapped for large tensor sizes.", exact=False),
    OpRule("RESIZE_BILINEAR", "ResizeBilinear", 1, "Input/output is a 3-dimensional tensor. Depending on "
           "input/output size, may not be mapped to avoid loss in precision.", _resize, exact=False),
    OpRule("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighbor", 1, "Input/output is a 3-dimensional tensor. "
           "Depending on input/output size, may not be mapped to avoid loss in precision.", _resize, exact=False),
    OpRule("RSQRT", "Rsqrt", 14, ""),
    OpRule("SLICE", "Slice", 1, ""),
    OpRule("SOFTMAX", "Softmax", 1, "Supports only a 1-D input tensor with at most 16,000 elements.", _softmax),
    OpRule("SPACE_TO_DEPTH", "SpaceToDepth", 1, ""),
    OpRule("SPLIT", "Split", 1, "No splitting in batch dimension.", _split),
    OpRule("SQUEEZE", "Squeeze", 1, "Runtime <= 12: only leading 1s (no relayout); 13+: none.", _squeeze),
    OpRule("SQUARED_DIFFERENCE", "SquaredDifference", 14, ""),
    OpRule("STRIDED_SLICE", "StridedSlice", 1, "All strides 1, ellipsis-axis-mask 0 and new-axis-mask 0.",
           _strided_slice),
    OpRule("SUB", "Sub", 1, ""),
    OpRule("SUM", "Sum", 13, "Cannot operate on the batch dimension.", _not_batch_axes("Sum")),
    OpRule("TANH", "Tanh", 1, ""),
    OpRule("TRANSPOSE", "Transpose", 14, ""),
    OpRule("TRANSPOSE_CONV", "TransposeConv", 13, ""),
)

SUPPORTED_OPS: dict[str, OpRule] = {r.op: r for r in _RULES}

# Ops users commonly hit, with what to do instead (Coral issues and docs).
REPLACEMENTS: dict[str, str] = {
    "HARD_SWISH": "replace hard-swish with ReLU/ReLU6 (Keras MobileNetV3: minimalistic=True; Coral's advice in "
                  "google-coral/edgetpu#353)",
    "LEAKY_RELU": "replace LeakyReLU with ReLU or PReLU (google-coral/edgetpu#272)",
    "DEQUANTIZE": "keep the model full integer: a DEQUANTIZE means float math follows",
    "SHAPE": "remove run-time shape arithmetic (SHAPE, then STRIDED_SLICE/PACK on int32, e.g. a Keras Flatten exported "
             "with a dynamic batch): use a Reshape with a constant shape, or export the Keras model with a batch-1 "
             "input signature before converting",
    "GELU": "replace GELU with ReLU6 or another op from Coral's table",
    "SPLIT_V": "use equal splits (SPLIT) or Slice ops",
}


def rule_for(op: str) -> OpRule | None:
    return SUPPORTED_OPS.get(op)
