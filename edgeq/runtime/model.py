"""``EdgeModel``: one API to run a .tflite model on whatever the device has, with little overhead.

The interpreter is created by :func:`load` after the file has been validated by edgeq's own
bounds-checked reader, so a truncated or hostile file is a ``ModelError``, never a crash.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._native import quiet_native_stderr
from ..edgetpu.check import is_edgetpu_compiled
from ..edgetpu.ops import EDGETPU_CUSTOM_OP
from ..errors import DataError, DelegateError, DelegateUnavailableError, ModelError, UsageError
from ..metadata import EdgeqMetadata, read_metadata
from ..modelinfo import TensorSpec
from ..preprocess import FrameTransform, Preprocess
from ..tflite_format import ModelFile, load_model_file
from . import delegates as dl
from .backends import Backend, get_backend

log = logging.getLogger(__name__)

_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
                 "int16": np.int16, "int32": np.int32, "int64": np.int64, "bool": np.bool_,
                 "float64": np.float64, "uint16": np.uint16, "uint32": np.uint32}


@dataclasses.dataclass(frozen=True)
class Classification:
    """One ranked class of a classifier's output."""

    index: int
    label: str
    score: float


# ---- engines: the object that actually runs the graph ----------------------------------------
class _InterpreterEngine:
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


class _CompiledModelEngine:
    """LiteRT's CompiledModel with the GPU accelerator: preallocated input/output TensorBuffers."""

    def __init__(self, compiled: Any, out_specs: Sequence[TensorSpec], model_data: bytes):
        self.compiled = compiled
        self._model_data = model_data  # the native model may point into these bytes: keep them alive
        self._ins = compiled.create_input_buffers(0)
        self._outs = compiled.create_output_buffers(0)
        self._out_meta = [(int(np.prod(s.shape)), _NUMPY_DTYPES[s.dtype], tuple(s.shape)) for s in out_specs]

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        for buf, tensor in zip(self._ins, tensors):
            buf.write(tensor)
        self.compiled.run_by_index(0, self._ins, self._outs)
        return [buf.read(n, dtype).reshape(shape) for buf, (n, dtype, shape) in zip(self._outs, self._out_meta)]

    def close(self) -> None:
        for buf in self._ins + self._outs:
            buf.destroy()
        self._ins, self._outs = [], []
        self.compiled.close()
        self.compiled = None
        self._model_data = b""


# ---- the model --------------------------------------------------------------------------------
class EdgeModel:
    """A loaded model: ``run`` (fast path), ``prepare``/``predict`` (with the preprocessing contract).

    ``run`` returns new arrays (copies of the interpreter's output buffers): they stay valid
    after the next ``run``, and the interpreter never has live views into its arena (TFLite
    refuses to invoke while such views exist).
    """

    def __init__(self, *, engine: Any, model_file: ModelFile, source: str, report: dl.DelegateReport,
                 preprocess: Preprocess | None, metadata: EdgeqMetadata | None, init_ms: float):
        self._engine = engine
        self.model_file = model_file
        self.source = source
        self.delegate_report = report
        self.metadata = metadata
        self._preprocess = preprocess
        self.init_ms = init_ms
        sg = model_file.main
        self.inputs: tuple[TensorSpec, ...] = tuple(TensorSpec.from_tensor(sg.tensors[i]) for i in sg.inputs)
        self.outputs: tuple[TensorSpec, ...] = tuple(TensorSpec.from_tensor(sg.tensors[i]) for i in sg.outputs)
        self._in_check = [(tuple(s.shape), np.dtype(_NUMPY_DTYPES.get(s.dtype, np.float32))) for s in self.inputs]
        self._lut: np.ndarray | None = None
        self._closed = False

    # ---- description ------------------------------------------------------------------------
    @property
    def preprocess(self) -> Preprocess | None:
        return self._preprocess

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels if self.metadata else ()

    @property
    def is_classifier(self) -> bool:
        """Embedded task 'classify', or (foreign model) a single [1, N] output."""
        if self.metadata is not None:
            return self.metadata.task == "classify"
        return len(self.outputs) == 1 and len(self.outputs[0].shape) == 2 and self.outputs[0].shape[0] == 1

    @property
    def interpreter(self) -> Any:
        """The backend's Interpreter object (None on the GPU CompiledModel path or when closed).

        For tools that need what EdgeModel does not expose; its tensors are the ones ``run`` uses.
        """
        return getattr(self._engine, "interpreter", None) if not self._closed else None

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.delegate_report.delegate
        return f"EdgeModel({self.source!r}, {state})"

    # ---- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.close()
            self._engine = None

    def __enter__(self) -> EdgeModel:
        self._check_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter shutdown
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError(f"{self.source}: the model was closed; load it again")

    # ---- fast path ----------------------------------------------------------------------------
    def run(self, tensors: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on tensors already in the model's dtype and shape; returns raw (quantized) outputs.

        Input data is copied once, straight into the interpreter's input buffer; nothing else
        is allocated per call except the returned output arrays (new arrays, see class doc).
        """
        if self._closed:
            self._check_open()
        if isinstance(tensors, np.ndarray):
            tensors = (tensors,)
        checks = self._in_check
        if len(tensors) != len(checks):
            raise DataError(f"{self.source}: expected {len(checks)} input tensor(s), got {len(tensors)}")
        for i, (tensor, (shape, dtype)) in enumerate(zip(tensors, checks)):
            try:
                fits = tensor.shape == shape and tensor.dtype == dtype
            except AttributeError:  # a list or scalar, not an array
                fits = False
            if not fits:
                got = getattr(tensor, "dtype", type(tensor).__name__)
                raise DataError(f"{self.source}: input {i} ({self.inputs[i].name!r}) expects shape {list(shape)} "
                                f"{dtype.name}, got {list(np.shape(tensor))} {got}; use prepare()/predict() for raw "
                                "images")
        try:
            return self._engine.run(tensors)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.source}: inference failed: {exc}") from exc

    def dequantize(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Raw outputs -> float32 with each output's scale and zero point (like pycoral's adapters)."""
        result = []
        for out, spec in zip(outputs, self.outputs):
            if spec.scale:
                result.append((out.astype(np.float32) - np.float32(spec.zero_point or 0)) * np.float32(spec.scale))
            else:
                result.append(np.asarray(out, dtype=np.float32))
        return result

    # ---- preprocessing ------------------------------------------------------------------------
    def _require_preprocess(self) -> Preprocess:
        if self._preprocess is None:
            raise UsageError(f"{self.source} has no embedded edgeq preprocessing (a foreign model): pass "
                             "preprocess=Preprocess(...) to edgeq.load, or feed ready tensors to run()")
        if len(self.inputs) != 1:
            raise UsageError(f"{self.source} has {len(self.inputs)} inputs; prepare()/predict() handle "
                             "single-image models only, use run()")
        return self._preprocess

    def prepare_with_transform(self, image: np.ndarray, input_color: str = "BGR") -> tuple[np.ndarray, FrameTransform]:
        """Raw image -> (input tensor in the model's dtype with batch 1, source mapping)."""
        pre = self._require_preprocess()
        spec = self.inputs[0]
        pixels, transform = pre.to_pixels(image, input_color)
        dtype = self._in_check[0][1]
        if dtype in (np.dtype(np.int8), np.dtype(np.uint8)) and spec.scale:
            if self._lut is None:
                self._lut = _cv_lut(pre.quantize_lut(spec.scale, spec.zero_point or 0, dtype))
            import cv2

            # one table lookup per pixel (normalisation + quantization fused, exact); cv2.LUT is
            # ~8x faster than numpy fancy indexing; int8 tables travel as their uint8 bit pattern
            tensor = cv2.LUT(pixels, self._lut).view(dtype)
        elif dtype.kind == "f":
            tensor = pre.normalize(pixels).astype(dtype, copy=False)
        else:
            raise UsageError(f"{self.source}: input {spec.name!r} is {spec.dtype} without quantization "
                             "parameters; prepare() cannot map images to it, use run()")
        shape = self._in_check[0][0]
        if tensor.size != int(np.prod(shape)):
            raise UsageError(f"{self.source}: preprocessing gives {list(tensor.shape)} but input {spec.name!r} "
                             f"is {list(shape)}; fix the preprocessing size/colour")
        return tensor.reshape(shape), transform

    def prepare(self, image: np.ndarray, input_color: str = "BGR") -> np.ndarray:
        return self.prepare_with_transform(image, input_color)[0]

    # ---- convenience --------------------------------------------------------------------------
    def predict(self, image_or_batch: Any, top_k: int = 5, input_color: str = "BGR") -> Any:
        """Preprocess, quantize, run and dequantize.

        One image -> for classifiers a list of ``Classification`` (best first, ``top_k`` of them),
        otherwise the list of float32 outputs. A batch (list of images or an N x H x W [x C]
        array) -> a list with one such result per image.
        """
        self._check_open()
        if _is_batch(image_or_batch, self._require_preprocess()):
            return [self._predict_one(img, top_k, input_color) for img in image_or_batch]
        return self._predict_one(image_or_batch, top_k, input_color)

    def _predict_one(self, image: np.ndarray, top_k: int, input_color: str) -> Any:
        outputs = self.dequantize(self.run(self.prepare(image, input_color)))
        if not self.is_classifier:
            return outputs
        scores = outputs[0].reshape(-1)
        k = max(1, min(int(top_k), scores.size))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        labels = self.labels
        return [Classification(int(i), labels[i] if i < len(labels) else str(int(i)), float(scores[i])) for i in top]


def _cv_lut(lut: np.ndarray) -> np.ndarray:
    """A Preprocess.quantize_lut (256, C) table in the layout cv2.LUT takes, as uint8 bits."""
    bits = lut.view(np.uint8)
    channels = bits.shape[1]
    return np.ascontiguousarray(bits.reshape(256) if channels == 1 else bits.reshape(256, 1, channels))


def _is_batch(x: Any, pre: Preprocess) -> bool:
    if isinstance(x, (list, tuple)):
        return True
    arr = np.asarray(x)
    if arr.ndim == 4:
        return True
    # N x H x W grayscale batch vs a single H x W x C image
    return arr.ndim == 3 and arr.shape[2] not in (1, 3, 4) and pre.channels == 1


# ---- loading ----------------------------------------------------------------------------------
def load(model: str | os.PathLike | bytes, delegate: str = "auto", num_threads: int | None = None,
         preprocess: Preprocess | None = None, *, backend: str | None = None, **delegate_options: Any) -> EdgeModel:
    """Validate a .tflite model and create its interpreter with the requested delegate.

    ``delegate``: one of ``DELEGATES`` or a path to an external delegate library; the options
    for it are keyword arguments (e.g. ``device="usb:0"``, ``precision="fp32"``, or any
    ``key=value`` an external delegate takes).
    """
    dl.check_delegate_name(delegate)
    dl.check_options(delegate, delegate_options)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise UsageError(f"num_threads must be a positive integer, got {num_threads!r}")
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise UsageError(f"preprocess must be an edgeq.Preprocess, got {type(preprocess).__name__}")
    t0 = time.perf_counter()
    data, mf = load_model_file(model)
    source = "<model bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    metadata = read_metadata(mf)
    be = get_backend(backend)
    compiled_for_tpu = is_edgetpu_compiled(mf)
    attempts: list[dl.DelegateAttempt] = []

    if compiled_for_tpu and delegate not in ("auto", "edgetpu") and not dl.is_delegate_path(delegate):
        raise ModelError(f"{source} is compiled for the Edge TPU (it contains {EDGETPU_CUSTOM_OP}): it needs "
                         f"delegate='edgetpu', not {delegate!r}; use the model from before edgetpu_compiler "
                         "for other delegates")

    if delegate == "auto":
        engine, report_fields = _load_auto(be, data, mf, source, num_threads, delegate_options, attempts,
                                           compiled_for_tpu)
    elif delegate == "gpu" and not delegate_options.get("library"):
        engine, report_fields = _load_gpu(be, data, mf, source, delegate_options, num_threads, require_full=False)
        attempts.append(dl.DelegateAttempt("gpu", True, "requested"))
    else:
        engine, report_fields = _load_interpreter(be, data, mf, source, delegate, num_threads, delegate_options)
        attempts.append(dl.DelegateAttempt(report_fields["delegate"], True, "requested"))
        if delegate == "edgetpu" and not compiled_for_tpu:
            report_fields["warnings"] = (f"{source} has no {EDGETPU_CUSTOM_OP}: it was not compiled with "
                                         "edgetpu_compiler, so nothing will be offloaded to the Edge TPU "
                                         "(everything runs on the CPU)",)
    for warning in report_fields.get("warnings", ()):
        log.warning("%s", warning)

    preprocess = preprocess or (metadata.preprocess if metadata else None)
    report = dl.DelegateReport(backend=be.name, backend_version=be.version, attempts=tuple(attempts),
                               total_nodes=len(mf.main.operators), **report_fields)
    return EdgeModel(engine=engine, model_file=mf, source=source, report=report, preprocess=preprocess,
                     metadata=metadata, init_ms=(time.perf_counter() - t0) * 1000.0)


def _load_auto(be: Backend, data: bytes, mf: ModelFile, source: str, num_threads: int | None,
               options: dict[str, Any], attempts: list[dl.DelegateAttempt], compiled_for_tpu: bool):
    if compiled_for_tpu:
        try:
            engine, fields = _load_interpreter(be, data, mf, source, "edgetpu", num_threads,
                                               {k: v for k, v in options.items() if k == "device"})
        except (DelegateUnavailableError, DelegateError) as exc:
            attempts.append(dl.DelegateAttempt("edgetpu", False, str(exc)))
            raise DelegateUnavailableError(f"{source} is compiled for the Edge TPU but the Edge TPU cannot be "
                                           f"used: {exc}") from exc
        attempts.append(dl.DelegateAttempt("edgetpu", True, "model compiled for the Edge TPU and a TPU is present"))
        return engine, fields
    attempts.append(dl.DelegateAttempt("edgetpu", False,
                                       f"model not compiled for the Edge TPU (no {EDGETPU_CUSTOM_OP})"))

    reason = _gpu_unusable_reason(be)
    if reason is None:
        try:
            engine, fields = _load_gpu(be, data, mf, source, {k: v for k, v in options.items() if k == "precision"},
                                       num_threads, require_full=True)
        except (DelegateUnavailableError, DelegateError) as exc:
            reason = str(exc)
        else:
            attempts.append(dl.DelegateAttempt("gpu", True, "hardware GPU adapter runs the whole model"))
            return engine, fields
    attempts.append(dl.DelegateAttempt("gpu", False, reason))
    engine, fields = _load_interpreter(be, data, mf, source, "xnnpack", num_threads, {})
    attempts.append(dl.DelegateAttempt("xnnpack", True, "CPU"))
    return engine, fields


@functools.lru_cache(maxsize=1)
def _probe_vulkan_adapters() -> tuple[tuple[dl.VulkanAdapter, ...] | None, str | None]:
    """(adapters, None), or (None, why the probe failed); cached, failures too (a probe can take a minute)."""
    try:
        return dl.vulkan_adapters_in_child(), None
    except DelegateUnavailableError as exc:
        return None, str(exc)


def _gpu_unusable_reason(be: Backend) -> str | None:
    if not be.has_compiled_model:
        return f"the GPU accelerator needs ai-edge-litert (backend is {be.name})"
    if "tensorflow" in sys.modules:
        return ("not probed: TensorFlow is imported in this process, and Vulkan drivers built on LLVM (Mesa's "
                "lavapipe) crash next to it; use a process without TensorFlow for the GPU")
    # Probed in a child process (once): a Vulkan driver loaded into this process would crash a
    # later `import tensorflow` here, and `auto` must not make that choice for the user.
    adapters, probe_failure = _probe_vulkan_adapters()
    if probe_failure:
        return probe_failure
    if adapters is None:
        return "no Vulkan loader (libvulkan) installed"
    if not adapters:
        return "no Vulkan adapter found"
    if all(a.is_software for a in adapters):
        return (f"only software Vulkan adapters ({', '.join(a.name for a in adapters)}): slower than XNNPACK; "
                "ask for delegate='gpu' explicitly to use them")
    return None


def _load_gpu(be: Backend, data: bytes, mf: ModelFile, source: str, options: dict[str, Any],
              num_threads: int | None, *, require_full: bool):
    """LiteRT's CompiledModel on the GPU; num_threads goes to the CPU kernels of what the GPU leaves."""
    if not be.has_compiled_model:
        raise DelegateUnavailableError(f"delegate 'gpu' needs ai-edge-litert's CompiledModel API (backend is "
                                       f"{be.name}); pip install ai-edge-litert, or give library=PATH of a "
                                       "classic TFLite GPU delegate")
    if "tensorflow" in sys.modules:
        raise DelegateUnavailableError(
            "gpu: TensorFlow is imported in this process; Vulkan drivers built on LLVM (Mesa's lavapipe) and "
            "LiteRT's GPU accelerator crash the process next to it (SIGSEGV/abort seen with TensorFlow 2.21 + "
            "ai-edge-litert 2.3), so edgeq does not even probe Vulkan here: run GPU inference in a process that "
            "does not import TensorFlow (convert in one process, infer in another)")
    adapters = dl.vulkan_adapters()
    if not adapters:
        raise DelegateUnavailableError(f"gpu: {'no Vulkan loader' if adapters is None else 'no Vulkan adapter'} "
                                       f"found; {dl.NO_VULKAN_HINT}")
    from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, GpuOptions, HardwareAccelerator, Options

    precision = options.get("precision") or "fp16"
    accel = HardwareAccelerator.GPU if require_full else HardwareAccelerator.GPU | HardwareAccelerator.CPU
    opts = Options(hardware_accelerators=accel, gpu_options=GpuOptions(enforce_f32=precision == "fp32"),
                   cpu_options=CpuOptions(num_threads=num_threads) if num_threads else None)
    try:
        compiled = CompiledModel.from_buffer(data, options=opts)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DelegateError(f"gpu: LiteRT could not compile {source} for the GPU "
                            f"({', '.join(a.name for a in adapters)}): {first}") from exc
    full = compiled.is_fully_accelerated()
    if require_full and not full:
        compiled.close()
        raise DelegateUnavailableError("the GPU accelerator supports only part of the model")
    engine = _CompiledModelEngine(compiled, [TensorSpec.from_tensor(mf.main.tensors[i]) for i in mf.main.outputs], data)
    total = len(mf.main.operators)
    adapter = next((a for a in adapters if not a.is_software), adapters[0])  # Dawn prefers hardware
    details = (("precision", precision), ("adapter", adapter.name), ("adapter_type", adapter.device_type),
               ("num_threads", f"{num_threads or 'default'} (CPU kernels of nodes the GPU does not take)"))
    warnings = () if full else (f"{source}: the GPU runs only part of the model; the rest runs on the CPU",)
    return engine, {"delegate": "gpu", "delegated_nodes": total if full else None, "details": details,
                    "warnings": warnings}


def _load_interpreter(be: Backend, data: bytes, mf: ModelFile, source: str, delegate: str,
                      num_threads: int | None, options: dict[str, Any]):
    resolver = None
    external: list[Any] = []
    name = delegate
    if delegate == "cpu":
        resolver = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    elif delegate == "cpu-ref":
        resolver = "BUILTIN_REF"
    elif delegate == "edgetpu":
        external.append(dl.load_edgetpu(be, options))
    elif delegate == "gpu":  # classic GPU delegate library by path
        lib_options = {k: v for k, v in options.items() if k != "library"}
        external.append(dl.load_external_delegate(be, str(options["library"]), lib_options, what="gpu"))
    elif dl.is_delegate_path(delegate):
        external.append(dl.load_external_delegate(be, delegate, options, what=os.path.basename(delegate)))
        name = os.path.basename(delegate)
    kwargs: dict[str, Any] = {"model_content": data}
    if num_threads is not None:
        kwargs["num_threads"] = num_threads
    if resolver is not None:
        if be.op_resolver_type is None:
            raise DelegateUnavailableError(f"delegate {delegate!r} needs OpResolverType, which {be.name} "
                                           f"{be.version} does not have; use ai-edge-litert")
        kwargs["experimental_op_resolver_type"] = getattr(be.op_resolver_type, resolver)
    if external:
        kwargs["experimental_delegates"] = external
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
    n_original = len(mf.main.operators)
    ops_after = _ops(interpreter)
    own = sum(dl.delegated_node_counts(ops_before, n_original)) if ops_before is not None else 0
    all_counts = sum(dl.delegated_node_counts(ops_after, n_original)) if ops_after is not None else 0
    if external:
        delegated, cpu_delegated = own, all_counts - own
    elif delegate == "xnnpack":
        delegated, cpu_delegated = all_counts, 0
    else:
        delegated, cpu_delegated = 0, 0
    if ops_after is None:
        delegated = None
    engine = _InterpreterEngine(interpreter, mf.main.inputs, mf.main.outputs, external)
    return engine, {"delegate": name, "delegated_nodes": delegated, "cpu_delegated_nodes": cpu_delegated,
                    "details": (("num_threads", str(num_threads) if num_threads else "default"),)}


def _ops(interpreter: Any) -> list[dict[str, Any]] | None:
    """The interpreter's nodes (the model's, then one DELEGATE node per delegated partition)."""
    getter = getattr(interpreter, "_get_ops_details", None)
    if getter is None:
        return None
    try:
        return getter()
    except (RuntimeError, ValueError, AttributeError):
        return None
