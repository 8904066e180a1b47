"""EdgeModel API on the committed fixture models (no TensorFlow needed)."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import edgeq
from edgeq.errors import DataError, ModelError, UsageError
from edgeq.runtime import DELEGATES, Classification, DelegateReport, EdgeModel, get_backend, load
from edgeq.runtime.vulkan import vulkan_adapters_in_child

DATA = pathlib.Path(__file__).resolve().parent / "data"
INT8 = DATA / "fashion_int8.tflite"
FLOAT = DATA / "fashion_float.tflite"
ADD = DATA / "add_float.tflite"
ADD_A = np.arange(8, dtype=np.float32) * 0.5 - 1.0
ADD_B = np.linspace(-2.0, 2.0, 8, dtype=np.float32)


def test_load_reports_inputs_outputs_and_metadata():
    with edgeq.load(INT8) as m:
        assert isinstance(m, EdgeModel)
        (inp,), (out,) = m.inputs, m.outputs
        assert inp.shape == (1, 28, 28, 1) and inp.dtype == "int8"
        assert inp.scale == pytest.approx(1 / 255) and inp.zero_point == -128
        assert out.shape == (1, 10) and out.dtype == "int8"
        assert m.metadata is not None and m.metadata.task == "classify"
        assert m.labels[0] == "T-shirt/top" and len(m.labels) == 10
        assert m.preprocess.height == 28 and m.preprocess.color == "GRAY"


def test_auto_records_every_step_and_lands_on_xnnpack():
    adapters = vulkan_adapters_in_child() or ()  # never in-process: other tests may have imported TensorFlow
    if get_backend().has_compiled_model and any(not a.is_software for a in adapters):
        pytest.skip(f"a hardware GPU is present ({adapters}): auto picks it (tests/test_runtime_gpu.py)")
    with load(INT8) as m:
        r = m.delegate_report
        assert isinstance(r, DelegateReport)
        assert r.delegate == "xnnpack" and r.backend == get_backend().name
        assert r.total_nodes == 12
        # XNNPACK takes every int8 node of this CNN except the final SOFTMAX; tflite-runtime
        # 2.14's XNNPACK has no int8 kernels enabled and takes none (a fact bench warns about).
        assert r.delegated_nodes == (0 if r.backend == "tflite-runtime" else 11)
        names = [a.name for a in r.attempts]
        assert names == ["edgetpu", "gpu", "xnnpack"]
        assert r.attempts[0] == ("edgetpu", False, r.attempts[0].reason) and "edgetpu-custom-op" in r.attempts[0].reason
        assert r.attempts[1].ok is False and r.attempts[1].reason
        assert r.attempts[2].ok is True
        d = r.to_dict()
        assert d["delegate"] == "xnnpack" and d["attempts"][0]["name"] == "edgetpu"


def test_auto_never_loads_a_vulkan_driver_into_this_process():
    """`auto` probes Vulkan in a child: a driver mapped here would crash a later `import tensorflow`."""
    code = ("import edgeq, sys\n"
            "m = edgeq.load(sys.argv[1])\n"
            "maps = open('/proc/self/maps').read()\n"
            "print('GPU-REASON', m.delegate_report.attempts[1].reason)\n"
            "print('VULKAN-MAPPED', 'libvulkan' in maps or 'lvp' in maps)\n")
    out = subprocess.run([sys.executable, "-c", code, str(INT8)], capture_output=True, text=True, check=True).stdout
    assert "GPU-REASON" in out and "VULKAN-MAPPED False" in out


def test_xnnpack_takes_the_whole_float_model():
    with load(FLOAT, delegate="xnnpack", num_threads=1) as m:
        assert m.delegate_report.delegated_nodes == m.delegate_report.total_nodes == 12
        assert m.delegate_report.fully_delegated


def test_cpu_delegate_takes_no_nodes_and_matches_xnnpack():
    x = np.random.default_rng(0).integers(-128, 127, size=(1, 28, 28, 1), dtype=np.int8)
    with load(INT8, delegate="xnnpack", num_threads=2) as fast, load(INT8, delegate="cpu") as plain:
        assert plain.delegate_report.delegated_nodes == 0
        assert plain.delegate_report.attempts == (("cpu", True, "requested"),)
        a, b = fast.run(x)[0], plain.run(x)[0]
        assert a.dtype == np.int8 and a.shape == (1, 10)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_run_returns_copies_that_survive_the_next_run():
    with load(ADD, delegate="xnnpack") as m:
        x1 = np.ones((1, 8), np.float32)
        y1 = m.run(x1)[0]
        kept = y1.copy()
        m.run(np.full((1, 8), 5.0, np.float32))
        np.testing.assert_array_equal(y1, kept)
        np.testing.assert_allclose(kept, (x1 + ADD_A) * ADD_B + x1, rtol=1e-6)


def test_run_rejects_wrong_shape_dtype_and_count_naming_both():
    with load(INT8) as m:
        with pytest.raises(DataError, match=r"expects shape \[1, 28, 28, 1\] int8, got \[1, 28, 28\] int8"):
            m.run(np.zeros((1, 28, 28), np.int8))
        with pytest.raises(DataError, match=r"int8, got \[1, 28, 28, 1\] float32"):
            m.run(np.zeros((1, 28, 28, 1), np.float32))
        with pytest.raises(DataError, match="expected 1 input tensor"):
            m.run([np.zeros((1, 28, 28, 1), np.int8)] * 2)
        with pytest.raises(DataError, match=r"expects shape \[1, 28, 28, 1\] int8, got \[1, 28, 28, 1\] list"):
            m.run([np.zeros((1, 28, 28, 1), np.int8).tolist()])  # not an array: DataError, not AttributeError


def test_prepare_quantizes_through_the_lut_exactly():
    img = np.random.default_rng(1).integers(0, 256, size=(28, 28), dtype=np.uint8)
    with load(INT8) as m:
        t = m.prepare(img)
        assert t.dtype == np.int8 and t.shape == (1, 28, 28, 1)
        # scale 1/255, zero point -128 on [0,1] values: q = pixel - 128
        np.testing.assert_array_equal(t[0, :, :, 0].astype(int), img.astype(int) - 128)
        t2, transform = m.prepare_with_transform(np.dstack([img] * 3), input_color="BGR")
        assert transform.scale_x == pytest.approx(1.0)
        np.testing.assert_array_equal(t2, t)


def test_prepare_float_model_gives_normalized_floats():
    img = np.full((56, 56), 255, np.uint8)
    with load(FLOAT) as m:
        t, transform = m.prepare_with_transform(img)
        assert t.dtype == np.float32 and t.shape == (1, 28, 28, 1)
        np.testing.assert_allclose(t, 1.0)
        assert transform.scale_x == pytest.approx(0.5)


def test_predict_int8_and_float_agree_on_real_images(fashion_test):
    images, labels = fashion_test
    images, labels = images[:200], labels[:200]
    with load(INT8) as q, load(FLOAT) as f:
        rq = q.predict(list(images), top_k=3)
        rf = f.predict(images, top_k=3)
    assert len(rq) == len(rf) == 200
    assert all(isinstance(c, Classification) and len(r) == 3 for r in rq for c in r)
    top_q = np.array([r[0].index for r in rq])
    top_f = np.array([r[0].index for r in rf])
    assert (top_q == top_f).mean() >= 0.97
    assert (top_q == labels).mean() >= 0.80  # the bundled CNN reaches ~88%
    assert rq[0][0].score >= rq[0][1].score >= rq[0][2].score
    assert all(c.label == q.labels[c.index] for r in rq for c in r)


def test_predict_single_image_returns_top_k_list():
    img = np.zeros((28, 28), np.uint8)
    with load(INT8) as m:
        res = m.predict(img, top_k=2)
        assert len(res) == 2 and res[0].label == m.labels[res[0].index]
        assert sum(c.score for c in m.predict(img, top_k=10)) == pytest.approx(1.0, abs=0.02)


def test_dequantize_uses_scale_and_zero_point():
    with load(INT8) as m:
        raw = np.array([[-128, 0, 127] + [-128] * 7], np.int8)
        (deq,) = m.dequantize([raw])
        assert deq.dtype == np.float32
        np.testing.assert_allclose(deq[0, :3], [0.0, 128 / 256, 255 / 256])


def test_foreign_model_needs_explicit_preprocess_and_accepts_one():
    with load(ADD) as m:
        assert m.metadata is None and m.preprocess is None and m.labels == ()
        with pytest.raises(UsageError, match="preprocess=Preprocess"):
            m.prepare(np.zeros((8, 8), np.uint8))
    data = INT8.read_bytes()
    pre = edgeq.Preprocess(28, 28, color="GRAY", mean=(0.0,), std=(255.0,))
    with load(data, preprocess=pre) as m:
        assert m.preprocess is pre and m.source == "<model bytes>"


def test_closed_model_raises_model_error():
    m = load(ADD)
    m.close()
    m.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        m.run(np.zeros((1, 8), np.float32))
    with pytest.raises(ModelError, match="closed"):
        m.predict(np.zeros((8, 8), np.uint8))


def test_unknown_delegate_and_bad_options_list_valid_choices():
    with pytest.raises(UsageError) as e:
        load(ADD, delegate="tpu")
    for name in DELEGATES:
        assert name in str(e.value)
    with pytest.raises(UsageError, match="valid options: none"):
        load(ADD, delegate="cpu", device="usb")
    with pytest.raises(UsageError, match="valid options: latest"):
        load(ADD, delegate="xnnpack", device="usb")
    with pytest.raises(UsageError, match="fp16, fp32"):
        load(ADD, delegate="gpu", precision="int4")
    with pytest.raises(UsageError, match="usb, usb:N, pci or pci:N"):
        load(ADD, delegate="edgetpu", device="serial")
    with pytest.raises(UsageError, match="num_threads"):
        load(ADD, num_threads=0)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x00" * 8, "too small"),
    (b"PK\x03\x04" + b"\x00" * 60, "not a TFLite model"),
])
def test_bad_model_bytes_are_model_errors(content, message, tmp_path):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load(p)


def test_missing_model_file():
    with pytest.raises(ModelError, match="not found"):
        load("/nonexistent/model.tflite")


def test_edgetpu_compiled_model_refused_by_cpu_delegates():
    with pytest.raises(ModelError, match="needs delegate='edgetpu'"):
        load(DATA / "edgetpu_add.tflite", delegate="xnnpack")


CPU_REF_SCRIPT = """
import sys, numpy as np
from edgeq.runtime import load
with load(sys.argv[1], delegate="cpu-ref") as ref, load(sys.argv[1], delegate="xnnpack") as fast:
    x = np.random.default_rng(3).integers(-128, 127, size=(1, 28, 28, 1), dtype=np.int8)
    a, b = ref.run(x)[0].astype(int), fast.run(x)[0].astype(int)
    print(ref.delegate_report.delegate, ref.delegate_report.delegated_nodes, int(np.abs(a - b).max()))
"""


def test_cpu_ref_matches_xnnpack_in_a_subprocess():
    """Reference kernels can abort the process on odd models: run them in a child."""
    if get_backend().op_resolver_type is None:
        pytest.skip(f"{get_backend().name} has no OpResolverType: cpu-ref cannot be selected")
    out = subprocess.run([sys.executable, "-c", CPU_REF_SCRIPT, str(INT8)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    name, delegated, diff = out.stdout.split()
    assert name == "cpu-ref" and delegated == "0" and int(diff) <= 1


def test_runtime_does_not_import_tensorflow():
    code = ("import sys, numpy as np, edgeq; m = edgeq.load(sys.argv[1]); m.run(np.zeros((1,8), np.float32)); "
            "print('@@', m.delegate_report.backend, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ADD)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # native GPU/LiteRT logging may share stdout: read only our marked line
    _, backend, tf_loaded = [line for line in out.stdout.splitlines() if line.startswith("@@ ")][-1].split()
    if backend != "tensorflow":
        assert tf_loaded == "False"


def test_backend_env_var_is_honoured_and_validated(monkeypatch):
    from edgeq.runtime import backends

    monkeypatch.setenv(backends.BACKEND_ENV, "onnx")
    with pytest.raises(UsageError, match="ai-edge-litert, tflite-runtime, tensorflow"):
        get_backend()
    monkeypatch.delenv(backends.BACKEND_ENV)
    default = get_backend().name
    monkeypatch.setenv(backends.BACKEND_ENV, default)
    with load(ADD) as m:
        assert m.delegate_report.backend == default


def test_fused_lut_matches_preprocess_for_three_channels():
    """prepare()'s cv2.LUT path equals normalize-then-quantize per channel (RGB, per-channel mean/std)."""
    import cv2

    from edgeq.runtime.model import _cv_lut

    pre = edgeq.Preprocess(16, 16, color="RGB", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    scale, zp = 0.0187, -14
    pixels = np.random.default_rng(5).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    fused = cv2.LUT(pixels, _cv_lut(pre.quantize_lut(scale, zp, np.int8))).view(np.int8)
    reference = np.clip(np.round(pre.normalize(pixels) / scale) + zp, -128, 127).astype(np.int8)
    assert fused.shape == (16, 16, 3)
    assert np.abs(fused.astype(int) - reference.astype(int)).max() <= 1  # float32 rounding ties only
    assert (fused == reference).mean() > 0.99


SAME_EDGEQ_IN_CHILD = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from edgeq.runtime.child import child_python
out = subprocess.run(child_python("import edgeq; print(edgeq.__file__)"), capture_output=True, text=True,
                     check=True).stdout
print("@@", out.strip())
"""


def test_child_processes_import_the_same_edgeq_as_the_parent(tmp_path):
    """The Vulkan probe and bench's children run this edgeq, also a source checkout put on sys.path
    (here: a copy, from a working directory holding yet another edgeq)."""
    import shutil

    source = tmp_path / "checkout"
    shutil.copytree(pathlib.Path(edgeq.__file__).parent, source / "edgeq", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "cwd"
    shutil.copytree(source / "edgeq", elsewhere / "edgeq")
    out = subprocess.run([sys.executable, "-c", SAME_EDGEQ_IN_CHILD, str(source)], capture_output=True, text=True,
                         timeout=120, cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-2000:]
    child_file = [x for x in out.stdout.splitlines() if x.startswith("@@ ")][-1][3:]
    assert child_file == str(source / "edgeq" / "__init__.py")


def test_load_takes_preprocessing_options_through_the_one_resolver():
    """A contract given as options overrides the embedded one field by field; a foreign model (MediaPipe's
    face detector, no edgeq metadata) gets one inferred from its input tensor — the resolver `edgeq run`
    and `edgeq eval` use."""
    from conftest import MEDIAPIPE

    with edgeq.load(INT8, delegate="xnnpack", preprocess={"resize": "letterbox"}) as m:
        assert m.preprocess == edgeq.read_metadata(INT8.read_bytes()).preprocess.replace(resize="letterbox")
    face = MEDIAPIPE / "face_detection" / "face_detection_short_range.tflite"
    if not face.is_file():
        pytest.skip(f"{face} missing: .ci/setup unpacks MediaPipe's models from the mediapipe 0.10.14 wheel")
    image = np.full((240, 320, 3), 128, np.uint8)
    with edgeq.load(face, delegate="xnnpack", preprocess={"value_range": "-1,1"}) as m:
        assert (m.preprocess.width, m.preprocess.height, m.preprocess.color) == (128, 128, "RGB")
        assert m.preprocess.mean == (127.5,) and [o.shape for o in m.predict(image)] == [(1, 896, 16), (1, 896, 1)]
    with edgeq.load(face, delegate="xnnpack") as m, pytest.raises(edgeq.EdgeqError, match="preprocess="):
        m.predict(image)  # no contract and none asked for: an error, never a guess
