"""``edgeq.convert``: float Keras/SavedModel -> quantized .tflite with the preprocessing embedded.

TensorFlow is imported here only, lazily: the runtime never needs it. The calibration source is
read once *before* TensorFlow is loaded, so an empty or broken source fails in milliseconds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._native import NativeLog, quiet_native_stderr
from ._version import __version__
from .calibration import CalibrationDataset
from .errors import ConversionError, EdgeqError, ModelError, UsageError
from .fileio import check_output, write_bytes_atomic
from .metadata import TASKS, EdgeqMetadata, with_edgeq_metadata
from .modelinfo import ModelReport, inspect_model
from .preprocess import Preprocess
from .recipes import Recipe, get_recipe

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_NORMALIZING_LAYERS = ("Rescaling", "Normalization")


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
    accuracy: dict[str, Any] | None = None   # mixed-precision search log (--max-accuracy-drop)
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


def import_tensorflow() -> Any:
    """Import TensorFlow quietly, or explain how to get it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0"
    try:
        with quiet_native_stderr(quiet):  # absl/oneDNN banners go straight to fd 2 at import
            import tensorflow as tf
    except ImportError as exc:
        raise ConversionError("conversion needs TensorFlow >= 2.21: pip install 'edgeq[convert]' "
                              "(the runtime alone does not include it)") from exc
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    return tf


# ---- model loading ----------------------------------------------------------------------------
def _hash_path(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def describe_source_model(model: Any) -> tuple[str, str]:
    """(kind, description) for a model argument; validates paths without importing TensorFlow."""
    if isinstance(model, (str, os.PathLike)):
        p = pathlib.Path(model)
        if not p.exists():
            raise ModelError(f"model not found: {p}; expected a .keras/.h5 file or a SavedModel directory")
        if p.is_dir():
            if not (p / "saved_model.pb").exists():
                raise ModelError(f"{p} is a directory without saved_model.pb; expected a SavedModel directory")
            return "saved_model", str(p)
        if p.suffix.lower() in KERAS_SUFFIXES:
            return "keras_file", str(p)
        if p.suffix.lower() == ".tflite":
            raise ModelError(f"{p} is already a .tflite model; convert the float Keras/SavedModel source instead")
        raise ModelError(f"{p}: unknown model type {p.suffix!r}; expected .keras, .h5 or a SavedModel directory")
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return "keras_model", f"<keras model {getattr(model, 'name', '?')}>"
    raise ModelError(f"unsupported model object {type(model).__name__}; pass a Keras model or a path")


def _load_keras(path: str) -> Any:
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
        raise ModelError(f"cannot load Keras model {path}: {exc}") from exc


def _input_shape(model: Any, kind: str) -> tuple[int, ...] | None:
    if kind == "saved_model":
        return None
    shape = tuple(model.inputs[0].shape)
    return shape


def _first_layers(model: Any) -> list[str]:
    names = []
    for layer in getattr(model, "layers", [])[:4]:
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        names.append(cls)
    return names


def infer_preprocess(model: Any, kind: str, given: Preprocess | None, options: dict[str, Any],
                     warnings: list[str]) -> Preprocess | None:
    """Fill the preprocessing contract from the model's input signature and the user's options."""
    normalizes = any(n in _NORMALIZING_LAYERS for n in _first_layers(model)[:2]) if kind != "saved_model" else False
    if given is not None:
        pre = given
    else:
        shape = _input_shape(model, kind) if kind != "saved_model" else None
        if kind == "saved_model" and not options.get("input_size"):
            shape = options.get("_saved_model_shape")
        if (shape is None or len(shape) != 4) and not options.get("input_size"):
            raise UsageError("cannot infer the input size of this model; pass --input-size WIDTHxHEIGHT")
        h = w = c = None
        if shape is not None and len(shape) == 4:
            _, h, w, c = shape
        if options.get("input_size"):
            w, h = options["input_size"]
        if h is None or w is None:
            raise UsageError("the model's input has dynamic height/width; pass --input-size WIDTHxHEIGHT")
        default_range = "raw" if normalizes else "0,1"
        pre = Preprocess.from_options(h, w, c, color=options.get("color"), value_range=options.get("value_range"),
                                      mean=options.get("mean"), std=options.get("std"),
                                      resize=options.get("resize"), default_range=default_range)
    if normalizes and pre.range_name != "raw 0..255":
        warnings.append(f"likely double normalisation: the model starts with a "
                        f"{'/'.join(n for n in _first_layers(model)[:2] if n in _NORMALIZING_LAYERS)} layer "
                        f"but the preprocessing also maps pixels to {pre.range_name}; "
                        "use --range raw if the layer expects 0..255 pixels")
    return pre


# ---- the converter ----------------------------------------------------------------------------
def _configure(tf: Any, converter: Any, recipe: Recipe, rep: Callable | None) -> None:
    dtypes = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}
    if recipe.name == "float16" or recipe.weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not recipe.needs_calibration:
        return  # dynamic range
    converter.representative_dataset = rep
    if recipe.activations == "int16":
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe.allow_float_fallback or recipe.float_nodes or recipe.float_ops:
        ops = ops + [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.target_spec.supported_ops = ops
    if not recipe.float_io:
        converter.inference_input_type = dtypes[recipe.io_dtype]
        converter.inference_output_type = dtypes[recipe.io_dtype]
    if not recipe.per_channel:
        converter._experimental_disable_per_channel = True


def _float_weights_bytes(model: Any, kind: str, saved_dir: str | None) -> int:
    if kind != "saved_model":
        return int(model.count_params()) * 4
    var_dir = pathlib.Path(saved_dir) / "variables"
    return sum(p.stat().st_size for p in var_dir.glob("*")) if var_dir.exists() else 0


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


def calibration_dataset(calibration: Any, *, num_samples: int = 200, seed: int = 0,
                        transform: Callable[[Any], Any] | None = None) -> CalibrationDataset:
    """The calibration source as a CalibrationDataset, read once to fail fast (no TensorFlow yet)."""
    dataset = calibration if isinstance(calibration, CalibrationDataset) else CalibrationDataset(
        calibration, None, num_samples=num_samples, seed=seed, transform=transform)
    dataset.check()
    return dataset


@dataclasses.dataclass(frozen=True)
class PreparedConverter:
    """A TFLiteConverter set up as edgeq.convert sets it up (shared with `edgeq analyze`)."""

    tf: Any
    converter: Any
    representative: Callable | None
    preprocess: Preprocess | None
    keras_model: Any
    saved_dir: str


@contextlib.contextmanager
def prepared_converter(model: Any, dataset: CalibrationDataset | None, rec: Recipe,
                       preprocess: Preprocess | None, preprocess_options: dict[str, Any] | None, *,
                       quiet: bool = True, warnings: list[str] | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       target: str | None = None) -> Iterator[PreparedConverter]:
    """Load the model, export a SavedModel (temporary), settle the preprocessing contract and
    configure a TFLiteConverter for the recipe. The export lives until the context exits."""
    warnings = [] if warnings is None else warnings
    kind, desc = describe_source_model(model)
    tf = import_tensorflow()
    opts = dict(preprocess_options or {})
    keras_model = _load_keras(desc) if kind == "keras_file" else (model if kind == "keras_model" else None)
    with tempfile.TemporaryDirectory(prefix="edgeq-export-") as tmp:
        if kind == "saved_model":
            saved_dir = desc
            opts["_saved_model_shape"] = _saved_model_input_shape(tf, desc)
        else:
            saved_dir = os.path.join(tmp, "saved_model")
            export_options = {}
            if target is not None:  # batch 1 in the signature: no run-time shape ops (Flatten's SHAPE/PACK)
                from .edgetpu.target import export_options_for_target

                export_options = export_options_for_target(tf, keras_model, target, warnings)
            with quiet_native_stderr(quiet):
                keras_model.export(saved_dir, verbose=False, **export_options)
        pre = infer_preprocess(keras_model, kind, preprocess, opts, warnings)
        if dataset is not None:
            if dataset.preprocess is None:
                dataset.preprocess = pre
            elif preprocess is None:
                pre = dataset.preprocess
        rep = _with_progress(dataset, progress) if dataset is not None else None
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir)
        _configure(tf, converter, rec, rep)
        yield PreparedConverter(tf, converter, rep, pre, keras_model, saved_dir)


def convert(model: Any, calibration: Any = None, output: str | os.PathLike | None = None, *,
            recipe: str | Recipe | None = None, preprocess: Preprocess | None = None,
            num_samples: int = 200, seed: int = 0, labels: Sequence[str] | str | os.PathLike | None = None,
            task: str = "classify", per_tensor: bool = False, float_io: bool = False,
            allow_float_fallback: bool = False, force: bool = False,
            preprocess_options: dict[str, Any] | None = None,
            transform: Callable[[Any], Any] | None = None,
            progress: Callable[[int, int], None] | None = None,
            quiet: bool = True, save_recipe: bool = True, range_method: str | None = None,
            max_accuracy_drop: float | None = None, eval_data: Any = None,
            target: str | None = None, info: Callable[[str], None] | None = None) -> ConversionResult:
    """Quantize a float model with calibration data and write the .tflite atomically.

    model: a .keras/.h5 path, a SavedModel directory, or an in-memory Keras model.
    calibration: a ``CalibrationDataset`` or anything it accepts as a source.
    info: receives progress lines of long steps (the accuracy search), e.g. for a CLI.
    """
    t0 = time.perf_counter()
    warnings: list[str] = []
    # Default recipe: int8, or uint8 (Coral's uint8 model I/O) with target="edgetpu"; an explicit recipe is kept.
    rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe or ("uint8" if target == "edgetpu" else "int8"))
    if target is not None:  # "edgetpu": 8-bit full integer, then shapes frozen and the result checked
        from .edgetpu.target import recipe_for_target

        rec = recipe_for_target(rec, target)
    changes: dict[str, Any] = {}
    if per_tensor:
        changes["per_channel"] = False
    if float_io:
        changes["float_io"] = True
    if allow_float_fallback:
        changes["allow_float_fallback"] = True
    if range_method is not None:
        from .accuracy.ranges import check_range_method

        changes["range_method"] = check_range_method(range_method)
    rec = rec.replace(**changes) if changes else rec
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    kind, desc = describe_source_model(model)
    if output is None:
        raise UsageError("an output path is required (-o OUT.tflite)")
    out = check_output(output, force, inputs=(model if kind != "keras_model" else None,))
    label_list = _read_labels(labels)

    # Calibration is validated before TensorFlow is imported: bad sources fail fast.
    dataset: CalibrationDataset | None = None
    if rec.needs_calibration:
        if calibration is None:
            raise UsageError(f"recipe {rec.name!r} needs calibration data (-c/--calibration: an image folder, "
                             "glob, video or .npy/.npz)")
        dataset = calibration_dataset(calibration, num_samples=num_samples, seed=seed, transform=transform)
    elif calibration is not None:
        warnings.append(f"recipe {rec.name!r} does not use calibration data; ignoring it")

    eval_set = _accuracy_target_data(rec, max_accuracy_drop, eval_data)  # validated before TensorFlow loads
    with prepared_converter(model, dataset, rec, preprocess, preprocess_options, quiet=quiet,
                            warnings=warnings, progress=progress, target=target) as prep:
        tf, converter, rep, pre = prep.tf, prep.converter, prep.representative, prep.preprocess
        accuracy = None
        with quiet_native_stderr(quiet) as native_log:
            try:
                if eval_set is not None:
                    from .accuracy.mixed import convert_to_budget

                    tflite, rec, accuracy = convert_to_budget(tf, converter, rec, rep, pre, eval_set,
                                                              max_accuracy_drop, label_list, warnings,
                                                              progress=_relay(info, native_log))
                elif rec.float_nodes or rec.float_ops or rec.range_method != "minmax":
                    tflite = _convert_selective(tf, converter, rec, rep)
                else:
                    tflite = converter.convert()
            except Exception as exc:  # noqa: BLE001 - converter errors are many types
                err = exc
            else:
                err = None
        if isinstance(err, EdgeqError):  # already explained (bad eval data, recipe for another model, ...)
            raise err
        if err is not None:
            raise _explain_failure(err, native_log, rec) from err
        float_bytes = _float_weights_bytes(prep.keras_model, kind, prep.saved_dir)

    if dataset is not None and dataset.skipped:
        warnings.append(f"calibration: skipped {len(dataset.skipped)} unreadable sample(s), e.g. "
                        f"{next(iter(dataset.skipped))}")
    report = inspect_model(bytes(tflite))
    if rec.full_integer and not report.full_integer:
        if not rec.allow_float_fallback and not (rec.float_nodes or rec.float_ops):
            raise ConversionError(f"the converted model is not full integer: {len(report.float_ops)} op(s) stayed "
                                  f"float ({', '.join(report.float_ops[:10])}); pass --allow-float-fallback to accept "
                                  "that, or change those layers")
        if accuracy is None:  # the accuracy search has already said so, with the layers it chose
            why = "mixed-precision recipe" if rec.float_nodes or rec.float_ops else "--allow-float-fallback"
            warnings.append(f"{len(report.float_ops)} op(s) left in float ({why}): "
                            f"{', '.join(report.float_ops[:10])}; such a model will not map fully onto the Edge TPU")
    calib = dataset.summary().to_dict() if dataset is not None else {}
    sha256 = _hash_path(pathlib.Path(desc)) if kind != "keras_model" else _hash_weights(model)
    meta = EdgeqMetadata(preprocess=pre, labels=tuple(label_list), task=task, recipe=rec.to_dict(),
                         calibration=calib, source=os.path.basename(desc), source_sha256=sha256,
                         edgeq_version=__version__)
    if label_list and report.outputs and task == "classify":
        n_out = report.outputs[0].shape[-1] if report.outputs[0].shape else 0
        if n_out and n_out != len(label_list):
            raise UsageError(f"--labels gives {len(label_list)} labels but the model's output "
                             f"{report.outputs[0].name!r} has {n_out} classes")
    if target is not None:  # batch 1 and static shapes, verified on a calibration sample
        from .edgetpu.target import prepare_for_target

        tflite = prepare_for_target(bytes(tflite), target, dataset, pre, warnings)
    final = with_edgeq_metadata(bytes(tflite), meta)
    write_bytes_atomic(out, final)
    if save_recipe:
        rec.save(recipe_path_for(out))
    report = inspect_model(out)
    edgetpu = None
    if target is not None:
        from .edgetpu.target import check_for_target

        edgetpu = check_for_target(out, target, warnings)
    for w in warnings:
        log.warning("%s", w)
    return ConversionResult(output=str(out), recipe=rec, report=report, float_weights_bytes=float_bytes,
                            calibration=calib, preprocess=pre, seconds=time.perf_counter() - t0,
                            warnings=tuple(warnings), accuracy=accuracy, edgetpu=edgetpu)


def _relay(info: Callable[[str], None] | None, native_log: NativeLog) -> Callable[[str], None] | None:
    """`info` made to reach the real stderr while the converter's native logs are silenced."""
    if info is None:
        return None

    def say(msg: str) -> None:
        with native_log.real_stderr():
            info(msg)
    return say


def recipe_path_for(model_path: str | os.PathLike) -> pathlib.Path:
    p = pathlib.Path(model_path)
    return p.with_name(p.stem + ".recipe.json")


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


def _convert_selective(tf: Any, converter: Any, rec: Recipe, rep: Callable | None) -> bytes:
    """Mixed precision / range methods: calibrate once, adjust ranges, quantize except the float nodes/ops."""
    from .accuracy.quantize import quantize_with_recipe

    return quantize_with_recipe(tf, converter, rec, rep)


def _accuracy_target_data(rec: Recipe, max_drop: float | None, eval_data: Any) -> Any:
    """Validate --max-accuracy-drop/--eval-data up front (no TensorFlow yet); the opened data or None."""
    if max_drop is None:
        if eval_data is not None:
            raise UsageError("--eval-data is used with --max-accuracy-drop; give both or neither")
        return None
    if eval_data is None:
        raise UsageError("--max-accuracy-drop needs --eval-data SRC (labelled images to measure the drop on)")
    if max_drop < 0:
        raise UsageError(f"--max-accuracy-drop must be >= 0 points, got {max_drop}")
    from .accuracy.data import read_eval_data
    from .accuracy.quantize import check_recipe

    check_recipe(rec)
    return read_eval_data(eval_data)


def _saved_model_input_shape(tf: Any, path: str) -> tuple[int, ...] | None:
    try:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures["serving_default"]
        spec = list(fn.structured_input_signature[1].values())[0]
        return tuple(spec.shape)
    except Exception:  # noqa: BLE001 - fall back to --input-size
        return None


def _hash_weights(model: Any) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def _read_labels(labels: Sequence[str] | str | os.PathLike | None) -> list[str]:
    if labels is None:
        return []
    if isinstance(labels, (str, os.PathLike)):
        p = pathlib.Path(labels)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(f"labels file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read labels file {p}: {exc}") from exc
        out = [line.strip() for line in lines if line.strip()]
        if not out:
            raise UsageError(f"labels file {p} is empty; expected one class name per line")
        return out
    return [str(x) for x in labels]
