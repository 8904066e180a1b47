"""Engines, the objects that actually run the graph, and how a classic interpreter is built for one.

A delegate's loader (see ``delegates``) turns a ``LoadRequest`` into a ``Loaded``: the engine
plus what the ``DelegateReport`` says about it.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._native import quiet_native_stderr
from ..errors import DelegateUnavailableError, ModelError
from ..modelinfo import TensorSpec
from ..tflite_format import ModelFile
from .backends import Backend
from .report import DelegateAttempt

log = logging.getLogger(__name__)

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
                "int16": np.int16, "int32": np.int32, "int64": np.int64, "bool": np.bool_,
                "float64": np.float64, "uint16": np.uint16, "uint32": np.uint32}


@dataclasses.dataclass(frozen=True)
class LoadRequest:
    """Everything a delegate loader gets: the validated model, the backend and the user's options."""

    backend: Backend
    data: bytes
    model_file: ModelFile
    source: str
    num_threads: int | None
    options: dict[str, Any]
    compiled_for_tpu: bool


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A loader's result: the engine, and the delegate's part of the ``DelegateReport``.

    ``attempts`` is empty for a delegate asked for by name (the report then records it as
    "requested"); a delegate that chooses among others (``auto``) lists each one it tried.
    """

    engine: Any
    delegate: str
    delegated_nodes: int | None
    cpu_delegated_nodes: int = 0
    details: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    attempts: tuple[DelegateAttempt, ...] = ()


class InterpreterEngine:
    """A classic TFLite Interpreter (all backends; XNNPACK, builtin kernels, external delegates)."""

    def __init__(self, interpreter: Any, inputs: Sequence[int], outputs: Sequence[int], keep: Sequence[Any]):
        self.interpreter = interpreter
        self._set = interpreter.set_tensor
        self._invoke = interpreter.invoke
        self._get = interpreter.get_tensor
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self._keep = list(keep)  # delegates must outlive the interpreter

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        for index, tensor in zip(self._inputs, tensors):
            self._set(index, tensor)
        self._invoke()
        return [self._get(i) for i in self._outputs]

    def close(self) -> None:
        self._set = self._invoke = self._get = None
        self.interpreter = None
        self._keep.clear()


class CompiledModelEngine:
    """LiteRT's CompiledModel (GPU or CPU accelerator): preallocated input/output TensorBuffers.

    The buffers come in the order of the model's (possibly placeholder) signature, which need not
    be the subgraph's tensor order (TensorFlow sorts signature inputs by name): they are matched to
    the model's inputs and outputs by tensor index, so ``run`` takes and returns the model's order.
    """

    def __init__(self, compiled: Any, model_file: ModelFile, model_data: bytes):
        self.compiled = compiled
        self._model_data = model_data  # the native model may point into these bytes: keep them alive
        sg = model_file.main
        ins = compiled.create_input_buffers(0)
        outs = compiled.create_output_buffers(0)
        in_order, out_order = _signature_order(compiled, sg.inputs, sg.outputs)
        self._sig_ins, self._sig_outs = ins, outs      # what run_by_index takes: signature order
        self._ins = [ins[i] for i in in_order]          # the same buffers in the model's order
        self._outs = [outs[i] for i in out_order]
        self._out_meta = [(int(np.prod(s.shape)), NUMPY_DTYPES[s.dtype], tuple(s.shape))
                          for s in (TensorSpec.from_tensor(sg.tensors[i]) for i in sg.outputs)]

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        for buf, tensor in zip(self._ins, tensors):
            buf.write(tensor)
        self.compiled.run_by_index(0, self._sig_ins, self._sig_outs)
        return [buf.read(n, dtype).reshape(shape) for buf, (n, dtype, shape) in zip(self._outs, self._out_meta)]

    def close(self) -> None:
        for buf in self._sig_ins + self._sig_outs:
            buf.destroy()
        self._ins, self._outs, self._sig_ins, self._sig_outs = [], [], [], []
        self.compiled.close()
        self.compiled = None
        self._model_data = b""


def _signature_order(compiled: Any, inputs: Sequence[int], outputs: Sequence[int]) -> tuple[list[int], list[int]]:
    """For each model input/output (by tensor index), its position among the signature's buffers."""
    key = next(iter(compiled.get_signature_list()))
    sig = compiled.get_signature_list()[key]
    in_details, out_details = compiled.get_input_tensor_details(key), compiled.get_output_tensor_details(key)
    sig_in = [int(in_details[name]["index"]) for name in sig["inputs"]]
    sig_out = [int(out_details[name]["index"]) for name in sig["outputs"]]
    if sorted(sig_in) != sorted(inputs) or sorted(sig_out) != sorted(outputs):
        raise ModelError(f"the CompiledModel signature {key!r} has tensors {sig_in} -> {sig_out}, not the model's "
                         f"inputs {list(inputs)} -> outputs {list(outputs)}; use an Interpreter delegate (xnnpack)")
    return [sig_in.index(t) for t in inputs], [sig_out.index(t) for t in outputs]


def interpreter_engine(req: LoadRequest, name: str, *, resolver: str | None = None,
                       delegate: Any = None, interpreter_kwargs: dict[str, Any] | None = None) -> Loaded:
    """A classic Interpreter with an OpResolverType ``resolver`` and/or a loaded external ``delegate``.

    Without either, the backend's default XNNPACK delegate runs what it can, and counts as the
    delegate. ``name`` is the delegate's name in errors and in the report. ``interpreter_kwargs``:
    more Interpreter arguments (e.g. ``experimental_default_delegate_latest_features``).
    """
    be, mf = req.backend, req.model_file
    external = [delegate] if delegate is not None else []
    kwargs: dict[str, Any] = {"model_content": req.data, **(interpreter_kwargs or {})}
    if req.num_threads is not None:
        kwargs["num_threads"] = req.num_threads
    if resolver is not None:
        if be.op_resolver_type is None:
            raise DelegateUnavailableError(f"delegate {name!r} needs OpResolverType, which {be.name} "
                                           f"{be.version} does not have; use ai-edge-litert")
        kwargs["experimental_op_resolver_type"] = getattr(be.op_resolver_type, resolver)
    if external:
        kwargs["experimental_delegates"] = external
    interpreter, ops_before = _create_interpreter(be, kwargs, req.source, mf, name)
    n_original = len(mf.main.operators)
    ops_after = _ops(interpreter)
    own = sum(delegated_node_counts(ops_before, n_original)) if ops_before is not None else 0
    all_counts = sum(delegated_node_counts(ops_after, n_original)) if ops_after is not None else 0
    if external:
        delegated, cpu_delegated = own, all_counts - own
    elif resolver is None:  # the default XNNPACK delegate
        delegated, cpu_delegated = all_counts, 0
    else:
        delegated, cpu_delegated = 0, 0
    engine = InterpreterEngine(interpreter, mf.main.inputs, mf.main.outputs, external)
    return Loaded(engine=engine, delegate=name, delegated_nodes=None if ops_after is None else delegated,
                  cpu_delegated_nodes=cpu_delegated,
                  details=(("num_threads", str(req.num_threads) if req.num_threads else "default"),))


def _create_interpreter(be: Backend, kwargs: dict[str, Any], source: str, mf: ModelFile,
                        name: str) -> tuple[Any, list[dict[str, Any]] | None]:
    """(interpreter with tensors allocated, its nodes before allocation), errors as ModelError."""
    try:
        # "INFO: Created TensorFlow Lite XNNPACK delegate" and friends: shown with --verbose only.
        with quiet_native_stderr(not log.isEnabledFor(logging.DEBUG)) as native_log:
            interpreter = be.interpreter_class(**kwargs)
            ops_before = _ops(interpreter)
            interpreter.allocate_tensors()
        for line in native_log:
            log.debug("%s", line)
    except (RuntimeError, ValueError) as exc:
        msg = str(exc).strip()
        if "unresolved custom op" in msg:
            raise ModelError(f"{source}: custom op(s) {', '.join(mf.custom_ops)} not supported by delegate "
                             f"{name!r}: {msg.splitlines()[0]}") from exc
        raise ModelError(f"{source}: the interpreter rejected the model with delegate {name!r}: "
                         f"{msg.splitlines()[0] if msg else type(exc).__name__}") from exc
    return interpreter, ops_before


def _ops(interpreter: Any) -> list[dict[str, Any]] | None:
    """The interpreter's nodes (the model's, then one DELEGATE node per delegated partition)."""
    getter = getattr(interpreter, "_get_ops_details", None)
    if getter is None:
        return None
    try:
        return getter()
    except (RuntimeError, ValueError, AttributeError):
        return None


def delegated_node_counts(ops: list[dict[str, Any]], n_original: int) -> list[int]:
    """For each DELEGATE node (after the model's own nodes), how many original nodes it replaced.

    The Python API exposes no execution plan, so the partition is recovered from the graph:
    the nodes on the paths from a delegate node's inputs to its outputs are the ones it runs.
    """
    producer: dict[int, int] = {}
    for op in ops[:n_original]:
        for t in op["outputs"]:
            producer[int(t)] = int(op["index"])
    counts = []
    for op in ops[n_original:]:
        if op.get("op_name") != "DELEGATE":
            continue
        boundary = {int(t) for t in op["inputs"]}
        covered: set[int] = set()
        stack = [int(t) for t in op["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or node in covered:
                continue
            covered.add(node)
            stack.extend(int(i) for i in ops[node]["inputs"] if int(i) >= 0)
        counts.append(len(covered))
    return counts
