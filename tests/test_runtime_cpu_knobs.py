"""The CPU knobs edgeq tune searches: LiteRT's CompiledModel on the CPU (litert-cpu) against the Interpreter on
real models and real images, XNNPACK's switches, and option errors that list the valid choices."""
from __future__ import annotations

import glob
import pathlib

import cv2
import numpy as np
import pytest

import edgeq
from edgeq.errors import DelegateUnavailableError, UsageError
from edgeq.runtime import get_backend

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
INT8, FLOAT = DATA / "fashion_int8.tflite", DATA / "fashion_float.tflite"
MEDIAPIPE = ROOT / ".data" / "mediapipe" / "modules"
IMAGES = sorted(glob.glob(str(ROOT / "calibration_data" / "*" / "*.png")))[::15][:20]

needs_litert = pytest.mark.skipif(not get_backend().has_compiled_model,
                                  reason="litert-cpu needs ai-edge-litert's CompiledModel API")


def _outputs(model: pathlib.Path, images: list[str], **load_kwargs) -> tuple[list[list[np.ndarray]], dict]:
    """Raw outputs for each real image (prepared by the model's own preprocessing), and the delegate report."""
    with edgeq.load(model, num_threads=1, **load_kwargs) as m:
        outs = [m.run(m.prepare(cv2.imread(p))) for p in images]
        return outs, m.delegate_report.to_dict()


@needs_litert
@pytest.mark.parametrize("model", [INT8, FLOAT], ids=["int8", "float"])
def test_litert_cpu_computes_what_the_interpreter_computes_on_real_images(model):
    ref, _ = _outputs(model, IMAGES, delegate="xnnpack")
    got, report = _outputs(model, IMAGES, delegate="litert-cpu")
    assert len(got) == len(IMAGES) == 20
    for r, g in zip(ref, got):
        assert [x.dtype for x in g] == [x.dtype for x in r] and [x.shape for x in g] == [x.shape for x in r]
        np.testing.assert_allclose(g[0].astype(np.float64), r[0].astype(np.float64), atol=1e-5, rtol=0)
    assert len({int(np.argmax(o[0])) for o in got}) > 1  # real images, real predictions: not a constant output
    assert report["delegate"] == "litert-cpu" and report["details"]["api"] == "CompiledModel, CPU accelerator"
    assert report["details"]["num_threads"] == "1" and report["delegated_nodes"] is None  # not exposed: "?"


@needs_litert
def test_litert_cpu_matches_outputs_by_tensor_not_signature_order_on_a_mediapipe_model():
    """face_detection_short_range: two outputs, no signature def (LiteRT makes a placeholder one)."""
    path = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"
    if not path.exists():
        pytest.skip(f"{path} missing (.ci/setup unpacks the mediapipe wheel's models)")
    rng = np.random.default_rng(0)
    x = rng.random((1, 128, 128, 3), dtype=np.float32) * 2 - 1
    with edgeq.load(path, delegate="xnnpack", num_threads=1) as a, \
            edgeq.load(path, delegate="litert-cpu", num_threads=1) as b:
        ref, got = a.run(x), b.run(x)
        assert [o.shape for o in got] == [tuple(s.shape) for s in b.outputs] == [o.shape for o in ref]
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)


@needs_litert
def test_weight_cache_and_latest_operators_keep_the_outputs_and_the_cache_is_keyed_by_model(tmp_path):
    ref, _ = _outputs(INT8, IMAGES[:5], delegate="xnnpack")
    got, report = _outputs(INT8, IMAGES[:5], delegate="litert-cpu", weight_cache=str(tmp_path), latest=1)
    again, _ = _outputs(INT8, IMAGES[:5], delegate="litert-cpu", weight_cache=str(tmp_path), latest=1)
    for r, g, a in zip(ref, got, again):  # the second load maps the cache the first one wrote
        assert np.array_equal(r[0], g[0]) and np.array_equal(r[0], a[0])
    files = list(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".xnnpack_cache"] and files[0].stat().st_size > 0
    details = report["details"]
    assert details["weight_cache"] == str(files[0]) and details["xnnpack_flags"] == "0x43"
    _outputs(FLOAT, IMAGES[:1], delegate="litert-cpu", weight_cache=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2  # another model: another file, never the first one's weights


def test_xnnpack_latest_operators_keep_the_outputs():
    ref, _ = _outputs(INT8, IMAGES[:5], delegate="xnnpack")
    got, report = _outputs(INT8, IMAGES[:5], delegate="xnnpack", latest="1")
    assert all(np.array_equal(r[0], g[0]) for r, g in zip(ref, got))
    assert report["details"]["latest_features"] == "on" and report["delegated_nodes"] == 11


@needs_litert
def test_ynnpack_loads_or_says_it_is_not_in_this_build():
    try:
        got, _ = _outputs(INT8, IMAGES[:3], delegate="litert-cpu", ynnpack=1)
    except DelegateUnavailableError as exc:
        assert "ynnpack=1 is not available" in str(exc) and "ynnpack=0" in str(exc)
    else:  # a LiteRT build with YNNPACK: it must compute the same
        ref, _ = _outputs(INT8, IMAGES[:3], delegate="xnnpack")
        assert all(np.array_equal(r[0], g[0]) for r, g in zip(ref, got))


@pytest.mark.parametrize("delegate, options, words", [
    ("litert-cpu", {"ynnpack": "yes"}, "ynnpack='yes': expected one of 0, 1"),
    ("litert-cpu", {"latest": 2}, "latest='2': expected one of 0, 1"),
    ("litert-cpu", {"xnnpack_flags": "fast"}, "expected an integer 0..0xffffffff"),
    ("litert-cpu", {"xnnpack_flags": -1}, "expected an integer 0..0xffffffff"),
    ("litert-cpu", {"weight_cache": "/no/such/dir"}, "expected one of on, or an existing directory"),
    ("litert-cpu", {"precision": "fp16"}, "valid options: xnnpack_flags, latest, weight_cache, ynnpack"),
    ("xnnpack", {"latest": "maybe"}, "latest='maybe': expected one of 0, 1"),
    ("xnnpack", {"weight_cache": "on"}, "valid options: latest"),
])
def test_option_errors_list_the_valid_choices(delegate, options, words):
    with pytest.raises(UsageError) as info:
        edgeq.load(INT8, delegate=delegate, **options)
    assert words in str(info.value)


def test_the_registry_lists_the_knobs_in_cli_help():
    from edgeq.runtime.delegates import DELEGATES, delegate_options_help

    assert "litert-cpu" in DELEGATES and "CompiledModel" in DELEGATES["litert-cpu"].help
    text = delegate_options_help()
    assert "litert-cpu: xnnpack_flags=INT, latest=0|1, weight_cache=on|DIR, ynnpack=0|1" in text
    assert "xnnpack: latest=0|1" in text
