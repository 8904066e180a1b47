"""ONNX sources (NCHW, as PyTorch exports them) -> onnx2tf -> full int8 with an NHWC contract.

The test model is a trained network: MediaPipe's face detector (after edgeq's exact pre-pass) exported
to ONNX with tf2onnx and an NCHW input, so agreement is measured on trained weights, against ONNX
Runtime running the float ONNX model on real frames.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from conftest import MEDIAPIPE

import edgeq
from edgeq.convert.converter import convert
from edgeq.errors import ConversionError, ModelError

pytest.importorskip("onnx2tf", reason="needs onnx2tf: pip install 'edgeq[onnx]'")
pytest.importorskip("tf2onnx", reason="needs tf2onnx to build the test model (dev extra)")
pytest.importorskip("onnxruntime", reason="needs onnxruntime for the float reference (dev extra)")
pytest.importorskip("ai_edge_quantizer", reason="the test model is made with edgeq's .tflite pre-pass")
pytestmark = pytest.mark.convert

FACE = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"


@pytest.fixture(scope="session")
def face_onnx(tmp_path_factory):
    if not FACE.is_file():
        pytest.skip(f"{FACE} missing: .ci/setup unpacks MediaPipe's models")
    import tf2onnx

    from edgeq.convert.tflite_source import read_float_tflite

    folder = tmp_path_factory.mktemp("onnx")
    flat = folder / "face_float.tflite"
    flat.write_bytes(read_float_tflite(FACE).model)
    out = folder / "face_nchw.onnx"
    tf2onnx.convert.from_tflite(str(flat), inputs_as_nchw=["input"], opset=17, output_path=str(out))
    return out


@pytest.fixture(scope="session")
def face_onnx_int8(face_onnx, tmp_path_factory, vtest_path):
    out = tmp_path_factory.mktemp("onnx_int8") / "face_onnx_int8.tflite"
    return convert(str(face_onnx), str(vtest_path), str(out), num_samples=60, task="other",
                   preprocess_options={"value_range": "-1,1"})


def _frames(vtest_path, every=40, offset=13, limit=10):
    cap = cv2.VideoCapture(str(vtest_path))
    frames, i = [], 0
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == offset:
            frames.append(frame)
        i += 1
    return frames


def test_nchw_onnx_becomes_full_int8_with_nhwc_contract(face_onnx, face_onnx_int8):
    import onnx

    dims = [d.dim_value for d in onnx.load(str(face_onnx)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 128]
    r = face_onnx_int8
    assert r.report.full_integer and r.report.inputs[0].shape == (1, 128, 128, 3)
    meta = edgeq.load(r.output).metadata
    assert meta.preprocess.layout == "NHWC" and (meta.preprocess.height, meta.preprocess.width) == (128, 128)
    assert meta.source == "face_nchw.onnx"


def test_onnx_int8_agrees_with_float_onnx_on_real_frames(face_onnx, face_onnx_int8, vtest_path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(face_onnx), providers=["CPUExecutionProvider"])
    model = edgeq.load(face_onnx_int8.output)
    ref, got = {}, {}
    for frame in _frames(vtest_path):
        pixels = model.metadata.preprocess.apply(frame)[None]          # float NHWC in [-1, 1]
        for y in sess.run(None, {"input": pixels.transpose(0, 3, 1, 2)}):
            ref.setdefault(y.shape, []).append(y.ravel())
        for y in model.dequantize(model.run(model.prepare(frame))):
            got.setdefault(y.shape, []).append(np.asarray(y, np.float64).ravel())
    assert set(ref) == set(got)
    cos = {}
    for shape in ref:
        a, b = np.concatenate(ref[shape]), np.concatenate(got[shape])
        cos[shape] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos[(1, 896, 16)] > 0.99 and cos[(1, 896, 1)] > 0.95, cos


def test_onnx_edgetpu_target(face_onnx, tmp_path, vtest_path):
    r = convert(str(face_onnx), str(vtest_path), str(tmp_path / "tpu.tflite"), num_samples=20, target="edgetpu",
                preprocess_options={"value_range": "-1,1"})
    assert r.report.inputs[0].dtype == "uint8" and r.edgetpu is not None and r.edgetpu.first_unmapped is None


def test_dynamic_height_width_needs_input_size(face_onnx, tmp_path, vtest_path):
    import onnx

    model = onnx.load(str(face_onnx))
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "size"
    dyn = tmp_path / "dynamic.onnx"
    onnx.save(model, str(dyn))
    with pytest.raises(ModelError, match="dynamic input height/width.*--input-size"):
        convert(str(dyn), str(vtest_path), str(tmp_path / "d.tflite"), num_samples=5)


def test_missing_extra_and_bad_file(tmp_path, vtest_path, monkeypatch, face_onnx):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        convert(str(bad), str(vtest_path), str(tmp_path / "b.tflite"), num_samples=5)
    monkeypatch.setitem(sys.modules, "onnx2tf", None)
    with pytest.raises(ConversionError, match=r"pip install 'edgeq\[onnx\]'"):
        convert(str(face_onnx), str(vtest_path), str(tmp_path / "x.tflite"), num_samples=5)


def test_bundled_classifier_as_nchw_onnx_with_accuracy_budget(tmp_path, fashion_test):
    """A classifier exported NCHW: --max-accuracy-drop works on an ONNX source, measured on real labels."""
    import keras
    import tensorflow as tf
    import tf2onnx
    from conftest import BUNDLED_KERAS, CALIBRATION_DIR

    from edgeq.accuracy import convert_to_budget

    model = keras.models.load_model(BUNDLED_KERAS, compile=False)
    onnx_path = tmp_path / "fashion_nchw.onnx"
    spec = (tf.TensorSpec((1, 28, 28, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, inputs_as_nchw=["image"],
                               output_path=str(onnx_path))
    r = convert_to_budget(str(onnx_path), str(CALIBRATION_DIR), str(tmp_path / "f.tflite"), max_accuracy_drop=1.0,
                          eval_data="/usr/share/datasets/fashion-mnist", num_samples=100)
    assert r.report.inputs[0].shape == (1, 28, 28, 1) and r.accuracy is not None
    m = edgeq.load(r.output)
    images, labels = fashion_test
    pred = np.array([int(np.argmax(m.dequantize(m.run(m.prepare(img)))[0])) for img in images[:500]])
    assert (pred == labels[:500]).mean() > 0.85
    # the ONNX model itself as eval's float reference (before: a Keras load error)
    from edgeq.accuracy import evaluate

    rep = evaluate(str(onnx_path), [r.output], "/usr/share/datasets/fashion-mnist", limit=500)
    ref, cand = rep.models
    assert ref.path == str(onnx_path) and abs(ref.top1 - cand.top1) < 2.0 and ref.top1 > 85
    assert rep.comparisons[0].agreement > 95


TORCH_ONNX = MEDIAPIPE.parents[2] / "tests" / "data" / "mobilenetv2_torch.onnx"


def test_a_pytorch_export_is_exact_in_float_and_becomes_full_int8(tmp_path, vtest_path):
    """torch.onnx.export's MobileNetV2 (tests/data/make_torch_onnx.py; seeded weights, BatchNorm statistics
    of real frames, logits out): the NCHW graph through onnx2tf matches ONNX Runtime in float to 1e-4, and
    the int8 model takes NHWC images and follows the float logits on held-out real frames."""
    import onnxruntime as ort

    opts = {"value_range": "-1,1"}
    f32 = convert(str(TORCH_ONNX), None, str(tmp_path / "f.tflite"), recipe="float32", task="other",
                  preprocess_options=opts)
    q = convert(str(TORCH_ONNX), str(vtest_path), str(tmp_path / "q.tflite"), num_samples=60, task="other",
                preprocess_options=opts)
    assert q.report.full_integer and q.report.inputs[0].shape == (1, 96, 96, 3) and q.report.inputs[0].dtype == "int8"
    sess = ort.InferenceSession(str(TORCH_ONNX))
    diffs, cosines = [], []
    with edgeq.load(f32.output) as mf, edgeq.load(q.output) as mq:
        for frame in _frames(vtest_path, every=37, offset=11, limit=12):
            x = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (96, 96)).astype(np.float32) / 127.5 - 1.0
            ref = sess.run(None, {"image": x.transpose(2, 0, 1)[None]})[0][0]
            diffs.append(float(np.abs(mf.dequantize(mf.run(mf.prepare(frame)))[0][0] - ref).max()))
            out = mq.dequantize(mq.run(mq.prepare(frame)))[0][0]
            cosines.append(float(np.dot(ref, out) / (np.linalg.norm(ref) * np.linalg.norm(out))))
    assert max(diffs) < 1e-4          # measured 9e-6: the layout conversion is exact
    # random weights give low-variance logits (std ~0.2), which int8 follows loosely: measured mean 0.82
    assert np.mean(cosines) > 0.7, cosines
