"""``edgeq.convert``: float Keras/SavedModel -> quantized .tflite with the preprocessing embedded.

A conversion is a short sequence of named steps, each returning what it found (warnings
included) rather than appending to lists passed down: plan (``plan.py``, before TensorFlow
loads) -> prepare the converter -> quantize -> check full integer -> metadata -> write (and the
target's shape freezing and check). ``edgeq.accuracy.convert_to_budget`` reuses every step but
the quantization. TensorFlow is imported lazily, only once the plan holds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from .._native import NativeLog, quiet_native_stderr
from .._version import __version__
from ..errors import CalibrationError, ConversionError, EdgeqError, UsageError
from ..fileio import private_tempdir, write_bytes_atomic
from ..metadata import EdgeqMetadata, with_edgeq_metadata
from ..modelinfo import ModelReport, inspect_model
from ..preprocess import Preprocess
from .calibration import CalibrationDataset
from .fastcal import fast_calibration_for
from .plan import ConversionPlan, plan_conversion, recipe_path_for
from .quantize import CalibratedModel, input_batches
from .ranges import AUTO, calibrate
from .recipes import Recipe
from .source import (
    describe_source_model,
    float_weights_bytes,
    import_tensorflow,
    infer_preprocess,
    load_keras,
    saved_model_input_shape,
    source_sha256,
)
from .tfconfig import configure_converter

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    output: str
    recipe: Recipe
    report: ModelReport
    float_weights_bytes: int
    calibration: dict[str, Any]
    preprocess: Preprocess | None
    seconds: float
    warnings: tuple[str, ...]
    accuracy: dict[str, Any] | None = None   # mixed-precision search log (edgeq.accuracy.convert_to_budget)
    edgetpu: Any = None                      # EdgeTpuReport of the result (--target edgetpu)

    @property
    def size_bytes(self) -> int:
        return self.report.size_bytes

    @property
    def compression(self) -> float:
        return self.float_weights_bytes / self.size_bytes if self.size_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "output": self.output, "recipe": self.recipe.to_dict(),
            "size_bytes": r.size_bytes, "float_weights_bytes": self.float_weights_bytes,
            "compression": round(self.compression, 3),
            "ops": r.ops, "full_integer": r.full_integer, "float_ops": list(r.float_ops),
            "float_tensors": list(r.float_tensors),
            "inputs": [t.to_dict() for t in r.inputs], "outputs": [t.to_dict() for t in r.outputs],
            "calibration": self.calibration,
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "seconds": round(self.seconds, 3), "warnings": list(self.warnings),
            **({"accuracy": self.accuracy} if self.accuracy is not None else {}),
            **({"edgetpu": self.edgetpu.to_dict()} if self.edgetpu is not None else {}),
        }


@dataclasses.dataclass(frozen=True)
class Quantized:
    """What a quantize step produced: the model, the recipe it really used, what it found."""

    model: bytes
    recipe: Recipe
    warnings: tuple[str, ...] = ()
    accuracy: dict[str, Any] | None = None   # the accuracy search's log, when one chose the recipe


def convert(model: Any, calibration: Any = None, output: str | os.PathLike | None = None, *,
            recipe: str | Recipe | None = None, preprocess: Preprocess | None = None,
            num_samples: int = 200, seed: int = 0, labels: Sequence[str] | str | os.PathLike | None = None,
            task: str | None = "classify", force: bool = False, preprocess_options: dict[str, Any] | None = None,
            transform: Callable[[Any], Any] | None = None, progress: Callable[[int, int], None] | None = None,
            quiet: bool = True, save_recipe: bool = True, target: str | None = None,
            postprocess: str | None = None, postprocess_options: dict[str, Any] | None = None) -> ConversionResult:
    """Quantize a float model with calibration data and write the .tflite atomically.

    model: a .keras/.h5 path, a SavedModel directory, an in-memory Keras model, a float .tflite (through
    ai-edge-quantizer, edgeq[tflite]) or an .onnx file (through onnx2tf, edgeq[onnx]; NCHW becomes NHWC).
    calibration: a ``CalibrationDataset`` or anything it accepts as a source.
    recipe: a recipe name or a Recipe (``make_recipe("int8", per_tensor=True, range_method="mse")``);
    default int8, or uint8 with target="edgetpu".
    postprocess/postprocess_options: the decoder (and its options) embedded in the metadata, so `edgeq run`
    decodes the outputs by itself; task None takes the decoder's task.
    """
    started = time.perf_counter()
    plan = plan_conversion(model, calibration, output, recipe=recipe, target=target, task=task, labels=labels,
                           force=force, num_samples=num_samples, seed=seed, save_recipe=save_recipe,
                           transform=transform, postprocess=postprocess, postprocess_options=postprocess_options)
    if plan.recipe.range_method == AUTO:  # held-out items exist? (before TensorFlow loads)
        from .select import heldout_dataset

        heldout_dataset(plan.dataset)
    if plan.kind == "tflite_file" or plan.recipe.weights == "int4":  # ai-edge-quantizer's route
        return _convert_with_aeq(plan, model, preprocess, preprocess_options, quiet, target, started)
    from .frozen import FrozenRouteMismatch

    try:
        return _convert_tf(plan, model, preprocess, preprocess_options, quiet, progress, target, started, True)
    except FrozenRouteMismatch as exc:  # checked on the first sample: the SavedModel route, and say so
        log.info("%s", exc)  # (in the result's warnings, which finish_conversion logs)
        return _convert_tf(plan, model, preprocess, preprocess_options, quiet, progress, target, started, False,
                           (str(exc),))


def _convert_tf(plan: ConversionPlan, model: Any, preprocess: Preprocess | None,
                preprocess_options: dict[str, Any] | None, quiet: bool, progress: Callable[[int, int], None] | None,
                target: str | None, started: float, frozen_route: bool,
                warnings: tuple[str, ...] = ()) -> ConversionResult:
    """TensorFlow Lite's converter: prepare, quantize, finish."""
    with prepared_converter(model, plan.dataset, plan.recipe, preprocess, preprocess_options, quiet=quiet,
                            progress=progress, target=target, frozen_route=frozen_route) as prep:
        quantized = run_quantizer(plan.recipe, quiet, lambda _native_log: quantize(prep, plan.recipe, plan.dataset),
                                  plan.dataset)
    return finish_conversion(plan, dataclasses.replace(prep, warnings=warnings + prep.warnings), quantized, started)


def _convert_with_aeq(plan: ConversionPlan, model: Any, preprocess: Preprocess | None,
                      preprocess_options: dict[str, Any] | None, quiet: bool, target: str | None,
                      started: float) -> ConversionResult:
    """A float .tflite source (or an int4 recipe: Keras -> float .tflite first) through ai-edge-quantizer
    (``tflite_source.py``), then the same checks, metadata and write as every conversion."""
    from .tflite_source import prepare_tflite_source, quantize_float_tflite

    if plan.kind == "tflite_file":
        src, pre, warnings = prepare_tflite_source(plan.source, None, plan.dataset, preprocess, preprocess_options)
        prep = PreparedConverter(None, None, None, pre, None, plan.source, warnings, src.float_weights_bytes)
    else:
        with prepared_converter(model, plan.dataset, plan.recipe, preprocess, preprocess_options, quiet=quiet,
                                target=target) as prep:
            float_model = run_quantizer(plan.recipe, quiet, lambda _log: bytes(prep.converter.convert()))
        src, _, _ = prepare_tflite_source(plan.source, float_model, None, prep.preprocess, None)
    data = run_quantizer(plan.recipe, quiet, lambda _log: quantize_float_tflite(src, plan.dataset, plan.recipe),
                         plan.dataset)
    return finish_conversion(plan, prep, Quantized(data, plan.recipe), started)


# ---- step 2: the converter ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PreparedConverter:
    """A TFLiteConverter set up as edgeq.convert sets it up (shared with `edgeq analyze`)."""

    tf: Any
    converter: Any
    representative: Callable | None
    preprocess: Preprocess | None
    keras_model: Any
    saved_dir: str
    warnings: tuple[str, ...] = ()
    float_bytes: int | None = None   # the float weights' bytes when known without TensorFlow (.tflite sources)
    route: str = "savedmodel"         # how a Keras model reached the converter: "savedmodel" or "frozen" (frozen.py)


@contextlib.contextmanager
def prepared_converter(model: Any, dataset: CalibrationDataset | None, rec: Recipe,
                       preprocess: Preprocess | None, preprocess_options: dict[str, Any] | None, *,
                       quiet: bool = True, progress: Callable[[int, int], None] | None = None,
                       target: str | None = None, frozen_route: bool = False) -> Iterator[PreparedConverter]:
    """Load the model, export a SavedModel (temporary), settle the preprocessing contract and
    configure a TFLiteConverter for the recipe. The export lives until the context exits.

    frozen_route: a Keras model calibrated through XNNPACK reaches the converter as a frozen function instead
    (``frozen.py``, faster); the caller must then check the result (``quantize`` does, ``convert`` retries).
    """
    kind, desc = describe_source_model(model)
    if kind == "tflite_file":
        raise UsageError(f"{desc}: a .tflite source is quantized by `edgeq convert` alone (int8/uint8/int16x8/int4 "
                         "recipes) or with --max-accuracy-drop; layer analysis needs the Keras/SavedModel original")
    if kind == "onnx_file":  # onnx2tf -> a temporary SavedModel (NHWC), then the SavedModel path
        from .onnx_source import onnx_as_saved_model

        with onnx_as_saved_model(desc, preprocess_options, quiet=quiet) as saved, \
                prepared_converter(saved.saved_dir, dataset, rec, preprocess, preprocess_options, quiet=quiet,
                                   progress=progress, target=target) as prep:
            yield dataclasses.replace(prep, float_bytes=saved.float_bytes, warnings=prep.warnings + saved.warnings)
        return
    tf = import_tensorflow()
    opts = dict(preprocess_options or {})
    keras_model = load_keras(desc) if kind == "keras_file" else (model if kind == "keras_model" else None)
    with private_tempdir("export") as tmp:
        export_warnings: tuple[str, ...] = ()
        converter = None
        if kind == "saved_model":
            saved_dir = desc
            opts["_saved_model_shape"] = saved_model_input_shape(tf, desc)
        else:
            saved_dir = os.path.join(tmp, "saved_model")
            # (float layers: a recipe the accuracy search made through a SavedModel, reproduced byte for byte)
            if frozen_route and target is None and fast_calibration_for(rec) and not (rec.float_nodes or rec.float_ops):
                from .frozen import try_frozen_converter

                converter, export_warnings = try_frozen_converter(tf, keras_model)
            if converter is None:
                export_warnings += _export_keras(tf, keras_model, saved_dir, target, quiet)
        pre, pre_warnings = infer_preprocess(keras_model, kind, preprocess, opts)
        if dataset is not None:
            if dataset.preprocess is None:
                dataset.preprocess = pre
            elif preprocess is None:
                pre = dataset.preprocess
        rep = _with_progress(dataset, progress) if dataset is not None else None
        route = "savedmodel" if converter is None else "frozen"
        converter = converter or tf.lite.TFLiteConverter.from_saved_model(saved_dir)
        configure_converter(tf, converter, rec, rep)
        yield PreparedConverter(tf, converter, rep, pre, keras_model, saved_dir if route == "savedmodel" else "",
                                export_warnings + pre_warnings, route=route)


def _export_keras(tf: Any, keras_model: Any, saved_dir: str, target: str | None, quiet: bool) -> tuple[str, ...]:
    """Export the Keras model as the converter's SavedModel; a target may fix the signature (batch 1)."""
    export_options: dict[str, Any] = {}
    warnings: tuple[str, ...] = ()
    if target is not None:  # batch 1 in the signature: no run-time shape ops (Flatten's SHAPE/PACK)
        from .targets import export_options_for_target

        export_options, warnings = export_options_for_target(tf, keras_model, target)
    with quiet_native_stderr(quiet):
        keras_model.export(saved_dir, verbose=False, **export_options)
    return warnings


def _with_progress(dataset: CalibrationDataset, progress: Callable[[int, int], None] | None) -> Callable:
    gen = dataset.batches()
    if progress is None:
        return gen

    def wrapped() -> Iterator[list[Any]]:
        total = len(dataset)
        for i, batch in enumerate(gen(), 1):
            progress(i, total)
            yield batch
    return wrapped


# ---- step 3: quantize -------------------------------------------------------------------------
def quantize(prep: PreparedConverter, rec: Recipe, dataset: CalibrationDataset | None = None) -> Quantized:
    """TFLite's converter, or calibrate-once selective quantization for float layers and range methods
    (``auto``: chosen by measurement on the calibration items beyond --num-samples)."""
    if rec.range_method == AUTO:
        from .select import heldout_tensors, select_range_method, tensor_scorer

        if dataset is None:
            raise UsageError("--range-method auto needs calibration data")
        cal = _calibrate(prep, rec)
        heldout = heldout_tensors(dataset)
        cal, sel = select_range_method(cal, input_batches(prep.representative), tensor_scorer(cal.data, heldout),
                                       f"held-out calibration items of {dataset.describe()}", len(heldout))
        return Quantized(cal.quantize(rec.float_nodes, rec.float_ops), cal.recipe.replace(notes=sel.describe()),
                         cal.notes, {"range_selection": sel.to_dict()})
    if rec.float_nodes or rec.float_ops or rec.range_method != "minmax" or fast_calibration_for(rec):
        cal = _calibrate(prep, rec)
        return Quantized(cal.quantize(rec.float_nodes, rec.float_ops), rec, cal.notes)
    return Quantized(bytes(prep.converter.convert()), rec)


def _calibrate(prep: PreparedConverter, rec: Recipe) -> CalibratedModel:
    """Calibrate; a frozen-route float graph must compute what the Keras model does (first sample)."""
    cal = calibrate(prep.tf, prep.converter, rec, prep.representative)
    if prep.route == "frozen":
        from .frozen import check_frozen

        check_frozen(prep.keras_model, cal.data, prep.representative)
    return cal


def run_quantizer(rec: Recipe, quiet: bool, step: Callable[[NativeLog], T],
                  dataset: CalibrationDataset | None = None) -> T:
    """Run a quantize step with the native logs silenced (the step gets them, e.g. to let progress
    through); a converter failure becomes a ConversionError that says what to do — or, when not one
    calibration sample survived preprocessing, a CalibrationError that blames the data, not the model."""
    with quiet_native_stderr(quiet) as native_log:
        try:
            result = step(native_log)
        except Exception as exc:  # noqa: BLE001 - converter errors are many types
            err = exc
        else:
            err = None
    if isinstance(err, EdgeqError):  # already explained (bad eval data, recipe for another model, ...)
        raise err
    if dataset is not None and rec.needs_calibration:
        check_samples_used(dataset, cause=err)
    if err is not None:
        raise _explain_failure(err, native_log, rec) from err
    return result


def check_samples_used(dataset: CalibrationDataset, cause: BaseException | None = None) -> None:
    """Samples were read and none was usable: an error about the data (with the reasons they were skipped).
    (A converter that fails before reading any sample is not about the data: nothing is said here.)"""
    if dataset.summary().used == 0 and dataset.skipped:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(dataset.skipped.items())[:3])
        raise CalibrationError(f"calibration source {dataset.describe()} gave no usable sample for this model "
                               f"({len(dataset.skipped)} skipped: {reasons})") from cause


def _explain_failure(exc: Exception, log_lines: list[str], recipe: Recipe) -> ConversionError:
    text = str(exc)
    tail = "\n".join(line for line in log_lines[-15:] if line.strip())
    select = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("TF Select ops:")]
    if select:
        return ConversionError(f"the model uses TensorFlow ops that have no TFLite builtin kernel: {select[0]}. "
                               "edgeq does not enable TF Select (flex) ops, which need the full TensorFlow "
                               "runtime on the device; replace those layers with TFLite-supported ones")
    unsupported = sorted({w.strip("'\"`,.:") for line in (text.splitlines() + log_lines)
                          for w in line.split() if w.startswith(("'tf.", "'tfl.", "tf.", "tfl."))})
    if recipe.full_integer and not recipe.allow_float_fallback and unsupported:
        return ConversionError(f"full-integer conversion failed: these ops cannot be quantized to "
                               f"{recipe.activations}: {', '.join(unsupported[:10])}. Pass --allow-float-fallback to "
                               "keep them in float (the model will not be full integer), or replace them.")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ConversionError(f"TensorFlow Lite conversion failed: {first}" + (f"\n{tail}" if tail else ""))


# ---- steps 4-6: check, metadata, write ----------------------------------------------------------
def finish_conversion(plan: ConversionPlan, prep: PreparedConverter, quantized: Quantized,
                      started: float) -> ConversionResult:
    """Check full integer, embed the metadata, (freeze shapes for the target,) write atomically, save the
    recipe beside the model, (check for the target,) and collect every step's warnings."""
    rec, dataset = quantized.recipe, plan.dataset
    warnings = [*plan.warnings, *prep.warnings, *quantized.warnings]
    if dataset is not None and dataset.skipped:
        warnings.append(f"calibration: skipped {len(dataset.skipped)} unreadable sample(s), e.g. "
                        f"{next(iter(dataset.skipped))}")
    if dataset is not None and 0 < dataset.summary().used < dataset.num_samples:
        warnings.append(f"calibration used {dataset.summary().used} sample(s), fewer than the {dataset.num_samples} "
                        f"asked for (--num-samples): {dataset.describe()} has no more usable ones")
    report = inspect_model(quantized.model)
    warnings += check_full_integer(report, rec, searched=quantized.accuracy is not None)
    calib = dataset.summary().to_dict() if dataset is not None else {}
    meta = build_metadata(plan, prep, rec, calib, report)
    tflite = quantized.model
    if prep.route == "frozen":  # the I/O names and signature the SavedModel route gives
        from .frozen import input_names, match_saved_model_io

        tflite = match_saved_model_io(tflite, input_names(prep.keras_model))
    if plan.target is not None:  # batch 1 and static shapes, verified on a calibration sample
        from .targets import prepare_for_target

        tflite = prepare_for_target(tflite, plan.target, dataset, prep.preprocess)
    out = write_model(plan.output, with_edgeq_metadata(tflite, meta), rec if plan.recipe_file else None,
                      force=plan.force)
    edgetpu = None
    if plan.target is not None:
        from .targets import check_for_target

        edgetpu, target_warnings = check_for_target(out, plan.target)
        warnings += target_warnings
    for w in warnings:
        log.warning("%s", w)
    return ConversionResult(output=str(out), recipe=rec, report=inspect_model(out),
                            float_weights_bytes=prep.float_bytes if prep.float_bytes is not None
                            else float_weights_bytes(prep.keras_model, plan.kind, prep.saved_dir),
                            calibration=calib, preprocess=prep.preprocess, seconds=time.perf_counter() - started,
                            warnings=tuple(warnings), accuracy=quantized.accuracy, edgetpu=edgetpu)


def check_full_integer(report: ModelReport, rec: Recipe, *, searched: bool = False) -> tuple[str, ...]:
    """Refuse float ops the recipe did not ask for; warn about those it did (unless a search chose them)."""
    if not rec.full_integer or report.full_integer:
        return ()
    if not rec.allow_float_fallback and not (rec.float_nodes or rec.float_ops):
        raise ConversionError(f"the converted model is not full integer: {len(report.float_ops)} op(s) stayed "
                              f"float ({', '.join(report.float_ops[:10])}); pass --allow-float-fallback to accept "
                              "that, or change those layers")
    if searched:  # the accuracy search has already said so, with the layers it chose
        return ()
    why = "mixed-precision recipe" if rec.float_nodes or rec.float_ops else "--allow-float-fallback"
    return (f"{len(report.float_ops)} op(s) left in float ({why}): "
            f"{', '.join(report.float_ops[:10])}; such a model will not map fully onto the Edge TPU",)


def build_metadata(plan: ConversionPlan, prep: PreparedConverter, rec: Recipe, calib: dict[str, Any],
                   report: ModelReport) -> EdgeqMetadata:
    """The metadata embedded in the model; labels must match a classifier's output width."""
    meta = EdgeqMetadata(preprocess=prep.preprocess, labels=plan.labels, task=plan.task, recipe=rec.to_dict(),
                         calibration=calib, source=os.path.basename(plan.source),
                         source_sha256=source_sha256(prep.keras_model, plan.kind, plan.source),
                         edgeq_version=__version__, postprocess=dict(plan.postprocess))
    if plan.postprocess:  # the declared decoder must fit the converted model's outputs
        from ..postprocess import get_decoder

        decoder = get_decoder(plan.postprocess["name"]).configure(plan.postprocess.get("options"))
        why = decoder.fits([tuple(o.shape) for o in report.outputs], plan.task)
        if why:
            raise UsageError(f"--postprocess {decoder.name} does not fit the converted model's outputs "
                             f"{[list(o.shape) for o in report.outputs]}: {why}")
    if plan.labels and report.outputs and plan.task == "classify":
        n_out = report.outputs[0].shape[-1] if report.outputs[0].shape else 0
        if n_out and n_out != len(plan.labels):
            raise UsageError(f"--labels gives {len(plan.labels)} labels but the model's output "
                             f"{report.outputs[0].name!r} has {n_out} classes")
    return meta


def write_model(out: pathlib.Path, data: bytes, recipe: Recipe | None, *, force: bool = False) -> pathlib.Path:
    """Write the model atomically, and the recipe beside it when given; without ``force`` both are
    created exclusively, so of two runs racing for one output exactly one succeeds."""
    write_bytes_atomic(out, data, exclusive=not force)
    if recipe is not None:
        recipe.save(recipe_path_for(out), exclusive=not force)
    return out
