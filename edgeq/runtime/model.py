"""``EdgeModel``: one API to run a .tflite model on whatever the device has, with little overhead.

The interpreter is created by :func:`load` after the file has been validated by edgeq's own
bounds-checked reader, so a truncated or hostile file is a ``ModelError``, never a crash.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, ModelError, UsageError
from ..metadata import EdgeqMetadata, read_metadata
from ..modelcheck import check_structure
from ..modelinfo import TensorSpec
from ..postprocess import top_k as ranked_classes
from ..preprocess import FrameTransform, Preprocess, PreprocessOptions, resolve_preprocess
from ..tflite_format import EDGETPU_CUSTOM_OP, ModelFile, is_edgetpu_compiled, load_model_file
from .backends import get_backend
from .delegates import DELEGATES, check_model_options, check_options, delegate_spec
from .engines import NUMPY_DTYPES, LoadRequest
from .probe import probe_model
from .report import DelegateAttempt, DelegateReport

log = logging.getLogger(__name__)


# ---- the model --------------------------------------------------------------------------------
class EdgeModel:
    """A loaded model: ``run`` (fast path), ``prepare``/``predict`` (with the preprocessing contract).

    ``run`` returns new arrays (copies of the interpreter's output buffers): they stay valid
    after the next ``run``, and the interpreter never has live views into its arena (TFLite
    refuses to invoke while such views exist).
    """

    def __init__(self, *, engine: Any, model_file: ModelFile, source: str, report: DelegateReport,
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
        self._in_check = [(tuple(s.shape), np.dtype(NUMPY_DTYPES.get(s.dtype, np.float32))) for s in self.inputs]
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
        elif spec.scale:  # wider integers (int16 input of an int16x8 model): the same fused table, indexed
            tensor = pre.encode(pixels, dtype, spec.scale, spec.zero_point or 0)
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
        for models that declare their decoder (``edgeq convert --postprocess``) its result
        (``Detections``, ``Landmarks``, ``SegmentationMask``, ...), otherwise the list of float32 outputs.
        A batch (list of images or an N x H x W [x C] array) -> a list with one such result per image.
        """
        self._check_open()
        if _is_batch(image_or_batch, self._require_preprocess()):
            return [self._predict_one(img, top_k, input_color) for img in image_or_batch]
        return self._predict_one(image_or_batch, top_k, input_color)

    def _predict_one(self, image: np.ndarray, top_k: int, input_color: str) -> Any:
        declared = getattr(self.metadata, "postprocess", None)
        if declared and declared.get("name") != "classify":
            from ..postprocess import FrameContext, resolve_decoder

            decoder = resolve_decoder([o.shape for o in self.outputs], self.metadata.task, embedded=declared)
            tensor, transform = self.prepare_with_transform(image, input_color)
            pre = self._require_preprocess()
            h, w = np.asarray(image).shape[:2]
            return decoder.decode(self.dequantize(self.run(tensor)),
                                  FrameContext(transform, (w, h), (pre.width, pre.height), tuple(self.labels)))
        outputs = self.dequantize(self.run(self.prepare(image, input_color)))
        if not self.is_classifier:
            return outputs
        return list(ranked_classes(outputs[0], self.labels, top_k))


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
def load(model: str | os.PathLike | bytes, delegate: str | None = None, num_threads: int | None = None,
         preprocess: Preprocess | PreprocessOptions | dict[str, Any] | None = None, *, backend: str | None = None,
         **delegate_options: Any) -> EdgeModel:
    """Validate a .tflite model and create its interpreter with the requested delegate.

    ``delegate``: one of ``DELEGATES`` or a path to an external delegate library; the options
    for it are keyword arguments (e.g. ``device="usb:0"``, ``precision="fp32"``, or any
    ``key=value`` an external delegate takes). Not given (None): the delegate ``edgeq tune``
    embedded in the model (with its tuned options), else ``"auto"``; ``num_threads`` None likewise
    takes the tuned count.
    """
    if delegate is not None:  # fail fast, before the file is read
        delegate_spec(delegate)
        check_options(delegate, delegate_options)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise UsageError(f"num_threads must be a positive integer, got {num_threads!r}")
    if preprocess is not None and not isinstance(preprocess, (Preprocess, PreprocessOptions, dict)):
        raise UsageError(f"preprocess must be an edgeq.Preprocess or preprocessing options (a dict such as "
                         f"{{'value_range': '-1,1'}}), got {type(preprocess).__name__}")
    t0 = time.perf_counter()
    data, mf = load_model_file(model)
    source = "<model bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    metadata = read_metadata(mf)
    config = tuned_config(metadata, delegate, num_threads, delegate_options, source)
    delegate, num_threads, delegate_options, tuned = config.delegate, config.num_threads, config.options, config.note
    spec = delegate_spec(delegate)
    check_options(delegate, delegate_options)
    check_structure(mf)
    be = get_backend(backend)
    compiled_for_tpu = is_edgetpu_compiled(mf)
    if compiled_for_tpu and not spec.runs_edgetpu_models:
        raise ModelError(f"{source} is compiled for the Edge TPU (it contains {EDGETPU_CUSTOM_OP}): it needs "
                         f"delegate='edgetpu', not {delegate!r}; use the model from before edgetpu_compiler "
                         "for other delegates")
    if not compiled_for_tpu:  # its custom op runs only on a TPU: nothing to try on the CPU
        probe_model(data, source, be.name, spec.trial_kernels)
    loaded = spec.loader(LoadRequest(backend=be, data=data, model_file=mf, source=source, num_threads=num_threads,
                                     options=dict(delegate_options), compiled_for_tpu=compiled_for_tpu))
    for warning in loaded.warnings:
        log.warning("%s", warning)
    report = DelegateReport(backend=be.name, backend_version=be.version, delegate=loaded.delegate,
                            delegated_nodes=loaded.delegated_nodes, total_nodes=len(mf.main.operators),
                            attempts=loaded.attempts or (DelegateAttempt(loaded.delegate, True,
                                                                        f"tuned: {tuned}" if tuned else "requested"),),
                            cpu_delegated_nodes=loaded.cpu_delegated_nodes,
                            details=loaded.details + ((("tuned", tuned),) if tuned else ()),
                            warnings=loaded.warnings)
    if isinstance(preprocess, (PreprocessOptions, dict)):  # options: the one resolver decides
        sg = mf.main
        resolved = resolve_preprocess(sg.tensors[sg.inputs[0]].shape if sg.inputs else None, preprocess,
                                      embedded=metadata.preprocess if metadata else None, model=source)
        for warning in resolved.warnings:
            log.warning("%s", warning)
        preprocess = resolved.preprocess
    return EdgeModel(engine=loaded.engine, model_file=mf, source=source, report=report,
                     preprocess=preprocess or (metadata.preprocess if metadata else None), metadata=metadata,
                     init_ms=(time.perf_counter() - t0) * 1000.0)


@dataclasses.dataclass(frozen=True)
class TunedConfig:
    """What ``load`` runs with: explicit arguments first, then the model's tuned ``runtime``, then the defaults.

    ``note``: what came from the tuned configuration ("" = nothing), as the delegate report shows it.
    """

    delegate: str
    num_threads: int | None
    options: dict[str, Any]
    note: str = ""


def tuned_config(metadata: EdgeqMetadata | None, delegate: str | None, num_threads: int | None,
                 options: dict[str, Any], source: str) -> TunedConfig:
    """Resolve the configuration: only what the caller left out (None) comes from ``edgeq tune``'s metadata.

    The tuned delegate comes with its tuned options (the caller's options win key by key); a delegate
    given explicitly runs with the caller's options only. A model without a tuned configuration
    keeps the old defaults (``auto``, the runtime's threads). Also used by ``edgeq bench``.
    """
    runtime = metadata.runtime if metadata is not None else {}
    if not runtime or (delegate is not None and num_threads is not None):
        return TunedConfig(delegate or "auto", num_threads, dict(options))
    used = []
    if delegate is None:
        delegate = str(runtime["delegate"])
        if delegate not in DELEGATES:  # never a library path named by a model file, nor an unknown name
            raise ModelError(f"{source}: its edgeq metadata says it was tuned for delegate {delegate!r}, which is not "
                             f"a registered delegate here ({', '.join(DELEGATES)}); pass delegate=... explicitly")
        tuned_options = dict(runtime.get("options") or {})
        try:
            check_model_options(delegate, tuned_options)
        except UsageError as exc:
            raise ModelError(f"{source}: its edgeq metadata tunes delegate {delegate!r} with options this edgeq "
                             f"refuses ({exc}); pass delegate=... explicitly, or tune the model again") from exc
        options = {**tuned_options, **options}
        try:
            check_options(delegate, options)
        except UsageError as exc:
            raise UsageError(f"{source} is tuned for delegate {delegate!r} (edgeq tune), which does not take "
                             f"these options ({exc}); pass delegate=... explicitly") from exc
        shown = ", ".join(f"{k}={v}" for k, v in tuned_options.items())
        used.append(f"delegate {delegate}" + (f" ({shown})" if shown else ""))
    if num_threads is None and runtime.get("num_threads") is not None:
        num_threads = int(runtime["num_threads"])
        used.append(f"{num_threads} thread(s)")
    if not used:
        return TunedConfig(delegate, num_threads, dict(options))
    measured = f", p50 {runtime['p50_ms']:.3f} ms" if isinstance(runtime.get("p50_ms"), (int, float)) else ""
    where = f" on {runtime['tuned_on']}" if runtime.get("tuned_on") else ""
    return TunedConfig(delegate, num_threads, dict(options),
                       f"{' and '.join(used)} from the model's edgeq metadata (edgeq tune{where}{measured}); "
                       "explicit delegate/num_threads override it")
