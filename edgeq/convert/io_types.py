"""Change a quantized model's input/output type (int8 -> uint8 or float32) by wrapping its graph.

ai-edge-quantizer writes int8 model I/O; Coral's convention is uint8 and ``--float-io`` keeps float
I/O. TFLite's converter does this with QUANTIZE/DEQUANTIZE ops at the edges; this does the same on
the flatbuffer: a uint8 tensor (same scale, zero point + 128) and a QUANTIZE (a requantization, exact)
for uint8, or a float tensor and QUANTIZE/DEQUANTIZE for float.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConversionError

_QUANTIZE, _DEQUANTIZE = 114, 6


def set_io_dtype(model_bytes: bytes, io_dtype: str) -> bytes:
    """The model with every int8 graph input/output re-typed to ``io_dtype`` ("int8", and "int16" which
    ai-edge-quantizer's int16x8 writes itself: unchanged)."""
    if io_dtype in ("int8", "int16"):
        return model_bytes
    if io_dtype not in ("uint8", "float32"):
        raise ConversionError(f"model I/O type {io_dtype!r} is not available for this source; use int8, uint8 "
                              "or --float-io")
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    sg = model.subgraphs[0]
    new_type = schema.TensorType.UINT8 if io_dtype == "uint8" else schema.TensorType.FLOAT32
    quant_op = _opcode(model, schema, _QUANTIZE)
    out_op = quant_op if io_dtype == "uint8" else _opcode(model, schema, _DEQUANTIZE)
    remap: dict[int, int] = {}
    head, tail = [], []
    sg.inputs, sg.outputs = np.array(sg.inputs, np.int32), np.array(sg.outputs, np.int32)  # writable copies
    for pos, t in enumerate(sg.inputs):
        if sg.tensors[t].type != schema.TensorType.INT8:
            continue
        n = _outer_tensor(sg, schema, int(t), new_type)
        head.append(_op(schema, quant_op, n, int(t)))
        sg.inputs[pos] = remap[int(t)] = n
    for pos, t in enumerate(sg.outputs):
        if sg.tensors[t].type != schema.TensorType.INT8:
            continue
        n = _outer_tensor(sg, schema, int(t), new_type)
        tail.append(_op(schema, out_op, int(t), n))
        sg.outputs[pos] = remap[int(t)] = n
    sg.operators = head + list(sg.operators) + tail
    for sig in model.signatureDefs or []:
        for m in list(sig.inputs or []) + list(sig.outputs or []):
            m.tensorIndex = remap.get(int(m.tensorIndex), m.tensorIndex)
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(model: Any, schema: Any, code: int) -> int:
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 2
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _outer_tensor(sg: Any, schema: Any, inner: int, new_type: int) -> int:
    """A new I/O tensor beside ``inner`` (which keeps its int8 type and is renamed)."""
    src = sg.tensors[inner]
    t = schema.TensorT()
    t.shape = np.array(src.shape, dtype=np.int32)
    t.shapeSignature = None if src.shapeSignature is None else np.array(src.shapeSignature, dtype=np.int32)
    t.type, t.name, t.buffer = new_type, src.name, 0
    if new_type == schema.TensorType.UINT8:
        q = schema.QuantizationParametersT()
        q.scale = np.array(src.quantization.scale, dtype=np.float32)
        q.zeroPoint = np.array(src.quantization.zeroPoint, dtype=np.int64) + 128
        t.quantization = q
    name = src.name.decode() if isinstance(src.name, bytes) else str(src.name)
    src.name = (name + "_int8").encode()
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _op(schema: Any, opcode: int, inp: int, out: int) -> Any:
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, np.array([inp], np.int32), np.array([out], np.int32)
    return op
