"""The preprocessing contract: geometry, colour, value mapping and the fused quantization table."""
import numpy as np
import pytest

from edgeq.errors import PreprocessError, UsageError
from edgeq.preprocess import Preprocess, parse_size


def gradient(h=48, w=64):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 3     # B
    img[..., 1] = 100                                            # G
    img[..., 2] = np.arange(h, dtype=np.uint8)[:, None] * 5     # R
    return img


def test_named_ranges_map_pixels_to_expected_values():
    white = np.full((4, 4, 3), 255, np.uint8)
    black = np.zeros((4, 4, 3), np.uint8)
    for rng, lo, hi in (("0,1", 0.0, 1.0), ("-1,1", -1.0, 1.0), ("0,255", 0.0, 255.0)):
        pre = Preprocess.from_options(4, 4, 3, value_range=rng)
        assert pre.apply(black).min() == pytest.approx(lo)
        assert pre.apply(white).max() == pytest.approx(hi)
        assert pre.value_range == pytest.approx((lo, hi))


def test_mean_std_per_channel_and_rgb_order():
    pre = Preprocess.from_options(48, 64, 3, mean=(10, 20, 30), std=(2, 4, 5))
    out = pre.apply(gradient())          # input is BGR, model wants RGB
    img = gradient()
    np.testing.assert_allclose(out[..., 0], (img[..., 2].astype(np.float32) - 10) / 2)   # R channel first
    np.testing.assert_allclose(out[..., 2], (img[..., 0].astype(np.float32) - 30) / 5)


def test_bgr_model_keeps_opencv_order_and_gray_converts():
    img = gradient()
    bgr = Preprocess(48, 64, color="BGR", std=(1.0,))
    np.testing.assert_array_equal(bgr.apply(img), img.astype(np.float32))
    gray = Preprocess(48, 64, color="GRAY", std=(1.0,))
    out = gray.apply(img)
    assert out.shape == (48, 64, 1)
    import cv2
    np.testing.assert_array_equal(out[..., 0], cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))


def test_rgba_gray_and_16bit_inputs_are_brought_to_spec():
    pre = Preprocess(8, 8, color="RGB")
    assert pre.apply(np.zeros((8, 8, 4), np.uint8)).shape == (8, 8, 3)
    assert pre.apply(np.full((8, 8), 255, np.uint8)).min() == pytest.approx(1.0)
    sixteen = np.full((8, 8), 65535, np.uint16)
    assert pre.apply(sixteen).max() == pytest.approx(1.0)
    with pytest.raises(PreprocessError, match="uint8 or uint16"):
        pre.apply(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(PreprocessError, match="shape"):
        pre.apply(np.zeros((8, 8, 2), np.uint8))


def test_letterbox_pads_and_transform_maps_back():
    pre = Preprocess(100, 100, color="BGR", resize="letterbox", std=(1.0,), pad_value=0)
    img = np.full((50, 200, 3), 200, np.uint8)         # wide image -> bars top and bottom
    px, t = pre.to_pixels(img)
    assert px.shape == (100, 100, 3)
    assert (px[:37] == 0).all() and (px[-37:] == 0).all() and (px[40:60] == 200).all()
    x, y = t.to_source(np.array([0.0, 100.0]), np.array([37.0, 62.0]))
    np.testing.assert_allclose(x, [0, 200], atol=1e-6)
    np.testing.assert_allclose(y, [0, 50], atol=1e-6)


def test_center_crop_takes_middle_region():
    pre = Preprocess(10, 10, color="BGR", resize="center-crop", std=(1.0,))
    img = np.zeros((10, 30, 3), np.uint8)
    img[:, 10:20] = 255                                 # only the middle third is white
    px, t = pre.to_pixels(img)
    assert (px == 255).all()
    x, _ = t.to_source(np.array([0.0, 10.0]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(x, [10, 20])


def test_quantize_lut_matches_float_path():
    pre = Preprocess.from_options(16, 16, 3, value_range="-1,1")
    scale, zp = 0.0078125, -1
    lut = pre.quantize_lut(scale, zp, np.int8)
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    px, _ = pre.to_pixels(img)
    via_lut = lut[px, np.arange(3)]
    via_float = np.clip(np.round(pre.normalize(px) / scale) + zp, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(via_lut, via_float)


def test_serialisation_round_trip_and_validation():
    pre = Preprocess.from_options(32, 64, 3, color="bgr", mean=(1, 2, 3), std=(4, 5, 6), resize="letterbox")
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(UsageError, match="unknown colour"):
        Preprocess(8, 8, color="YUV")
    with pytest.raises(UsageError, match="--range"):
        Preprocess.from_options(8, 8, 3, value_range="0,2")
    with pytest.raises(UsageError, match="not both"):
        Preprocess.from_options(8, 8, 3, value_range="0,1", mean=(1,))
    with pytest.raises(UsageError, match="1 channel"):
        Preprocess.from_options(8, 8, 1, color="rgb")
    with pytest.raises(UsageError, match="--mean needs 1 or 3"):
        Preprocess.from_options(8, 8, 3, mean=(1, 2), std=(1,))
    assert parse_size("64x48") == (64, 48) and parse_size("96") == (96, 96)
    with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
        parse_size("big")


# ---- the one resolver ----------------------------------------------------------------------------
def test_resolver_embedded_contract_wins_without_options():
    from edgeq.preprocess import resolve_preprocess

    emb = Preprocess(96, 128, color="BGR", mean=(127.5,), std=(127.5,), resize="letterbox")
    r = resolve_preprocess((1, 96, 128, 3), None, embedded=emb)
    assert r.preprocess == emb and r.origin == "embedded" and r.warnings == ()


def test_resolver_options_override_the_embedded_contract_field_by_field():
    from edgeq.preprocess import resolve_preprocess

    emb = Preprocess(96, 128, color="BGR", mean=(127.5,), std=(127.5,), resize="letterbox")
    r = resolve_preprocess((1, 96, 128, 3), {"resize": "center-crop"}, embedded=emb, model="m.tflite")
    assert r.preprocess == emb.replace(resize="center-crop")  # colour and values kept from the contract
    assert r.origin == "embedded+options" and "override" in r.warnings[0]
    r = resolve_preprocess((1, 96, 128, 3), {"value_range": "0,1"}, embedded=emb)
    assert (r.preprocess.mean, r.preprocess.std, r.preprocess.color) == ((0.0,), (255.0,), "BGR")


def test_resolver_can_keep_the_embedded_contract_and_say_so():
    from edgeq.preprocess import resolve_preprocess

    emb = Preprocess(28, 28, color="GRAY")
    r = resolve_preprocess((1, 28, 28, 1), {"color": "gray"}, embedded=emb, model="m.tflite",
                           options_override_embedded=False)
    assert r.preprocess == emb and "ignoring the preprocessing options ['color']" in r.warnings[0]


def test_resolver_infers_from_the_input_tensor_and_warns_only_for_foreign_models():
    from edgeq.preprocess import resolve_preprocess

    r = resolve_preprocess((1, 28, 28, 1), model="foreign.tflite")
    assert r.preprocess == Preprocess(28, 28, color="GRAY") and r.origin == "inferred"
    assert "foreign.tflite has no edgeq metadata; assuming 28x28 GRAY" in r.warnings[0]
    assert resolve_preprocess((None, 28, 28, 1), foreign=False).warnings == ()
    r = resolve_preprocess((1, -1, -1, 3), {"input_size": (64, 48), "value_range": "-1,1"})
    assert (r.preprocess.width, r.preprocess.height, r.preprocess.mean) == (64, 48, (127.5,)) and r.origin == "options"
    with pytest.raises(UsageError, match="--input-size"):
        resolve_preprocess((1, -1, -1, 3), model="dyn.tflite")
    with pytest.raises(UsageError, match="not an image"):
        resolve_preprocess((1, 10), model="vec.tflite")
    with pytest.raises(UsageError, match="unknown preprocessing option"):
        resolve_preprocess((1, 28, 28, 1), {"colour": "rgb"})


def test_encode_is_the_quantized_lut_for_integer_inputs_and_normalised_floats_otherwise():
    from edgeq.preprocess import quantize_values

    pre = Preprocess(2, 2, color="RGB", mean=(127.5,), std=(127.5,))
    px = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20
    q = pre.encode(px, np.int8, scale=1 / 127.5, zero_point=0)
    assert q.dtype == np.int8 and np.array_equal(q, quantize_values(pre.normalize(px), 1 / 127.5, 0, np.int8))
    f = pre.encode(px, np.float32)
    assert f.dtype == np.float32 and np.allclose(f, (px - 127.5) / 127.5)
    with pytest.raises(UsageError, match="without quantization parameters"):
        pre.encode(px, np.int8)
