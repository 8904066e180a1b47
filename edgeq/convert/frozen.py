"""The Keras model's inference function, variables frozen, as the converter's input (no SavedModel).

Why: for a Keras model the SavedModel route costs an export (tracing, then writing and reading back
variables and a checkpoint graph) and two full Python loads of that SavedModel inside TensorFlow's
converter: 3-4x the time of tracing the model once and freezing its variables into constants.
The converter then makes the same float graph (same ops, bit-identical float outputs on
MobileNetV2 and the bundled model); what differs is only the I/O tensor names and the missing
signature def, which ``match_saved_model_io`` restores as the SavedModel route names them.

Checked per conversion: the float model's output on the first calibration sample must match the Keras
model's; if it does not (or the route fails), edgeq says so and converts through the SavedModel.
``EDGEQ_KERAS_ROUTE=savedmodel`` forces the SavedModel route. Recipes naming float layers keep the SavedModel
route: the accuracy search made them through one, and their recipe file reproduces the model byte for byte
(the routes differ only in the model-type byte of TFLite's CONVERSION_METADATA).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ..errors import ConversionError

log = logging.getLogger(__name__)

ENV = "EDGEQ_KERAS_ROUTE"
SIGNATURE_KEY = "serving_default"
TOLERANCE = 1e-4   # max |frozen - Keras| relative to max |Keras| on the first sample


def route_choice() -> str:
    """'frozen' (default) or 'savedmodel', from EDGEQ_KERAS_ROUTE."""
    choice = os.environ.get(ENV, "frozen").strip().lower() or "frozen"
    if choice not in ("frozen", "savedmodel"):
        from ..errors import UsageError

        raise UsageError(f"{ENV}={choice!r}: expected 'frozen' (the default, faster) or 'savedmodel'")
    return choice


class FrozenRouteMismatch(ConversionError):
    """The frozen-route float graph does not compute what the Keras model does: edgeq.convert retries
    through the SavedModel (and says so)."""


def eligible(keras_model: Any) -> bool:
    """One input and one output tensor (functional/Sequential): the names the SavedModel route gives are then
    known; other models (several outputs, dict outputs, subclassed) keep the SavedModel route."""
    try:
        inputs, outputs = list(keras_model.inputs), list(keras_model.outputs)
    except (AttributeError, TypeError, ValueError):
        return False
    return len(inputs) == 1 and len(outputs) == 1 and len(inputs[0].shape) >= 1


def try_frozen_converter(tf: Any, keras_model: Any) -> tuple[Any | None, tuple[str, ...]]:
    """(converter, ()) or, when the route is switched off, does not apply or fails, (None, why) for the
    SavedModel route (why is empty unless it failed)."""
    if route_choice() != "frozen" or not eligible(keras_model):
        return None, ()
    try:
        return frozen_converter(tf, keras_model), ()
    except Exception as exc:  # noqa: BLE001 - tracing/freezing raise many types; the SavedModel route remains
        why = f"the frozen-function route failed ({type(exc).__name__}: {str(exc).strip()[:200]}); exported a " \
              "SavedModel instead (slower)"
        log.info("%s", why)  # a warning of the conversion result: finish_conversion logs it
        return None, (why,)


def check_frozen(keras_model: Any, float_model: bytes, rep: Any) -> None:
    """Raise FrozenRouteMismatch unless the float model matches the Keras model on the first sample."""
    sample = next(iter(rep()))
    try:
        why = matches_keras(keras_model, float_model, [np.asarray(x, np.float32) for x in sample])
    except Exception as exc:  # noqa: BLE001 - could not even compare: do not trust the route
        why = f"the comparison failed: {type(exc).__name__}: {str(exc).strip()[:200]}"
    if why is not None:
        raise FrozenRouteMismatch(f"the frozen-function float graph does not match the Keras model ({why}); "
                                  f"converted through a SavedModel instead (slower; {ENV}=savedmodel does so "
                                  "from the start)")


def input_names(keras_model: Any) -> list[str]:
    return [str(getattr(t, "name", f"input_{i}")).split(":")[0] for i, t in enumerate(keras_model.inputs)]


def frozen_converter(tf: Any, keras_model: Any) -> Any:
    """A TFLiteConverter on the model's inference function with its variables frozen into constants."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    inputs = list(keras_model.inputs)
    specs = [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=n)
             for t, n in zip(inputs, input_names(keras_model))]
    multi = len(specs) > 1
    fn = tf.function(lambda *xs: keras_model(list(xs) if multi else xs[0], training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing trackable_obj": not needed, nothing is left to track
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    finally:
        absl.setLevel(level)


def matches_keras(keras_model: Any, float_model: bytes, sample: list[np.ndarray]) -> str | None:
    """None when the float .tflite computes what the Keras model does on ``sample``, else how it differs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=float_model, num_threads=1)
    for d, x in zip(interp.get_input_details(), sample):
        interp.resize_tensor_input(d["index"], list(x.shape), strict=False)
    interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), sample):
        interp.set_tensor(d["index"], np.asarray(x, np.float32))
    interp.invoke()
    got = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    ref = keras_model(sample if len(sample) > 1 else sample[0], training=False)
    ref = [np.asarray(r) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    if len(got) != len(ref):
        return f"{len(got)} outputs instead of the Keras model's {len(ref)}"
    for k, (g, r) in enumerate(zip(got, ref)):
        err = float(np.max(np.abs(g.astype(np.float64) - r))) if g.shape == r.shape else np.inf
        if not err <= TOLERANCE * max(float(np.max(np.abs(r))), 1e-6):
            return f"output {k} differs from the Keras model's by {err:.3g} on the first calibration sample"
    return None


def match_saved_model_io(data: bytes, names: list[str]) -> bytes:
    """I/O tensor names and the 'serving_default' signature as the SavedModel route gives them
    (inputs 'serving_default_<name>:0', outputs 'StatefulPartitionedCall_1:<k>', signature outputs
    'output_<k>'), so a model reads the same whichever route made it."""
    from .tflite_passes import add_signature, pack, unpack

    model = unpack(data)
    if model.signatureDefs:
        return data
    sg = model.subgraphs[0]
    for i, name in zip(sg.inputs, names):
        sg.tensors[i].name = f"serving_default_{name}:0"
    for k, i in enumerate(sg.outputs):
        sg.tensors[i].name = f"StatefulPartitionedCall_1:{k}"
    add_signature(model, SIGNATURE_KEY)
    for m, name in zip(model.signatureDefs[0].inputs, names):
        m.name = name
    for k, m in enumerate(model.signatureDefs[0].outputs):
        m.name = f"output_{k}"
    return pack(model)
