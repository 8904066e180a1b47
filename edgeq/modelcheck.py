"""Structural checks a native interpreter does not make before it trusts a model.

A file can be a valid flatbuffer and still describe a broken graph: a convolution without its
filter, a weight buffer shorter than its shape, a scale that is NaN. TFLite's kernels (and XNNPACK's)
read such models out of bounds and kill the process. These checks are cheap (no weights are read)
and name the operator; the child-process trial run (``edgeq.runtime.probe``) catches the rest.
"""
from __future__ import annotations

import math

from .errors import ModelError
from .tflite_format import ModelFile, SubgraphInfo, TensorInfo

# Bytes per element of fixed-size tensor types (INT4 packs two per byte).
_ITEM_BITS = {"FLOAT32": 32, "FLOAT16": 16, "BFLOAT16": 16, "FLOAT64": 64, "INT32": 32, "UINT32": 32, "INT64": 64,
              "UINT64": 64, "INT16": 16, "UINT16": 16, "INT8": 8, "UINT8": 8, "BOOL": 8, "INT4": 4,
              "COMPLEX64": 64, "COMPLEX128": 128}

# Builtin op -> the input positions that must name a tensor (kernels dereference them unchecked).
REQUIRED_INPUTS: dict[str, tuple[int, ...]] = {
    "CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "TRANSPOSE_CONV": (0, 1, 2), "FULLY_CONNECTED": (0, 1),
    "CONV_3D": (0, 1), "ADD": (0, 1), "SUB": (0, 1), "MUL": (0, 1), "DIV": (0, 1), "CONCATENATION": (0,),
    "AVERAGE_POOL_2D": (0,), "MAX_POOL_2D": (0,), "RESHAPE": (0,), "SOFTMAX": (0,), "LOGISTIC": (0,),
    "QUANTIZE": (0,), "DEQUANTIZE": (0,), "PAD": (0, 1), "MEAN": (0, 1), "PRELU": (0, 1),
}
# Ops whose kernels (XNNPACK's included) expect exactly this many inputs when they get any bias slot.
EXACT_INPUTS: dict[str, int] = {"DEPTHWISE_CONV_2D": 3, "CONV_2D": 3}


def check_structure(model: ModelFile) -> None:
    """Raise ModelError naming the first defect: missing required inputs, short buffers, bad scales."""
    for si, sg in enumerate(model.subgraphs):
        where = f"{model.name}: subgraph {si}" if len(model.subgraphs) > 1 else model.name
        _check_operators(sg, where)
        for t in sg.tensors:
            _check_tensor(t, model, where)


def _check_operators(sg: SubgraphInfo, where: str) -> None:
    for op in sg.operators:
        need = REQUIRED_INPUTS.get(op.op, ())
        missing = [i for i in need if i >= len(op.inputs) or op.inputs[i] < 0]
        if missing:
            raise ModelError(f"{where}: operator {op.index} ({op.op}) lacks required input(s) {missing} "
                             f"(it has {list(op.inputs)}); the graph is broken — re-export the model")
        exact = EXACT_INPUTS.get(op.op)
        if exact is not None and len(op.inputs) != exact:
            raise ModelError(f"{where}: operator {op.index} ({op.op}) has {len(op.inputs)} inputs, expected "
                             f"{exact} (input, filter, bias); the graph is broken — re-export the model")


def _check_tensor(t: TensorInfo, model: ModelFile, where: str) -> None:
    for s in t.scale:
        if not math.isfinite(s) or s <= 0:
            raise ModelError(f"{where}: tensor {t.index} ({t.name!r}) has quantization scale {s}; scales must be "
                             "finite and positive — the file is corrupt, re-export the model")
    if any(d < 0 for d in t.shape) and t.is_constant:
        raise ModelError(f"{where}: constant tensor {t.index} ({t.name!r}) has a negative dimension {list(t.shape)}")
    bits = _ITEM_BITS.get(t.dtype)
    if not t.is_constant or t.is_sparse or bits is None or any(d < 0 for d in t.shape):
        return
    count = math.prod(t.shape)
    need = (count * bits + 7) // 8
    have = model.buffer_sizes[t.buffer]
    if have < need:
        raise ModelError(f"{where}: constant tensor {t.index} ({t.name!r}, {t.dtype} {list(t.shape)}) needs "
                         f"{need} bytes but its buffer holds {have}; the weights are cut short — re-export the model")
