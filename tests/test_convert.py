"""The converter on the bundled real model: recipes, full-integer check, accuracy, safety of outputs."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, BUNDLED_LABELS, CALIBRATION_DIR

from edgeq.convert.plan import make_recipe
from edgeq.convert.recipes import Recipe
from edgeq.errors import ConversionError, ModelError, OutputExistsError, UsageError
from edgeq.modelinfo import inspect_model

pytestmark = pytest.mark.convert


def tflite_top1(path, images, labels, batch=500):
    """Top-1 of a .tflite model straight through the LiteRT interpreter (independent of edgeq's runtime)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=2)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [batch, 28, 28, 1])
    it.allocate_tensors()
    x = images[..., None].astype(np.float32) / 255.0
    scale, zp = inp["quantization"]
    correct = 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            xb = np.clip(np.round(xb / scale + zp), info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], xb)
        it.invoke()
        correct += int((it.get_tensor(out["index"]).argmax(1) == labels[i:i + batch]).sum())
    return 100.0 * correct / len(x)


@pytest.fixture(scope="module")
def float_top1(fashion_test):
    import keras
    x, y = fashion_test
    model = keras.models.load_model(BUNDLED_KERAS, compile=False)
    pred = model.predict(x[..., None].astype(np.float32) / 255.0, batch_size=1000, verbose=0)
    return 100.0 * float((pred.argmax(1) == y).mean())


def test_int8_is_full_integer_by_reading_the_file(converted):
    r = inspect_model(converted.output)
    assert r.full_integer and r.integer_io and not r.float_ops and not r.float_tensors
    assert r.inputs[0].dtype == "int8" and r.outputs[0].dtype == "int8"
    assert r.inputs[0].scale == pytest.approx(1 / 255) and r.inputs[0].zero_point == -128
    assert converted.calibration["used"] == 200 and converted.calibration["skipped"] == 0
    assert converted.size_bytes < converted.float_weights_bytes / 2


def test_int8_accuracy_within_one_point_of_float(converted, fashion_test, float_top1):
    x, y = fashion_test
    q = tflite_top1(converted.output, x, y)
    assert float_top1 > 85.0                  # the bundled model is a real classifier
    assert abs(float_top1 - q) <= 1.0, (float_top1, q)


def test_recipe_saved_beside_model_and_reproduces(converted, tmp_path):
    from edgeq.convert.converter import convert, recipe_path_for
    saved = Recipe.load(recipe_path_for(converted.output))
    assert saved == converted.recipe
    out = tmp_path / "again.tflite"
    again = convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), out, recipe=saved, labels=str(BUNDLED_LABELS))
    assert again.recipe == saved
    assert again.report.ops == converted.report.ops
    a, b = inspect_model(converted.output), inspect_model(out)
    assert (a.inputs[0].scale, a.outputs[0].scale) == (b.inputs[0].scale, b.outputs[0].scale)


@pytest.mark.parametrize("recipe, in_dtype, full_integer, check", [
    ("uint8", "uint8", True, lambda r: "QUANTIZE" in r.ops),
    ("int16x8", "int16", True, lambda r: r.outputs[0].dtype == "int16"),
    ("float16", "float32", False, lambda r: "DEQUANTIZE" in r.ops),
    ("dynamic", "float32", False, lambda r: r.size_bytes < 80_000),
])
def test_other_recipes(recipe, in_dtype, full_integer, check, tmp_path, fashion_test, float_top1):
    from edgeq.convert.converter import convert
    out = tmp_path / f"m_{recipe}.tflite"
    res = convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), out, recipe=recipe, num_samples=50)
    r = inspect_model(out)
    assert r.inputs[0].dtype == in_dtype
    assert r.full_integer is full_integer
    assert check(r)
    assert res.recipe.name == recipe and r.metadata.recipe["name"] == recipe
    x, y = fashion_test
    assert abs(tflite_top1(out, x[:2000], y[:2000]) - float_top1) < 3.0


def test_per_tensor_and_float_io_options(tmp_path):
    from edgeq.convert.converter import convert
    res = convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), tmp_path / "pt.tflite",
                  recipe=make_recipe("int8", per_tensor=True, float_io=True), num_samples=30)
    r = res.report
    assert r.full_integer and not r.integer_io
    assert r.inputs[0].dtype == "float32" and r.ops.get("QUANTIZE") and r.ops.get("DEQUANTIZE")
    from edgeq.tflite_format import parse_model
    mf = parse_model(pathlib.Path(res.output).read_bytes())
    conv_weights = [mf.main.tensors[op.inputs[1]] for op in mf.main.operators if op.op == "CONV_2D"]
    assert all(len(t.scale) == 1 for t in conv_weights)          # per-tensor: one scale per weight tensor


def test_outputs_are_safe(converted, tmp_path):
    from edgeq.convert.converter import convert
    before = BUNDLED_KERAS.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), converted.output)
    with pytest.raises(OutputExistsError, match="is the input"):
        convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(BUNDLED_KERAS), force=True)
    assert BUNDLED_KERAS.read_bytes() == before
    with pytest.raises(UsageError, match="valid recipes: int8, uint8"):
        convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), tmp_path / "x.tflite", recipe="int4")
    with pytest.raises(UsageError, match="needs calibration data"):
        convert(str(BUNDLED_KERAS), None, tmp_path / "x.tflite")
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text("a\nb\n")
    with pytest.raises(UsageError, match="2 labels but the model's output"):
        convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), tmp_path / "x.tflite", labels=bad_labels, num_samples=10)
    assert not (tmp_path / "x.tflite").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]        # no temp files left


def test_bad_calibration_fails_before_tensorflow_loads(tmp_path):
    """An empty or all-bad calibration source is reported without importing TensorFlow."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    code = ("import sys, edgeq\n"
            "from edgeq.errors import CalibrationError\n"
            "for src in sys.argv[1:]:\n"
            "    try:\n"
            "        edgeq.convert(r'%s', src, r'%s')\n"
            "    except CalibrationError as e:\n"
            "        print('ERR', e)\n"
            "print('tf loaded:', 'tensorflow' in sys.modules)\n") % (BUNDLED_KERAS, tmp_path / "o.tflite")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "empty"), str(tmp_path / "bad"),
                          str(tmp_path / "missing")], capture_output=True, text=True, check=True).stdout
    assert out.count("ERR") == 3
    assert "holds no image files" in out and "no usable samples" in out and "not found" in out
    assert "tf loaded: False" in out


def test_double_normalisation_warning(tmp_path):
    import keras

    from edgeq.convert.converter import convert
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3)(x))
    default = convert(m, str(CALIBRATION_DIR), tmp_path / "a.tflite", num_samples=10, task="other")
    assert default.preprocess.range_name == "raw 0..255" and not default.warnings
    doubled = convert(m, str(CALIBRATION_DIR), tmp_path / "b.tflite", num_samples=10, task="other",
                      preprocess_options={"value_range": "0,1"})
    assert any("double normalisation" in w for w in doubled.warnings)


def test_float_op_fails_full_integer_unless_allowed(tmp_path):
    """An op with only a float kernel (here: SIN) must fail the int8 recipe, naming it."""
    import keras
    import tensorflow as tf

    from edgeq.convert.converter import convert
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.Lambda(lambda t: tf.math.sin(t))(x)
    m = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ConversionError, match="(?i)sin.*--allow-float-fallback"):
        convert(m, str(CALIBRATION_DIR), tmp_path / "f.tflite", num_samples=10, task="other")
    res = convert(m, str(CALIBRATION_DIR), tmp_path / "f.tflite", num_samples=10, task="other",
                  recipe=make_recipe("int8", allow_float_fallback=True))
    assert not res.report.full_integer
    assert any("left in float" in w for w in res.warnings)
    assert any(op.startswith("SIN") for op in res.report.float_ops)


def test_ops_without_tflite_kernel_are_named(tmp_path):
    import keras
    import tensorflow as tf

    from edgeq.convert.converter import convert
    inp = keras.Input((28, 28, 1))
    m = keras.Model(inp, keras.layers.Lambda(lambda t: tf.math.erf(t))(inp))
    with pytest.raises(ConversionError, match="no TFLite builtin kernel: Erf"):
        convert(m, str(CALIBRATION_DIR), tmp_path / "e.tflite", num_samples=5, task="other",
                recipe=make_recipe("int8", allow_float_fallback=True))


def test_keras_application_converts_to_full_int8_and_runs(tmp_path):
    """A real architecture (MobileNetV2 at 224, random weights, real BatchNorm statistics)."""
    import zoo
    from ai_edge_litert.interpreter import Interpreter

    from edgeq.convert.converter import convert
    imgs = zoo.images_for(224, str(CALIBRATION_DIR), count=8)
    model = zoo.build("MobileNetV2", 224, alpha=0.35, classes=10, images=imgs)
    res = convert(model, str(CALIBRATION_DIR), tmp_path / "mnv2.tflite", num_samples=16,
                  preprocess_options={"value_range": "-1,1"})
    assert res.report.full_integer and res.report.inputs[0].shape == (1, 224, 224, 3)
    assert res.preprocess.color == "RGB" and res.preprocess.value_range == (-1.0, 1.0)
    it = Interpreter(model_path=res.output)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    s, z = inp["quantization"]
    q = np.clip(np.round(imgs[:1] / s + z), -128, 127).astype(np.int8)
    it.set_tensor(inp["index"], q)
    it.invoke()
    os_, oz = out["quantization"]
    got = (it.get_tensor(out["index"]).astype(np.float32) - oz) * os_
    want = np.asarray(model(imgs[:1]))
    assert got.shape == (1, 10)
    assert np.abs(got - want).max() < 0.05 and abs(got.sum() - 1.0) < 0.05


def test_h5_and_saved_model_inputs(tmp_path):
    """The other documented inputs: a legacy .h5 file and a SavedModel directory (input size read from
    its serving signature)."""
    import keras

    from edgeq.convert.converter import convert
    model = keras.models.load_model(BUNDLED_KERAS, compile=False)
    h5 = tmp_path / "m.h5"
    model.save(h5)
    saved = tmp_path / "saved"
    model.export(str(saved), verbose=False)
    results = [convert(str(src), str(CALIBRATION_DIR), tmp_path / f"{name}.tflite", num_samples=20)
               for name, src in (("h5", h5), ("saved", saved))]
    for res in results:
        assert res.report.full_integer and res.report.inputs[0].shape == (1, 28, 28, 1)
        assert res.preprocess.color == "GRAY" and res.preprocess.width == 28
    assert len(results[1].report.metadata.source_sha256) == 64
    with pytest.raises(ModelError, match="saved_model.pb"):
        convert(str(tmp_path), str(CALIBRATION_DIR), tmp_path / "x.tflite")
