"""The frozen-function route (edgeq/convert/frozen.py): a Keras model reaches TFLite's converter without a
SavedModel; the model is the one the SavedModel route makes (same tensors, scales, names, signature, outputs
on real Fashion-MNIST images), and a route that fails or mismatches falls back and says so."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, BUNDLED_LABELS, CALIBRATION_DIR

pytestmark = pytest.mark.convert


def _describe(path: str) -> tuple:
    from edgeq.metadata import unpack_model

    with open(path, "rb") as f:
        m = unpack_model(f.read())
    sg = m.subgraphs[0]
    tensors = [(t.name, t.type, list(t.shape),
                None if t.quantization is None or t.quantization.scale is None
                else (t.quantization.scale.tolist(), t.quantization.zeroPoint.tolist())) for t in sg.tensors]
    sigs = [(s.signatureKey, [(i.name, i.tensorIndex) for i in s.inputs], [(o.name, o.tensorIndex) for o in s.outputs])
            for s in m.signatureDefs]
    return tensors, sigs, [m.operatorCodes[o.opcodeIndex].builtinCode for o in sg.operators]


def _outputs(path: str, images: np.ndarray) -> np.ndarray:
    import edgeq

    m = edgeq.load(path, num_threads=1)
    return np.stack([m.dequantize(m.run(m.prepare(img)))[0] for img in images])


def _convert(tmp_path, name: str, **kw):
    import edgeq

    return edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / name), labels=str(BUNDLED_LABELS),
                         **kw)


def test_the_frozen_route_makes_the_savedmodel_routes_model(converted, tmp_path, monkeypatch, fashion_test):
    monkeypatch.setenv("EDGEQ_KERAS_ROUTE", "savedmodel")
    saved = _convert(tmp_path, "saved.tflite")
    fast_t, fast_sig, fast_ops = _describe(converted.output)
    slow_t, slow_sig, slow_ops = _describe(saved.output)
    assert fast_ops == slow_ops and fast_sig == slow_sig and len(fast_t) == len(slow_t) > 20
    assert fast_sig[0][0] == b"serving_default" and fast_sig[0][1][0][0] == b"image"
    for a, b in zip(fast_t, slow_t):
        assert a[:3] == b[:3]
        if a[3] is not None:
            np.testing.assert_allclose(a[3][0], b[3][0], rtol=1e-6)
            assert a[3][1] == b[3][1]
    images = fashion_test[0][:100]
    np.testing.assert_array_equal(_outputs(converted.output, images), _outputs(saved.output, images))
    assert not any("SavedModel" in w for w in converted.warnings)


def test_a_mismatching_float_graph_is_converted_again_through_a_savedmodel(tmp_path, monkeypatch):
    from edgeq.convert import frozen

    calls = []

    def differs(keras_model, float_model, sample):
        calls.append(len(float_model))
        return "output 0 differs from the Keras model's by 1 on the first calibration sample"

    monkeypatch.setattr(frozen, "matches_keras", differs)
    result = _convert(tmp_path, "m.tflite")
    assert len(calls) == 1  # checked once, on the frozen route; the SavedModel route needs no check
    assert any("does not match the Keras model" in w and "EDGEQ_KERAS_ROUTE=savedmodel" in w
               for w in result.warnings)
    assert result.report.full_integer and result.calibration["used"] == 200


def test_a_failing_route_falls_back_to_the_savedmodel_and_says_so(tmp_path, monkeypatch):
    from edgeq.convert import frozen

    def broken(tf, keras_model):
        raise ValueError("cannot trace this layer")

    monkeypatch.setattr(frozen, "frozen_converter", broken)
    result = _convert(tmp_path, "m.tflite")
    assert any("frozen-function route failed (ValueError: cannot trace this layer)" in w for w in result.warnings)
    assert result.report.full_integer


def test_unknown_route_setting_is_refused(monkeypatch):
    from edgeq.convert.frozen import route_choice
    from edgeq.errors import UsageError

    monkeypatch.setenv("EDGEQ_KERAS_ROUTE", "fast")
    with pytest.raises(UsageError, match="EDGEQ_KERAS_ROUTE='fast'.*'frozen'.*'savedmodel'"):
        route_choice()


def test_only_single_input_single_output_models_take_the_frozen_route():
    import keras

    from edgeq.convert.frozen import eligible
    from edgeq.convert.source import load_keras

    assert eligible(load_keras(str(BUNDLED_KERAS)))
    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(2, 3)(x)
    two = keras.Model(x, [keras.layers.GlobalAveragePooling2D()(y), keras.layers.Flatten()(y)])
    assert not eligible(two)  # its SavedModel names its outputs by structure: that route keeps them

    class Sub(keras.Model):
        def call(self, x):
            return x * 2
    assert not eligible(Sub())
