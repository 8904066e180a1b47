"""Float .tflite sources (MediaPipe's trained models) -> full integer, on real footage and photos.

Conversions are cached per session (each ~2-5 s); they need ai-edge-quantizer (edgeq[tflite]) but
not TensorFlow.
"""
from __future__ import annotations

import json
import pathlib
import sys

import cv2
import numpy as np
import pytest
from conftest import MEDIAPIPE

import edgeq
from edgeq.convert import tflite_passes as passes
from edgeq.convert.converter import convert
from edgeq.convert.tflite_source import read_float_tflite
from edgeq.errors import ConversionError, ModelError, UsageError
from edgeq.modelinfo import inspect_model

pytest.importorskip("ai_edge_quantizer", reason="needs ai-edge-quantizer: pip install 'edgeq[tflite]'")

FACE = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"
FACE_SPARSE = MEDIAPIPE / "face_detection" / "face_detection_full_range_sparse.tflite"
SELFIE = MEDIAPIPE / "selfie_segmentation" / "selfie_segmentation.tflite"
LANDMARK = MEDIAPIPE / "face_landmark" / "face_landmark.tflite"


def _need(path):
    if not path.is_file():
        pytest.skip(f"{path} missing: .ci/setup unpacks MediaPipe's models from the mediapipe 0.10.14 wheel")
    return path


@pytest.fixture(scope="session")
def eval_images(tmp_path_factory, vtest_path):
    """Held-out real images: vtest frames not used for calibration's first frames, and real photos."""
    folder = tmp_path_factory.mktemp("eval_images")
    cap = cv2.VideoCapture(str(vtest_path))
    for i in range(0, 400):
        ok, frame = cap.read()
        if not ok:
            break
        if i % 40 == 13:
            cv2.imwrite(str(folder / f"vtest_{i:03d}.png"), frame)
    skdata = pytest.importorskip("skimage.data")
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return folder


def _convert(tmp_path_factory, vtest_path, src, name, **kw):
    out = tmp_path_factory.mktemp("tflite_src") / name
    result = convert(str(src), str(vtest_path), str(out), num_samples=kw.pop("num_samples", 60), task="other",
                     **kw)
    return result


@pytest.fixture(scope="session")
def face_int8(tmp_path_factory, vtest_path):
    return _convert(tmp_path_factory, vtest_path, _need(FACE), "face_int8.tflite",
                    preprocess_options={"value_range": "-1,1"})


def _agreement(reference, candidate, images):
    from edgeq.accuracy import evaluate

    report = evaluate(str(reference), [str(candidate)], str(images), num_threads=2)
    return {o.name: o for o in report.comparisons[0].outputs}


def test_prepass_is_exact_and_removes_fp16_dequantize(vtest_path):
    src = read_float_tflite(_need(FACE))
    assert src.folded_ops == 74 and src.rewritten_ops > 0
    ops = inspect_model(src.model).ops
    assert "DEQUANTIZE" not in ops and "RELU" not in ops
    cap = cv2.VideoCapture(str(vtest_path))
    _, frame = cap.read()
    x = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (128, 128)).astype(np.float32)[None] / 127.5 - 1
    from ai_edge_litert.interpreter import Interpreter

    outs = []
    for kw in ({"model_path": str(FACE)}, {"model_content": src.model}):
        it = Interpreter(**kw)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append([it.get_tensor(o["index"]) for o in it.get_output_details()])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_face_detector_full_integer_with_contract_and_recipe(face_int8):
    r = face_int8
    assert r.report.full_integer, r.report.float_ops
    assert r.report.inputs[0].dtype == "int8" and all(o.dtype == "int8" for o in r.report.outputs)
    assert r.calibration["used"] == 60
    meta = edgeq.load(r.output).metadata
    assert (meta.preprocess.height, meta.preprocess.width) == (128, 128)
    assert meta.preprocess.value_range == (-1.0, 1.0)
    assert meta.recipe["name"] == "int8"
    saved = json.loads(pathlib.Path(r.output).with_suffix(".recipe.json").read_text())
    assert saved["name"] == "int8"


def test_face_detector_int8_agrees_with_float_on_real_images(face_int8, eval_images):
    outs = _agreement(FACE, face_int8.output, eval_images)
    assert outs["regressors"].cosine > 0.99, outs
    assert outs["classificators"].cosine > 0.95, outs


def test_runs_through_edgeq_load_and_is_delegated(face_int8, vtest_path):
    model = edgeq.load(face_int8.output)
    cap = cv2.VideoCapture(str(vtest_path))
    _, frame = cap.read()
    outputs = model.run(model.prepare(frame))
    assert [o.shape for o in outputs] == [(1, 896, 16), (1, 896, 1)]


def test_sparse_full_range_detector(tmp_path_factory, vtest_path, eval_images):
    r = _convert(tmp_path_factory, vtest_path, _need(FACE_SPARSE), "sparse.tflite", num_samples=30,
                 preprocess_options={"value_range": "-1,1"})
    assert r.report.full_integer and "DENSIFY" not in r.report.ops
    outs = _agreement(FACE_SPARSE, r.output, eval_images)
    assert min(o.cosine for o in outs.values()) > 0.95, outs


@pytest.mark.parametrize("recipe,kw,dtype", [("uint8", {}, "uint8"), ("int8", {"float_io": True}, "float32"),
                                             ("int16x8", {}, "int16")])
def test_uint8_and_float_io(tmp_path_factory, vtest_path, eval_images, recipe, kw, dtype):
    from edgeq.convert.plan import make_recipe

    r = _convert(tmp_path_factory, vtest_path, _need(FACE), f"face_{dtype}.tflite", num_samples=30,
                 recipe=make_recipe(recipe, **kw), preprocess_options={"value_range": "-1,1"})
    assert r.report.inputs[0].dtype == dtype and r.report.outputs[0].dtype == dtype
    outs = _agreement(FACE, r.output, eval_images)
    assert outs["regressors"].cosine > 0.99


def test_edgetpu_target(tmp_path_factory, vtest_path):
    r = _convert(tmp_path_factory, vtest_path, _need(FACE), "face_tpu.tflite", num_samples=20, target="edgetpu",
                 preprocess_options={"value_range": "-1,1"})
    assert r.report.inputs[0].dtype == "uint8"
    assert r.edgetpu is not None and not r.edgetpu.refused and r.edgetpu.first_unmapped is None


def test_custom_op_is_named_and_refused_even_with_fallback(tmp_path, vtest_path):
    from edgeq.convert.plan import make_recipe

    _need(SELFIE)
    for rec in (None, make_recipe("int8", allow_float_fallback=True)):
        with pytest.raises(ConversionError, match="Convolution2DTransposeBias.*cannot be calibrated"):
            convert(str(SELFIE), str(vtest_path), str(tmp_path / "s.tflite"), recipe=rec, num_samples=5)


def test_already_quantized_and_dynamic_inputs_refused(face_int8, tmp_path, vtest_path):
    with pytest.raises(ModelError, match="already quantized"):
        convert(face_int8.output, str(vtest_path), str(tmp_path / "again.tflite"), num_samples=5)
    model = passes.unpack(_need(FACE).read_bytes())
    inp = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    inp.shapeSignature = np.array([1, -1, -1, 3], np.int32)
    dyn = tmp_path / "dynamic.tflite"
    dyn.write_bytes(passes.pack(model))
    with pytest.raises(ModelError, match="dynamic input shape.*fix-shapes"):
        convert(str(dyn), str(vtest_path), str(tmp_path / "d.tflite"), num_samples=5)


def test_unsupported_recipe_options_fail_before_work(tmp_path, vtest_path):
    from edgeq.convert.plan import make_recipe

    with pytest.raises(UsageError, match="not available for a .tflite source"):
        convert(str(_need(FACE)), str(vtest_path), str(tmp_path / "x.tflite"), recipe="float16")
    with pytest.raises(UsageError, match="--range-method"):
        convert(str(FACE), str(vtest_path), str(tmp_path / "x.tflite"), recipe=make_recipe("int8", range_method="mse"))
    assert not (tmp_path / "x.tflite").exists()


def test_missing_extra_says_what_to_install(tmp_path, vtest_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    with pytest.raises(ConversionError, match=r"pip install 'edgeq\[tflite\]'"):
        convert(str(_need(FACE)), str(vtest_path), str(tmp_path / "x.tflite"), num_samples=5,
                preprocess_options={"value_range": "-1,1"})


def test_cli_converts_a_landmark_model(tmp_path, vtest_path, capsys):
    from edgeq.cli import main

    out = tmp_path / "landmark.tflite"
    code = main(["convert", str(_need(LANDMARK)), "-c", str(vtest_path), "-o", str(out), "--num-samples", "20",
                 "--task", "other"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "full integer: yes" in stdout and "no edgeq metadata; assuming" in stderr
    assert inspect_model(out.read_bytes()).full_integer


@pytest.mark.parametrize("recipe", ["int4-weights", "int4-dynamic"])
def test_int4_recipes_shrink_and_still_agree(tmp_path, face_int8, eval_images, recipe):
    """4-bit weights: smaller than int8, and measurably less accurate (README: where int4 does not pay)."""
    out = tmp_path / f"face_{recipe}.tflite"
    r = convert(str(FACE), None, str(out), recipe=recipe, preprocess_options={"value_range": "-1,1"})
    assert not r.report.full_integer and r.size_bytes < face_int8.size_bytes * 0.8
    outs = _agreement(FACE, r.output, eval_images)
    int8 = _agreement(FACE, face_int8.output, eval_images)
    assert 0.9 < outs["regressors"].cosine < int8["regressors"].cosine, (outs, int8)


def test_int4_recipe_on_a_keras_source(tmp_path, fashion_test):
    pytest.importorskip("tensorflow")
    from conftest import BUNDLED_KERAS

    r = convert(str(BUNDLED_KERAS), None, str(tmp_path / "fm_int4.tflite"), recipe="int4-dynamic")
    m = edgeq.load(r.output)
    images, labels = fashion_test
    pred = np.array([int(np.argmax(m.run(m.prepare(img))[0])) for img in images[:500]])
    assert (pred == labels[:500]).mean() > 0.8


@pytest.mark.convert
def test_op_without_int8_kernel_is_named_and_fallback_gives_a_working_model(tmp_path, vtest_path):
    """A float .tflite with SIN (no int8 implementation): refused by name; --allow-float-fallback runs and says so."""
    import keras
    import tensorflow as tf

    from edgeq.convert.plan import make_recipe

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3)(inp)
    x = keras.layers.Lambda(lambda t: keras.ops.sin(t))(x)
    model = keras.Model(inp, keras.layers.Conv2D(4, 3)(x))
    src = tmp_path / "sin.tflite"
    src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(ConversionError, match=r"not full integer.*SIN.*--allow-float-fallback"):
        convert(str(src), str(vtest_path), str(tmp_path / "a.tflite"), num_samples=10)
    r = convert(str(src), str(vtest_path), str(tmp_path / "b.tflite"), num_samples=10,
                recipe=make_recipe("int8", allow_float_fallback=True))
    assert not r.report.full_integer and any(op.startswith("SIN") for op in r.report.float_ops)
    assert any("left in float" in w and "SIN" in w for w in r.warnings)
    m = edgeq.load(r.output)
    assert m.run(m.prepare(np.zeros((64, 64, 3), np.uint8)))[0].shape == (1, 28, 28, 4)
