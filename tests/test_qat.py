"""Quantization-aware training (native Keras 3 fake quantization) on real Fashion-MNIST images."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import edgeq
from edgeq.accuracy import read_eval_data
from edgeq.errors import UsageError

pytestmark = pytest.mark.convert

ROOT = pathlib.Path(__file__).resolve().parent.parent
HARD = ROOT / "models" / "hard_case" / "hard_case.keras"
LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIB = ROOT / "calibration_data"


@pytest.fixture(scope="module")
def fashion_train():
    from edgeq.datasets import fashion_mnist_available, load_fashion_mnist

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (.ci/run does)")
    return load_fashion_mnist("train")


def tiny_model():
    """Conv + BatchNorm (to be folded) + ReLU6, a hard-swish conv, pooling, softmax: 1.5k parameters."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False, name="c1")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="hard_silu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    m = keras.Model(inp, out)
    m.compile("adam", "sparse_categorical_crossentropy")
    return m


@pytest.fixture(scope="module")
def tiny_trained(fashion_train):
    x, y = fashion_train
    m = tiny_model()
    m.fit(x[:6000, ..., None] / 255.0, y[:6000], epochs=4, batch_size=64, verbose=0)
    return m


def test_batchnorm_folding_is_exact_in_float(tiny_trained, fashion_train):
    from edgeq.accuracy.fakequant import fold_batchnorm

    x = fashion_train[0][:64, ..., None].astype("float32") / 255
    folded = fold_batchnorm(tiny_trained)
    bn = folded.get_layer("bn1")
    assert not bn.trainable and folded.get_layer("c1").use_bias   # folded: the BN is a frozen identity
    h = np.random.default_rng(0).normal(size=(2, 13, 13, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(bn(h, training=True)), h, atol=1e-5)
    np.testing.assert_allclose(folded.predict(x, verbose=0), tiny_trained.predict(x, verbose=0), atol=1e-5)


def test_short_qat_run_trains_keeps_the_best_epoch_and_converts_to_full_integer(tiny_trained, fashion_train,
                                                                                 tmp_path):
    x, y = fashion_train
    lines = []
    r = edgeq.qat(tiny_trained, read_eval_data(x[6000:8000], y[6000:8000]), read_eval_data(x[59000:], y[59000:]),
                  tmp_path / "q.tflite", epochs=2, lr=1e-3, labels=str(LABELS), progress=lines.append)
    assert [h.epoch for h in r.history] == [0, 1, 2] and r.stopped == "completed"
    assert r.history[r.best_epoch].val_top1 == max(h.val_top1 for h in r.history)
    assert any(line.startswith("epoch 1/2:") and "fake-quant validation top-1" in line for line in lines)
    rep = r.conversion.report
    assert rep.full_integer and rep.inputs[0].dtype == "int8" and r.conversion.recipe.name == "int8"
    meta = edgeq.read_metadata((tmp_path / "q.tflite").read_bytes())
    assert meta.labels[0] == "T-shirt/top" and meta.preprocess is not None
    assert pathlib.Path(r.checkpoint).is_file() and (tmp_path / "q.recipe.json").is_file()
    assert r.int8_val_top1 > 50   # a real classifier, measured on the 1,000 validation images
    assert abs(r.int8_val_top1 - r.history[r.best_epoch].val_top1) < 3   # fake quant predicts the int8 model


def test_ctrl_c_converts_and_saves_the_best_model_so_far(tiny_trained, fashion_train, tmp_path):
    x, y = fashion_train

    def progress(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt
    r = edgeq.qat(tiny_trained, read_eval_data(x[6000:7000], y[6000:7000]), read_eval_data(x[59500:], y[59500:]),
                  tmp_path / "i.tflite", epochs=5, lr=1e-3, progress=progress)
    assert r.stopped == "interrupted" and len(r.history) == 2
    assert (tmp_path / "i.tflite").is_file() and r.conversion.report.full_integer


def test_fake_quant_predicts_what_the_int8_converter_makes(fashion_test, tmp_path):
    """On the hard case, the fake-quant model agrees with TFLite's int8 model far more than float does."""
    import keras

    from edgeq.accuracy.fakequant import fold_batchnorm, quantize_model
    from edgeq.accuracy.runners import TFLiteRunner
    from edgeq.preprocess import Preprocess

    x = fashion_test[0][:2000]
    res = edgeq.convert(str(HARD), str(CALIB), str(tmp_path / "h.tflite"))
    runner = TFLiteRunner.open(res.output)
    try:
        int8 = runner.predict(x[..., None], runner.preprocess or Preprocess.from_options(28, 28, 1))[0].argmax(1)
    finally:
        runner.close()
    model = keras.models.load_model(HARD, compile=False)
    q = quantize_model(fold_batchnorm(model))
    calib = np.stack([res.preprocess.apply(img, "RGB") for img in fashion_test[0][5000:5200]])
    q(calib, training=True)
    xf = x[..., None].astype("float32") / 255
    fq = q.predict(xf, verbose=0).argmax(1)
    fl = model.predict(xf, verbose=0).argmax(1)
    assert np.mean(fq == int8) > np.mean(fl == int8) + 0.02


def test_qat_options_are_checked_before_any_training(tmp_path):
    with pytest.raises(UsageError, match="int8 or uint8"):
        edgeq.qat(str(HARD), str(CALIB), str(CALIB), tmp_path / "x.tflite", recipe="int16x8")
    with pytest.raises(UsageError, match="--lr"):
        edgeq.qat(str(HARD), str(CALIB), str(CALIB), tmp_path / "x.tflite", lr=0)


def test_cli_qat_writes_a_full_integer_model_and_json(tmp_path, capsys):
    from edgeq.cli import main

    out, js = tmp_path / "c.tflite", tmp_path / "c.json"
    assert main(["qat", str(HARD), "--train-data", str(CALIB), "--val-data", str(CALIB), "-o", str(out),
                 "--epochs", "1", "--labels", str(LABELS), "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    assert d["conversion"]["full_integer"] and len(d["history"]) == 2 and out.is_file()
    assert "fake-quant validation top-1" in capsys.readouterr().err


def test_qat_for_the_edge_tpu_gives_a_model_that_maps_fully(fashion_train, tmp_path):
    """The point of QAT for the Edge TPU: every layer 8-bit (a mixed model keeps float ops, which the
    compiler cannot map: tests/test_edgetpu.py), and the check passes on the result."""
    x, y = fashion_train
    r = edgeq.qat(str(ROOT / "models" / "fashion_mnist_dsconv.keras"), read_eval_data(x[:2000], y[:2000]),
                  read_eval_data(x[59000:], y[59000:]), tmp_path / "tpu.tflite", epochs=1, lr=1e-4,
                  recipe="uint8", target="edgetpu", labels=str(LABELS))
    rep = r.conversion.report
    assert rep.full_integer and rep.inputs[0].dtype == "uint8" and rep.inputs[0].shape[0] == 1
    from edgeq.edgetpu import check_model

    check = check_model(tmp_path / "tpu.tflite")
    assert check.compatible and check.first_unmapped is None and not check.refused
    assert r.int8_val_top1 > 80  # still the trained classifier (1,000 validation images)
