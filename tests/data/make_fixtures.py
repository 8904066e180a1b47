"""Regenerate the small committed .tflite fixtures used by the runtime tests (needs TensorFlow).

The runtime tests run in environments without TensorFlow (see .ci/runtime-envs.sh), so the
models they need are committed; this script documents and reproduces exactly how they were made:

    .venv/bin/python tests/data/make_fixtures.py

- add_float.tflite: y = (x + a) * b + x on a float32 [1, 8] input: two ADD nodes (what the test
  delegate in tests/delegate claims) and one MUL it must leave to the CPU.
- edgetpu_add.tflite: the same graph with its first ADD rewritten as the custom op
  "edgetpu-custom-op", the marker of a model compiled for the Edge TPU. Only a delegate that
  claims that op can run it (the test delegate does when given claim=edgetpu-custom-op).
- fashion_int8.tflite: the bundled Fashion-MNIST CNN converted by edgeq.convert (int8 recipe,
  embedded preprocessing + labels).
- fashion_float.tflite: the same network as float32 TFLite, with the same edgeq metadata.
- while_forever.tflite: a [1, 28, 28, 1] image model whose WHILE loop never ends (its condition is
  always true): inference never returns. For the crash-containment trial run and the pipeline's
  inference watchdog.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

ADD_CONST_A = np.arange(8, dtype=np.float32) * 0.5 - 1.0
ADD_CONST_B = np.linspace(-2.0, 2.0, 8, dtype=np.float32)


def make_add_model(tf) -> bytes:
    a = tf.constant(ADD_CONST_A)
    b = tf.constant(ADD_CONST_B)

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def graph(x):
        return tf.add(tf.multiply(tf.add(x, a), b), x)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()])
    return conv.convert()


def make_while_forever(tf) -> bytes:
    @tf.function(input_signature=[tf.TensorSpec([1, 28, 28, 1], tf.float32, name="image")])
    def graph(x):
        def cond(i, x):
            return tf.reduce_sum(x) > -1e30  # never false for finite inputs

        def body(i, x):
            return i + 1.0, x + 0.0

        _, x = tf.while_loop(cond, body, [tf.constant(0.0), x])
        return tf.reshape(tf.reduce_mean(x, axis=[1, 2]), [1, 1]) * tf.ones([1, 10])

    return tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], graph).convert()


def make_edgetpu_model(add_model: bytes) -> bytes:
    """Rewrite the first ADD into 'edgetpu-custom-op' (how edgetpu_compiler marks TPU subgraphs)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.metadata import pack_model, unpack_model

    m = unpack_model(add_model)
    add_code = next(i for i, oc in enumerate(m.operatorCodes)
                    if max(oc.builtinCode, oc.deprecatedBuiltinCode) == schema.BuiltinOperator.ADD)
    custom = schema.OperatorCodeT()
    custom.builtinCode = schema.BuiltinOperator.CUSTOM
    custom.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    custom.customCode = "edgetpu-custom-op"
    custom.version = 1
    m.operatorCodes.append(custom)
    op = next(o for o in m.subgraphs[0].operators if o.opcodeIndex == add_code)
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.builtinOptionsType = 0
    op.builtinOptions = None
    op.customOptions = list(b"edgeq-test")
    return pack_model(m)


def make_fashion(tmp: pathlib.Path) -> tuple[bytes, bytes]:
    import edgeq
    from edgeq.convert.source import import_tensorflow
    from edgeq.metadata import read_metadata, with_edgeq_metadata

    keras_path = ROOT / "models" / "fashion_mnist_dsconv.keras"
    result = edgeq.convert(str(keras_path), str(ROOT / "calibration_data"), str(tmp / "int8.tflite"),
                           labels=str(ROOT / "models" / "fashion_mnist.labels.txt"), num_samples=100,
                           save_recipe=False)
    int8 = (tmp / "int8.tflite").read_bytes()
    tf = import_tensorflow()
    import keras

    model = keras.models.load_model(keras_path)
    model.export(str(tmp / "saved"), verbose=False)
    float_bytes = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "saved")).convert()
    meta = read_metadata(int8)
    meta = dataclasses.replace(meta, recipe={"name": "float32", "full_integer": False},
                               calibration={})
    if not result.report.full_integer:
        raise SystemExit(f"fashion_int8 is not full integer: {result.report.float_ops}")
    return int8, with_edgeq_metadata(bytes(float_bytes), meta)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgeq.convert.source import import_tensorflow

    tf = import_tensorflow()
    add = make_add_model(tf)
    (HERE / "add_float.tflite").write_bytes(add)
    (HERE / "edgetpu_add.tflite").write_bytes(make_edgetpu_model(add))
    (HERE / "while_forever.tflite").write_bytes(make_while_forever(tf))
    with tempfile.TemporaryDirectory() as tmp:
        int8, flt = make_fashion(pathlib.Path(tmp))
    (HERE / "fashion_int8.tflite").write_bytes(int8)
    (HERE / "fashion_float.tflite").write_bytes(flt)
    for name in ("add_float", "edgetpu_add", "fashion_int8", "fashion_float", "while_forever"):
        p = HERE / f"{name}.tflite"
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
