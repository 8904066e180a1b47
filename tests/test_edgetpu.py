"""The Edge TPU check on real converted models: the verdict a Coral user would get for each.

Conversions are few, small, and cached for the session. Expected verdicts follow Coral's published
rules (coral.ai/docs/edgetpu/models-intro/): the bundled CNN and MobileNetV2 use only table ops;
MobileNetV3 (minimalistic=False) uses HARD_SWISH, which is in no version of Coral's table (Coral's
advice: minimalistic=True, google-coral/edgetpu#353), so the compiler maps only what comes before
the first hard-swish; a float16 model is not 8-bit; the Keras export has a dynamic batch.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, CALIBRATION_DIR

from edgeq.cli import main
from edgeq.edgetpu import check_model, format_report, freeze_shapes
from edgeq.preprocess import Preprocess
from edgeq.tflite_format import load_model_file

pytestmark = pytest.mark.convert

MOBILENET_PRE = Preprocess(height=96, width=96, color="RGB", mean=(127.5,), std=(127.5,))


def _mobilenet(tmp_path_factory, name: str, **kw):
    import zoo

    import edgeq

    images = zoo.images_for(96, str(CALIBRATION_DIR), count=16)
    model = zoo.build(name, 96, classes=10, images=images, **kw)
    out = tmp_path_factory.mktemp(name) / f"{name}_edgetpu_target.tflite"
    return edgeq.convert(model, str(CALIBRATION_DIR), str(out), preprocess=MOBILENET_PRE, num_samples=16,
                         target="edgetpu")


@pytest.fixture(scope="session")
def mobilenet_v2(tmp_path_factory):
    return _mobilenet(tmp_path_factory, "MobileNetV2", alpha=0.35)


@pytest.fixture(scope="session")
def mobilenet_v3(tmp_path_factory):
    return _mobilenet(tmp_path_factory, "MobileNetV3Small")


@pytest.fixture(scope="session")
def bundled_edgetpu(tmp_path_factory):
    """The bundled model through the CLI: `edgeq convert --target edgetpu --json`."""
    out = tmp_path_factory.mktemp("etpu") / "fashion_edgetpu.tflite"
    report = out.with_suffix(".json")
    code = main(["convert", str(BUNDLED_KERAS), "-c", str(CALIBRATION_DIR), "-o", str(out), "--num-samples", "50",
                 "--target", "edgetpu", "--json", str(report)])
    assert code == 0
    return out, json.loads(report.read_text())


@pytest.fixture(scope="session")
def float16_model(tmp_path_factory):
    import edgeq

    out = tmp_path_factory.mktemp("f16") / "fashion_float16.tflite"
    return edgeq.convert(str(BUNDLED_KERAS), None, str(out), recipe="float16")


def test_int8_fixture_has_dynamic_batch_and_maps_fully_once_frozen(int8_model_path, tmp_path):
    r = check_model(int8_model_path)
    # the default Keras export: shape_signature [-1, ...] -> the compiler refuses the model
    assert not r.compatible and r.certain and r.tpu_ops == 0
    assert r.first_unmapped.index == 0 and r.first_unmapped.category == "dynamic_shape"
    assert "[-1, 28, 28, 1]" in r.first_unmapped.reason
    assert {v.category for v in r.ops} == {"dynamic_shape"}  # the only problem
    # what a Coral user gets: the compiler rejects the whole model, it does not leave ops on the CPU
    assert "dynamic-sized tensors" in r.refused and r.to_dict()["compiler_refuses"] == r.refused
    assert r.cpu_ops_after_first_unmapped == len(r.ops) - 1 and r.supported_ops_pushed_to_cpu == 0
    from edgeq.convert.calibration import read_image

    image = read_image(str(sorted((CALIBRATION_DIR / "sneaker").glob("*.png"))[0]))
    frozen = freeze_shapes(int8_model_path, tmp_path / "static.tflite", image=image)
    assert frozen.max_abs_diff == 0.0 and "real image" in frozen.verified_on
    after = check_model(frozen.output)
    assert after.compatible and after.first_unmapped is None and after.cpu_ops == 0 and after.refused == ""
    assert [v.op for v in after.ops] == [v.op for v in r.ops]


def test_target_edgetpu_bundled_model_maps_fully(bundled_edgetpu):
    path, d = bundled_edgetpu
    assert d["recipe"]["name"] == "uint8" and d["recipe"]["per_channel"] is True
    assert d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["shape_signature"] == [1, 28, 28, 1]
    assert d["outputs"][0]["dtype"] == "uint8" and d["full_integer"] is True
    e = d["edgetpu"]
    assert e["compatible"] is True and e["first_unmapped"] is None
    assert [o["op"] for o in e["ops"]][0] == "QUANTIZE" and all(o["mapped"] for o in e["ops"])
    assert e["fits_on_chip_cache_estimate"] and 0 < e["parameter_bytes_estimate"] < 200 * 1024
    _, mf = load_model_file(path)
    assert not any(t.is_dynamic for t in mf.main.tensors)
    assert "edgeq" in mf.metadata  # the preprocessing contract survived the shape freezing


def test_target_edgetpu_keeps_the_models_predictions(bundled_edgetpu, int8_model_path, fashion_test):
    """Freezing must not change what the model computes: same top-1 as the plain int8 conversion."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeq.edgetpu.shapes import sample_input

    images, labels = fashion_test[0][:300], fashion_test[1][:300]
    accs = []
    for path in (bundled_edgetpu[0], int8_model_path):
        _, mf = load_model_file(path)  # the embedded preprocessing and the input's quantization apply
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        hits = 0
        for img, label in zip(images, labels):
            x, _ = sample_input(mf, img, input_color="GRAY")
            it.set_tensor(inp["index"], x)
            it.invoke()
            hits += int(np.argmax(it.get_tensor(out["index"])) == label)
        accs.append(hits / len(labels))
    assert accs[0] > 0.75 and abs(accs[0] - accs[1]) <= 0.02


def test_mobilenet_v2_maps_fully(mobilenet_v2):
    e = mobilenet_v2.edgetpu
    assert e is not None and e.compatible and e.first_unmapped is None
    assert e.tpu_ops == len(e.ops) == mobilenet_v2.report.op_count
    assert {v.op for v in e.ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "SOFTMAX", "QUANTIZE"}
    assert 100 * 1024 < e.parameter_bytes < 8 * 2**20
    assert mobilenet_v2.recipe.name == "uint8"  # the default recipe for the Edge TPU: uint8 model I/O
    assert [t.dtype for t in mobilenet_v2.report.inputs + mobilenet_v2.report.outputs] == ["uint8", "uint8"]
    assert not any(t.is_dynamic for t in load_model_file(mobilenet_v2.output)[1].main.tensors)


def test_mobilenet_v2_needs_runtime_13_for_its_quantize_ops(mobilenet_v2):
    r = check_model(mobilenet_v2.output, runtime_version=12)
    assert not r.compatible and r.first_unmapped.op == "QUANTIZE"
    assert r.first_unmapped.category == "runtime_version" and "13+" in r.first_unmapped.reason
    assert r.cpu_ops_after_first_unmapped == len(r.ops) - 1  # everything after the input QUANTIZE
    assert r.supported_ops_pushed_to_cpu == len(r.ops) - 2  # all but the two QUANTIZE ops ride along
    assert r.refused == ""  # the compiler still compiles it, with every op on the CPU


def test_mobilenet_v3_hard_swish_stops_the_mapping(mobilenet_v3):
    e = mobilenet_v3.edgetpu
    assert not e.compatible and e.certain
    first = e.first_unmapped
    assert first.op == "HARD_SWISH" and first.category == "unsupported_op" and "minimalistic=True" in first.reason
    # what precedes the first hard-swish maps, everything depending on it runs on the CPU
    assert all(v.mapped for v in e.ops[:first.index])
    assert e.tpu_ops == first.index and e.supported_ops_pushed_to_cpu > 50
    assert e.cpu_ops_after_first_unmapped == len(e.ops) - first.index - 1 == e.cpu_ops - 1
    after = [v for v in e.ops[first.index + 1:] if v.category == "after_unmapped"]
    assert after and all(f"op #{first.index}" in v.reason for v in after)
    assert any("hard-swish" in s for s in e.suggestions)
    assert any("NOT map fully" in w and "HARD_SWISH" in w for w in mobilenet_v3.warnings)


def test_float16_model_is_not_eight_bit(float16_model):
    r = check_model(float16_model.output)
    assert not r.compatible and r.certain
    assert r.first_unmapped.category == "data_type" and "float" in r.first_unmapped.reason
    assert any("quantize the remaining float" in s for s in r.suggestions)
    assert any("is float32, not 8-bit" in i for i in r.issues)
    assert "Model not quantized" in r.refused  # the compiler rejects a model with no 8-bit activations


def test_target_edgetpu_refuses_non_integer_recipes(tmp_path):
    import edgeq
    from edgeq.errors import UsageError

    with pytest.raises(UsageError, match="8-bit full-integer"):
        edgeq.convert(str(BUNDLED_KERAS), None, str(tmp_path / "x.tflite"), recipe="float16", target="edgetpu")
    with pytest.raises(UsageError, match="valid targets: edgetpu"):
        edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "x.tflite"), target="gpu")
    assert not (tmp_path / "x.tflite").exists()


def test_unequal_dilation_breaks_the_conv2d_rule(tmp_path):
    """Conv2D(dilation_rate=(1, 2)) exported with batch 1 stays one CONV_2D with dilation 1x2, which breaks
    Coral's documented Conv2d limitation (same dilation in x and y); everything after it runs on the CPU."""
    import keras

    import edgeq

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=(1, 2), activation="relu")(x)
    x = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    pre = Preprocess(height=32, width=32, color="RGB", mean=(127.5,), std=(127.5,))
    r = edgeq.convert(keras.Model(inp, x), str(CALIBRATION_DIR), str(tmp_path / "dil.tflite"), preprocess=pre,
                      num_samples=8, target="edgetpu")
    e = r.edgetpu
    first = e.first_unmapped
    assert first.index == 2 and first.op == "CONV_2D" and first.category == "constraint" and first.certain
    assert "dilation 1x2" in first.reason and "same dilation" in first.reason
    assert [v.op for v in e.ops[:first.index]] == ["QUANTIZE", "CONV_2D"] and e.tpu_ops == first.index
    assert [v.category for v in e.ops[first.index + 1:]] == ["after_unmapped"] * 4  # MEAN FC SOFTMAX QUANTIZE
    assert any("documented limitation" in s for s in e.suggestions)


def test_explicit_int8_recipe_is_kept_for_edgetpu(tmp_path):
    """uint8 I/O is only the default: a user who asks for the int8 recipe gets int8 model I/O."""
    import edgeq

    r = edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "i8.tflite"), recipe="int8",
                      num_samples=20, target="edgetpu")
    assert r.recipe.name == "int8" and not any("uint8" in w for w in r.warnings)
    assert [t.dtype for t in r.report.inputs + r.report.outputs] == ["int8", "int8"]
    assert r.edgetpu.compatible and "QUANTIZE" not in {v.op for v in r.edgetpu.ops}
    assert r.report.inputs[0].shape_signature == (1, 28, 28, 1)


def test_float_op_left_in_splits_the_model(tmp_path):
    """A mixed model (MEAN kept in float): the Edge TPU runs what precedes the DEQUANTIZE, the CPU the rest."""
    import edgeq
    from edgeq.convert.recipes import get_recipe

    rec = get_recipe("uint8").replace(float_ops=("MEAN",))
    r = edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "mixed.tflite"), recipe=rec,
                      num_samples=20, target="edgetpu")
    e = r.edgetpu
    ops = [v.op for v in e.ops]
    first = e.first_unmapped
    assert not e.compatible and e.certain and e.refused == ""
    assert first.op == "DEQUANTIZE" and ops[first.index + 1] == "MEAN" and "keep the model full integer" in first.reason
    assert all(v.mapped for v in e.ops[:first.index]) and e.tpu_ops == first.index
    assert e.ops[first.index + 1].category == "data_type"  # the float MEAN itself
    # every op after the DEQUANTIZE runs on the CPU; FULLY_CONNECTED, SOFTMAX and the output QUANTIZE only
    # because they depend on it
    assert e.cpu_ops_after_first_unmapped == len(ops) - first.index - 1
    assert e.supported_ops_pushed_to_cpu == 3 and ops[-3:] == ["FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"]
    assert any("(MEAN)" in s for s in e.suggestions)
    assert not any("DEQUANTIZE" in s and "quantize the remaining" in s for s in e.suggestions)
    assert any("NOT map fully" in w and "DEQUANTIZE" in w for w in r.warnings)


def test_parameter_estimate_counts_the_int8_weights_and_flags_a_tight_cache(tmp_path):
    """~7.4 MiB of int8 weights: under 8 MiB, but the executable's share of the SRAM makes it tight."""
    import keras

    import edgeq

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Dense(940)(keras.layers.Flatten()(x))  # 8192 x 940 int8 weights = 7.35 MiB
    pre = Preprocess(height=32, width=32, color="RGB", mean=(127.5,), std=(127.5,))
    r = edgeq.convert(keras.Model(inp, x), str(CALIBRATION_DIR), str(tmp_path / "big.tflite"), preprocess=pre,
                      num_samples=8, target="edgetpu")
    e = r.edgetpu
    weights = 8192 * 940 + 3 * 3 * 3 * 8  # int8, one byte each
    biases = 4 * (940 + 8)  # int32 (the converter drops an all-zero bias)
    assert e.compatible and weights < e.parameter_bytes <= weights + biases + 64  # + shape constants
    # batch 1 in the export: Flatten is a constant RESHAPE, no run-time SHAPE/STRIDED_SLICE/PACK
    assert [v.op for v in e.ops] == ["QUANTIZE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED", "QUANTIZE"]
    assert e.fits_cache and e.cache_tight and e.to_dict()["on_chip_cache_tight_estimate"] is True
    assert any("close to the ~8 MiB on-chip cache" in s for s in e.suggestions)
    assert "(tight; estimate)" in format_report(e, show_ops=False)
