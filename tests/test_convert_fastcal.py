"""Fast calibration (edgeq/convert/fastcal.py): TFLite's activation ranges recorded through XNNPACK.

The int8 model must not change: the same scales and zero points as with TensorFlow Lite's own calibrator
and the same top-1 on the real Fashion-MNIST test images; a residual model exercises the in-place quirk
(TFLite's recorded range of an in-place ADD's input covers the ADD's output), and a mismatch falls back
to TFLite's calibrator and says so.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, BUNDLED_LABELS, CALIBRATION_DIR

pytestmark = pytest.mark.convert


def _quant_params(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from edgeq.metadata import unpack_model

    with open(path, "rb") as f:
        tensors = unpack_model(f.read()).subgraphs[0].tensors
    return [(t.quantization.scale, t.quantization.zeroPoint) for t in tensors
            if t.quantization is not None and t.quantization.scale is not None]


def test_bundled_model_keeps_tflites_scales_and_top1(converted, fashion_test, tmp_path, monkeypatch):
    import edgeq
    from edgeq.accuracy import evaluate, read_eval_data

    assert not any("fast calibration not used" in w for w in converted.warnings)
    monkeypatch.setenv("EDGEQ_CALIBRATOR", "tflite")
    before = edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "tflite.tflite"),
                           labels=str(BUNDLED_LABELS))
    fast, slow = _quant_params(converted.output), _quant_params(before.output)
    assert len(fast) == len(slow) > 20
    for (s1, z1), (s2, z2) in zip(fast, slow):
        np.testing.assert_allclose(s1, s2, rtol=1e-4)
        np.testing.assert_array_equal(z1, z2)
    images, labels = fashion_test[0][:2000], fashion_test[1][:2000].astype(np.int64)
    report = evaluate(before.output, [converted.output], read_eval_data(images, labels), batch=250)
    assert report.models[1].top1 == report.models[0].top1 > 80
    assert report.comparisons[0].agreement > 99.5


def _residual_model():
    import keras

    keras.utils.set_random_seed(1)
    x = inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    for _ in range(2):  # MobileNetV2's residual block: expand, project, ADD
        y = keras.layers.Conv2D(16, 1, activation="relu")(x)
        y = keras.layers.Conv2D(8, 1)(y)
        x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))


def _calibrated(calibrator: str):
    from edgeq.convert.calibration import CalibrationDataset
    from edgeq.convert.converter import prepared_converter
    from edgeq.convert.quantize import CalibratedModel
    from edgeq.convert.recipes import get_recipe
    from edgeq.preprocess import Preprocess

    pre = Preprocess(16, 16, color="RGB", mean=(127.5,), std=(127.5,))
    ds = CalibrationDataset(str(CALIBRATION_DIR), pre, num_samples=40)
    rec = get_recipe("int8")
    with prepared_converter(_residual_model(), ds, rec, pre, None) as prep:
        return CalibratedModel.calibrate(prep.tf, prep.converter, rec, calibrator=calibrator), ds


@pytest.fixture(scope="module")
def residual_pair():
    return _calibrated("tflite"), _calibrated("xnnpack")


def test_residual_adds_get_tflites_in_place_ranges(residual_pair):
    from edgeq.convert.fastcal import inplace_pairs

    (slow, _), (fast, _) = residual_pair
    assert fast.notes == ()
    pairs = inplace_pairs(slow.data, [(1, 16, 16, 3)])
    assert pairs, "the builtin planner runs no ADD in place here: the quirk is not exercised"
    want, got = slow.recorded_ranges(), fast.recorded_ranges()
    assert set(want) == set(got)
    for t, (lo, hi) in want.items():
        tol = 1e-4 * (hi - lo) + 1e-6
        assert got[t][0] == pytest.approx(lo, abs=tol) and got[t][1] == pytest.approx(hi, abs=tol), t
    for t, outs in pairs.items():  # the in-place input's recorded range covers the output written over it
        assert all(want[t][0] <= want[o][0] and want[t][1] >= want[o][1] for o in outs)
    for (s1, z1), (s2, z2) in zip(_params(fast.quantize()), _params(slow.quantize())):
        np.testing.assert_allclose(s1, s2, rtol=1e-4)
        np.testing.assert_array_equal(z1, z2)


def _params(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    from edgeq.metadata import unpack_model

    return [(t.quantization.scale, t.quantization.zeroPoint) for t in unpack_model(data).subgraphs[0].tensors
            if t.quantization is not None and t.quantization.scale is not None]


def test_the_in_place_rule_widens_exactly_the_in_place_inputs(residual_pair, monkeypatch):
    from edgeq.convert import fastcal

    (slow, ds), _ = residual_pair
    seed = slow.data  # its ranges span 40 samples; the check compares one, so recalibrate the first only
    first_sample = next(iter(ds))[None]
    one = lambda: iter([[first_sample]])  # noqa: E731
    _, united, _ = fastcal.record_ranges(seed, one)
    monkeypatch.setattr(fastcal, "inplace_pairs", lambda *_: {})
    _, raw, _ = fastcal.record_ranges(seed, one)
    changed = [t for t in united if united[t] != raw[t]]
    assert changed  # the rule widened the in-place inputs' ranges ...
    assert all(united[t][0] <= raw[t][0] and united[t][1] >= raw[t][1] for t in changed)  # ... never narrowed


def test_a_mismatch_falls_back_to_tflites_calibrator_and_says_so(monkeypatch):
    from edgeq.convert import fastcal

    real = fastcal.record_ranges

    def shifted(seed, rep, num_threads=None):
        total, first, n = real(seed, rep, num_threads)
        return total, {t: (lo - 1.0, hi + 1.0) for t, (lo, hi) in first.items()}, n

    monkeypatch.setattr(fastcal, "record_ranges", shifted)
    cal, _ = _calibrated("xnnpack")
    assert len(cal.notes) == 1 and "fast calibration not used" in cal.notes[0] and "TFLite recorded" in cal.notes[0]
    slow, _ = _calibrated("tflite")
    assert cal.recorded_ranges() == slow.recorded_ranges()


def test_unknown_calibrator_setting_is_refused(monkeypatch):
    from edgeq.convert.fastcal import calibrator_choice
    from edgeq.errors import UsageError

    monkeypatch.setenv("EDGEQ_CALIBRATOR", "fast")
    with pytest.raises(UsageError, match="EDGEQ_CALIBRATOR='fast'.*'xnnpack'.*'tflite'"):
        calibrator_choice()
