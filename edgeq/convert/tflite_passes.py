"""Graph passes on a .tflite flatbuffer (ai-edge-litert's schema object API), no TensorFlow needed.

Why they exist: real float models are not in the shape ai-edge-quantizer expects. MediaPipe's
keep fp16 weights behind DEQUANTIZE (sparse ones behind DENSIFY) — the quantizer takes those for
activations — have no signature def, and run RELU as separate ops, which XNNPACK does not take in
int8 (each one splits the delegated graph). Each pass is exact on the float model.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._native import quiet_native_stderr

_FOLDABLE = ("DEQUANTIZE", "DENSIFY")
_FUSABLE_INTO = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "ADD": "AddOptions"}
_ACTIVATIONS = {"RELU": "RELU", "RELU6": "RELU6"}


def schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def op_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def op_name(model: Any, op: Any, names: dict[int, str]) -> str:
    """The builtin op name of ``op`` ("" for unknown codes); ``unpack`` has already merged the deprecated code."""
    return names.get(model.operatorCodes[op.opcodeIndex].builtinCode, "")


def unpack(buf: bytes) -> Any:
    s = schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))
    for code in model.operatorCodes:  # old models set only the deprecated (int8) field
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)
    return model


def pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def fold_constants(model: Any, buf: bytes) -> int:
    """Replace DEQUANTIZE/DENSIFY of constants by fp32 constant buffers computed by LiteRT's kernels
    (so every sparse format is handled as LiteRT handles it). Returns the number of ops folded."""
    s, names = schema(), op_names()
    sg = model.subgraphs[0]
    const = {i for i, t in enumerate(sg.tensors) if _has_data(model.buffers[t.buffer])}
    keep, targets = [], []
    for op in sg.operators:
        name = op_name(model, op, names)
        if name in _FOLDABLE and all(i in const for i in op.inputs if i >= 0):
            targets.append(int(op.outputs[0]))
            const.add(int(op.outputs[0]))
        else:
            keep.append(op)
    if not targets:
        return 0
    values = _constant_values(buf, targets)
    for t in targets:
        b = s.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(values[t], dtype=np.float32).tobytes(), np.uint8)
        model.buffers.append(b)
        sg.tensors[t].buffer = len(model.buffers) - 1
        sg.tensors[t].type = s.TensorType.FLOAT32
    sg.operators = keep
    return len(targets)


def _has_data(buffer: Any) -> bool:
    return buffer.data is not None and len(buffer.data) > 0


def _constant_values(buf: bytes, tensors: list[int]) -> dict[int, np.ndarray]:
    """The tensors' values after one run (constants: the input does not matter), without XNNPACK,
    which would fold them internally and leave the tensors unwritten."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings(), quiet_native_stderr(True):
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is the use here
        it = Interpreter(model_content=bytes(buf), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        return {t: np.array(it.get_tensor(t), dtype=np.float32) for t in tensors}


def fuse_activations(model: Any) -> int:
    """Fold a RELU/RELU6 into the CONV_2D/DEPTHWISE_CONV_2D/ADD that alone feeds it (as TensorFlow's
    converter does): in int8 a separate RELU is not taken by XNNPACK and splits the delegated graph."""
    s, names = schema(), op_names()
    sg = model.subgraphs[0]
    consumers: dict[int, int] = {}
    for op in sg.operators:
        for i in op.inputs:
            consumers[int(i)] = consumers.get(int(i), 0) + 1
    producer = {int(o): op for op in sg.operators for o in op.outputs}
    graph_out = {int(i) for i in sg.outputs}
    drop = set()
    for op in sg.operators:
        act = _ACTIVATIONS.get(op_name(model, op, names))
        src = producer.get(int(op.inputs[0])) if act else None
        if src is None or consumers.get(int(op.inputs[0]), 0) != 1 or int(op.inputs[0]) in graph_out:
            continue
        if op_name(model, src, names) not in _FUSABLE_INTO:
            continue
        if src.builtinOptions is None or src.builtinOptions.fusedActivationFunction != 0:
            continue
        src.builtinOptions.fusedActivationFunction = getattr(s.ActivationFunctionType, act)
        src.outputs = np.array([int(op.outputs[0])], np.int32)
        drop.add(id(op))
    sg.operators = [op for op in sg.operators if id(op) not in drop]
    return len(drop)


def _replace_ops(model: Any, op_type: str, build: Callable[[Any, Any, Any], list[Any]]) -> int:
    """Every ``op_type`` op of the main subgraph replaced, in place, by ``build(op, schema, subgraph)``'s ops."""
    s, names = schema(), op_names()
    sg = model.subgraphs[0]
    out_ops, count = [], 0
    for op in sg.operators:
        if op_name(model, op, names) == op_type:
            out_ops += build(op, s, sg)
            count += 1
        else:
            out_ops.append(op)
    sg.operators = out_ops
    return count


def depth_to_space_as_transpose(model: Any) -> int:
    """Rewrite DEPTH_TO_SPACE (which ai-edge-quantizer cannot quantize) as RESHAPE -> TRANSPOSE -> RESHAPE,
    the same data movement: [N,H,W,b*b*C] -> [N*H, W, b, b*C] -> perm (0,2,1,3) -> [N, H*b, W*b, C]."""
    def build(op: Any, s: Any, sg: Any) -> list[Any]:
        b = int(op.builtinOptions.blockSize)
        n, h, w, c = (int(d) for d in sg.tensors[op.inputs[0]].shape)
        mid = [n * h, w, b, c // b]
        t1 = _tensor(model, s, sg, "d2s_a", mid, s.TensorType.FLOAT32)
        t2 = _tensor(model, s, sg, "d2s_b", [n * h, b, w, c // b], s.TensorType.FLOAT32)
        perm = _tensor(model, s, sg, "d2s_perm", [4], s.TensorType.INT32, np.array([0, 2, 1, 3], np.int32))
        shape1 = _tensor(model, s, sg, "d2s_shape1", [4], s.TensorType.INT32, np.array(mid, np.int32))
        final = [n, h * b, w * b, c // (b * b)]
        shape2 = _tensor(model, s, sg, "d2s_shape2", [4], s.TensorType.INT32, np.array(final, np.int32))
        return [_new_op(model, s, "RESHAPE", [int(op.inputs[0]), shape1], [t1]),
                _new_op(model, s, "TRANSPOSE", [t1, perm], [t2]),
                _new_op(model, s, "RESHAPE", [t2, shape2], [int(op.outputs[0])])]
    return _replace_ops(model, "DEPTH_TO_SPACE", build)


def prelu_as_max(model: Any) -> int:
    """Rewrite PRELU (which ai-edge-quantizer cannot quantize) exactly with ops it can: with every slope in
    [0, 1], PRELU(x) = MAXIMUM(x, alpha * x); otherwise RELU(x) + alpha * (x - RELU(x)), RELU as a 1x1
    depthwise convolution (see ``_relu_as_depthwise``)."""
    def build(op: Any, s: Any, sg: Any) -> list[Any]:
        x, alpha, y = int(op.inputs[0]), int(op.inputs[1]), int(op.outputs[0])
        data = model.buffers[sg.tensors[alpha].buffer].data
        a = np.frombuffer(bytes(data) if data is not None else b"", np.float32)
        shape = [int(d) for d in sg.tensors[x].shape]
        scaled = _tensor(model, s, sg, "prelu_ax", shape, s.TensorType.FLOAT32)
        if a.size and a.min() >= 0 and a.max() <= 1:
            return [_new_op(model, s, "MUL", [x, alpha], [scaled]), _new_op(model, s, "MAXIMUM", [x, scaled], [y])]
        pos = _tensor(model, s, sg, "prelu_pos", shape, s.TensorType.FLOAT32)
        neg = _tensor(model, s, sg, "prelu_neg", shape, s.TensorType.FLOAT32)
        return [_relu_as_depthwise(model, s, sg, x, pos), _new_op(model, s, "SUB", [x, pos], [neg]),
                _new_op(model, s, "MUL", [neg, alpha], [scaled]), _new_op(model, s, "ADD", [pos, scaled], [y])]
    return _replace_ops(model, "PRELU", build)


def _relu_as_depthwise(model: Any, s: Any, sg: Any, x: int, out: int) -> Any:
    """RELU(x) as a 1x1 DEPTHWISE_CONV_2D with unit weights and a fused RELU: exact in float and in int8
    (a weight of 1 quantizes exactly), and XNNPACK delegates it, where it leaves a lone int8 RELU out."""
    channels = int(sg.tensors[x].shape[-1])
    ones = _tensor(model, s, sg, "relu_w", [1, 1, 1, channels], s.TensorType.FLOAT32, np.ones(channels, np.float32))
    zeros = _tensor(model, s, sg, "relu_b", [channels], s.TensorType.FLOAT32, np.zeros(channels, np.float32))
    op = _new_op(model, s, "DEPTHWISE_CONV_2D", [x, ones, zeros], [out])
    o = op.builtinOptions
    o.padding, o.strideW, o.strideH, o.depthMultiplier = s.Padding.VALID, 1, 1, 1
    o.dilationWFactor = o.dilationHFactor = 1
    o.fusedActivationFunction = s.ActivationFunctionType.RELU
    return op


def _tensor(model: Any, s: Any, sg: Any, name: str, shape: list[int], dtype: int,
            value: np.ndarray | None = None) -> int:
    t = s.TensorT()
    t.shape, t.type, t.name = np.array(shape, np.int32), dtype, f"{name}_{len(sg.tensors)}".encode()
    buf = s.BufferT()
    if value is not None:
        buf.data = np.frombuffer(value.tobytes(), np.uint8)
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _new_op(model: Any, s: Any, name: str, inputs: list[int], outputs: list[int]) -> Any:
    code = getattr(s.BuiltinOperator, name)
    index = next((i for i, c in enumerate(model.operatorCodes) if c.builtinCode == code), None)
    if index is None:
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
        index = len(model.operatorCodes) - 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = index, np.array(inputs, np.int32), np.array(outputs, np.int32)
    options = {"MUL": "MulOptions", "SUB": "SubOptions", "ADD": "AddOptions", "RESHAPE": "ReshapeOptions",
               "TRANSPOSE": "TransposeOptions", "MAXIMUM": "MaximumMinimumOptions",
               "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions"}.get(name)
    if options is not None:
        op.builtinOptionsType = getattr(s.BuiltinOptions, options)
        op.builtinOptions = getattr(s, options + "T")()
    return op


def add_signature(model: Any, key: str) -> None:
    """ai-edge-quantizer calibrates per signature; MediaPipe's models have none."""
    s = schema()
    sg = model.subgraphs[0]

    def tensor_map(i: int) -> Any:
        m = s.TensorMapT()
        m.name, m.tensorIndex = sg.tensors[i].name, int(i)
        return m
    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = key, 0
    sig.inputs = [tensor_map(i) for i in sg.inputs]
    sig.outputs = [tensor_map(i) for i in sg.outputs]
    model.signatureDefs = [sig]


def inline_buffers(data: bytes) -> bytes:
    """Move buffers stored after the flatbuffer (offset/size, as ai-edge-quantizer writes them) inside it,
    and compact: edgeq's metadata step and the object API repack only in-flatbuffer data."""
    model = unpack(data)
    for b in model.buffers:
        if b.offset and b.offset > 1:
            b.data = np.frombuffer(data[b.offset:b.offset + b.size], np.uint8)
            b.offset = b.size = 0
    compact(model)
    return pack(model)


def compact(model: Any) -> None:
    """Drop tensors no op or graph I/O uses (the fp16 originals of folded constants, float copies of
    quantized weights) and the buffers no tensor uses, so the file holds only what runs."""
    for k, sg in enumerate(model.subgraphs):
        used = sorted({int(i) for op in sg.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
                      | {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs})
        remap = {old: new for new, old in enumerate(used)}
        sg.tensors = [sg.tensors[i] for i in used]
        for op in sg.operators:
            op.inputs = np.array([remap[int(i)] if i >= 0 else -1 for i in op.inputs], np.int32)
            op.outputs = np.array([remap[int(i)] for i in op.outputs], np.int32)
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = np.array([remap[int(i)] for i in op.intermediates if int(i) in remap], np.int32)
        sg.inputs = np.array([remap[int(i)] for i in sg.inputs], np.int32)
        sg.outputs = np.array([remap[int(i)] for i in sg.outputs], np.int32)
        for sig in model.signatureDefs or []:
            if sig.subgraphIndex == k:
                for m in list(sig.inputs or []) + list(sig.outputs or []):
                    m.tensorIndex = remap[int(m.tensorIndex)]
    _drop_dead_buffers(model)


def _drop_dead_buffers(model: Any) -> None:
    """Remove buffers no tensor or metadata uses, renumbering the rest (buffer 0 stays the empty one)."""
    live = {0} | {int(t.buffer) for sg in model.subgraphs for t in sg.tensors} \
        | {int(m.buffer) for m in model.metadata or []}
    remap = {old: new for new, old in enumerate(sorted(live))}
    model.buffers = [model.buffers[i] for i in sorted(live)]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = remap[int(t.buffer)]
    for m in model.metadata or []:
        m.buffer = remap[int(m.buffer)]
