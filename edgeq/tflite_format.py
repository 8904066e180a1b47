"""A small, bounds-checked reader for the TFLite flatbuffer format.

Why our own: the interpreter can crash the process on a truncated or hostile file, and the
runtime must work without TensorFlow. Every offset is checked here, so a bad file becomes a
``ModelError`` before any interpreter sees it. Reads only what edgeq needs (tensors,
operators, buffers sizes, metadata) and never copies weight data.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
from typing import Any

from ._schema_enums import BUILTIN_OPS, TENSOR_TYPES
from .errors import ModelError

FILE_IDENTIFIER = b"TFL3"
_MAX_VECTOR = 1 << 28

INTEGER_TYPES = frozenset({"INT8", "UINT8", "INT16", "INT32", "INT64", "BOOL", "UINT32", "UINT16", "INT4"})
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})


class _Reader:
    """Bounds-checked access to flatbuffer tables."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name

    def _fail(self, what: str) -> ModelError:
        return ModelError(f"{self.name}: corrupt TFLite flatbuffer ({what}); re-export the model")

    def u8(self, pos: int) -> int:
        if not 0 <= pos < len(self.data):
            raise self._fail(f"offset {pos} outside the file")
        return self.data[pos]

    def unpack(self, fmt: str, pos: int) -> Any:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise self._fail(f"read of {size} bytes at {pos} outside the file of {len(self.data)} bytes")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self.unpack("<I", 0)

    def field(self, table: int, index: int) -> int:
        """Absolute position of field `index` of the table at `table`, or 0 if absent."""
        vtable = table - self.unpack("<i", table)
        vt_size = self.unpack("<H", vtable)
        if vt_size < 4 or vt_size % 2:
            raise self._fail(f"bad vtable size {vt_size}")
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return 0
        off = self.unpack("<H", vtable + slot)
        return table + off if off else 0

    def scalar(self, table: int, index: int, fmt: str, default: Any = 0) -> Any:
        pos = self.field(table, index)
        return self.unpack(fmt, pos) if pos else default

    def indirect(self, pos: int) -> int:
        return pos + self.unpack("<I", pos)

    def table(self, table: int, index: int) -> int | None:
        pos = self.field(table, index)
        return self.indirect(pos) if pos else None

    def vector(self, table: int, index: int) -> tuple[int, int] | None:
        """(start of elements, length) of a vector field, or None."""
        pos = self.field(table, index)
        if not pos:
            return None
        vec = self.indirect(pos)
        n = self.unpack("<I", vec)
        if n > _MAX_VECTOR:
            raise self._fail(f"vector of {n} elements")
        return vec + 4, n

    def scalars(self, table: int, index: int, fmt: str) -> tuple:
        vec = self.vector(table, index)
        if vec is None:
            return ()
        start, n = vec
        size = struct.calcsize(fmt)
        if start + n * size > len(self.data):
            raise self._fail("vector runs past the end of the file")
        return struct.unpack_from(f"<{n}{fmt}", self.data, start)

    def tables(self, table: int, index: int) -> list[int]:
        vec = self.vector(table, index)
        if vec is None:
            return []
        start, n = vec
        if start + 4 * n > len(self.data):
            raise self._fail("table vector runs past the end of the file")
        return [self.indirect(start + 4 * i) for i in range(n)]

    def string(self, table: int, index: int) -> str:
        pos = self.field(table, index)
        if not pos:
            return ""
        s = self.indirect(pos)
        n = self.unpack("<I", s)
        if s + 4 + n > len(self.data):
            raise self._fail("string runs past the end of the file")
        return self.data[s + 4: s + 4 + n].decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph, as stored in the file."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    buffer: int
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    is_constant: bool = False
    is_sparse: bool = False  # weights stored compressed (DENSIFY input): its buffer is smaller than its shape

    @property
    def quantized(self) -> bool:
        return bool(self.scale)

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)


@dataclasses.dataclass(frozen=True)
class OperatorInfo:
    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    custom_code: str = ""
    version: int = 1


@dataclasses.dataclass(frozen=True)
class SubgraphInfo:
    name: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """The parsed structure of a .tflite file (no weights are copied)."""

    version: int
    subgraphs: tuple[SubgraphInfo, ...]
    buffer_sizes: tuple[int, ...]
    metadata: dict[str, bytes]
    description: str
    size_bytes: int
    name: str = "<bytes>"  # the file it came from, for messages about it

    @property
    def main(self) -> SubgraphInfo:
        return self.subgraphs[0]

    @property
    def custom_ops(self) -> tuple[str, ...]:
        return tuple(sorted({op.custom_code for sg in self.subgraphs for op in sg.operators if op.custom_code}))


def _op_name(code: int, custom: str) -> str:
    if code == 32:  # CUSTOM
        return custom or "CUSTOM"
    return BUILTIN_OPS.get(code, f"BUILTIN_{code}")


def parse_model(data: bytes, name: str = "<bytes>") -> ModelFile:
    """Parse and validate a TFLite flatbuffer. Raises ModelError with a reason on any defect."""
    if len(data) == 0:
        raise ModelError(f"{name}: the file is empty; expected a .tflite model")
    if len(data) < 16:
        raise ModelError(f"{name}: only {len(data)} bytes, too small to be a .tflite model")
    if data[4:8] != FILE_IDENTIFIER:
        hint = ""
        if data[:2] == b"PK":
            hint = " (it looks like a zip/.keras file: convert it with 'edgeq convert' first)"
        elif data[:8] == b"\x89HDF\r\n\x1a\n":
            hint = " (it looks like an HDF5/.h5 Keras file: convert it with 'edgeq convert' first)"
        raise ModelError(f"{name}: not a TFLite model: file identifier is {bytes(data[4:8])!r}, "
                         f"expected {FILE_IDENTIFIER!r}{hint}")
    r = _Reader(data, name)
    try:
        return _parse(r, data, name)
    except ModelError:
        raise
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as exc:
        raise ModelError(f"{name}: corrupt TFLite flatbuffer ({exc}); re-export the model") from exc


def _parse(r: _Reader, data: bytes, name: str) -> ModelFile:
    root = r.root()
    version = r.scalar(root, 0, "<I")
    opcodes = _parse_opcodes(r, root)
    buffers = r.tables(root, 4)
    buffer_sizes = []
    for b in buffers:
        vec = r.vector(b, 0)
        size = vec[1] if vec else r.scalar(b, 2, "<Q")
        buffer_sizes.append(int(size))
    subgraphs = [_parse_subgraph(r, sg, opcodes, buffer_sizes, name) for sg in r.tables(root, 2)]
    if not subgraphs:
        raise ModelError(f"{name}: the TFLite model has no subgraph")
    metadata = {}
    for m in r.tables(root, 6):
        bi = r.scalar(m, 1, "<I")
        if bi >= len(buffers):
            raise ModelError(f"{name}: corrupt TFLite flatbuffer (metadata refers to buffer {bi})")
        metadata[r.string(m, 0)] = _buffer_bytes(r, buffers[bi])
    return ModelFile(version=int(version), subgraphs=tuple(subgraphs), buffer_sizes=tuple(buffer_sizes),
                     metadata=metadata, description=r.string(root, 3), size_bytes=len(data),
                     name=name)


def _parse_opcodes(r: _Reader, root: int) -> list[tuple[int, str, int]]:
    """(builtin code, custom code, version) per operator code; old models set only the deprecated code."""
    opcodes = []
    for oc in r.tables(root, 1):
        deprecated = r.scalar(oc, 0, "<b")
        builtin = r.scalar(oc, 3, "<i")
        code = max(int(deprecated), int(builtin))
        opcodes.append((code, r.string(oc, 1), r.scalar(oc, 2, "<i", 1)))
    return opcodes


def _parse_tensor(r: _Reader, t: int, index: int, buffer_sizes: list[int]) -> TensorInfo:
    q = r.table(t, 4)
    scale: tuple = ()
    zp: tuple = ()
    qdim = 0
    if q is not None:
        scale = tuple(float(s) for s in r.scalars(q, 2, "f"))
        zp = tuple(int(z) for z in r.scalars(q, 3, "q"))
        qdim = r.scalar(q, 6, "<i")
    buf = r.scalar(t, 2, "<I")
    dtype_code = r.scalar(t, 1, "<b")
    shape = tuple(int(d) for d in r.scalars(t, 0, "i"))
    sig = tuple(int(d) for d in r.scalars(t, 7, "i")) or shape
    return TensorInfo(index=index, name=r.string(t, 3), shape=shape, shape_signature=sig,
                      dtype=TENSOR_TYPES.get(dtype_code, f"TYPE_{dtype_code}"), buffer=buf,
                      scale=scale, zero_point=zp, quantized_dimension=qdim,
                      is_constant=0 < buf < len(buffer_sizes) and buffer_sizes[buf] > 0,
                      is_sparse=r.table(t, 6) is not None)


def _parse_subgraph(r: _Reader, sg: int, opcodes: list[tuple[int, str, int]], buffer_sizes: list[int],
                    name: str) -> SubgraphInfo:
    """Tensors and operators of one subgraph; every index they use is checked against what exists."""
    tensors = [_parse_tensor(r, t, ti, buffer_sizes) for ti, t in enumerate(r.tables(sg, 0))]
    ops = []
    for oi, o in enumerate(r.tables(sg, 3)):
        idx = r.scalar(o, 0, "<I")
        if idx >= len(opcodes):
            raise ModelError(f"{name}: corrupt TFLite flatbuffer (operator {oi} uses opcode "
                             f"{idx} of {len(opcodes)}); re-export the model")
        code, custom, ver = opcodes[idx]
        ins = tuple(int(i) for i in r.scalars(o, 1, "i"))
        outs = tuple(int(i) for i in r.scalars(o, 2, "i"))
        for i in ins + outs:
            if i >= len(tensors) or i < -1:
                raise ModelError(f"{name}: corrupt TFLite flatbuffer (operator {oi} refers to "
                                 f"tensor {i} of {len(tensors)}); re-export the model")
        ops.append(OperatorInfo(oi, _op_name(code, custom), ins, outs, custom if code == 32 else "", ver))
    ins = tuple(int(i) for i in r.scalars(sg, 1, "i"))
    outs = tuple(int(i) for i in r.scalars(sg, 2, "i"))
    for i in ins + outs:
        if not 0 <= i < len(tensors):
            raise ModelError(f"{name}: corrupt TFLite flatbuffer (subgraph input/output {i} of "
                             f"{len(tensors)} tensors); re-export the model")
    return SubgraphInfo(r.string(sg, 4), tuple(tensors), tuple(ops), ins, outs)


def _buffer_bytes(r: _Reader, buf: int) -> bytes:
    vec = r.vector(buf, 0)
    if vec:
        start, n = vec
        if start + n > len(r.data):
            raise r._fail("buffer runs past the end of the file")
        return bytes(r.data[start:start + n])
    off, size = r.scalar(buf, 1, "<Q"), r.scalar(buf, 2, "<Q")
    if off and size:
        if off + size > len(r.data):
            raise r._fail("external buffer runs past the end of the file")
        return bytes(r.data[off:off + size])
    return b""


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a .tflite file, with errors that name the path."""
    p = pathlib.Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"{p} is a directory; expected a .tflite file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror or exc}") from exc


def load_model_file(path_or_bytes: str | os.PathLike | bytes) -> tuple[bytes, ModelFile]:
    """Read and validate a model; returns the raw bytes and the parsed structure."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        return data, parse_model(data, "<model bytes>")
    data = read_model_bytes(path_or_bytes)
    return data, parse_model(data, str(path_or_bytes))


# ---- Edge TPU compiled models (read here: the runtime needs them without edgeq.edgetpu) ----------
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


def is_edgetpu_compiled(model: ModelFile) -> bool:
    """True for a model produced by edgetpu_compiler: it holds the ``edgetpu-custom-op``.

    Such a model needs the ``edgetpu`` delegate (libedgetpu) to run its custom op at all.
    """
    return EDGETPU_CUSTOM_OP in model.custom_ops
