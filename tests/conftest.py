"""Shared fixtures. One session-scoped conversion of the bundled model is reused by many tests."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUNDLED_KERAS = ROOT / "models" / "fashion_mnist_dsconv.keras"
BUNDLED_LABELS = ROOT / "models" / "fashion_mnist.labels.txt"
CALIBRATION_DIR = ROOT / "calibration_data"
TEST_DATA = ROOT / "tests" / "data"
VTEST = pathlib.Path(os.environ.get("EDGEQ_VTEST", ROOT / ".data" / "vtest.avi"))
# Real trained float models from the mediapipe 0.10.14 wheel, unpacked by .ci/setup.
MEDIAPIPE = pathlib.Path(os.environ.get("EDGEQ_MEDIAPIPE", ROOT / ".data" / "mediapipe" / "modules"))

# benchmarks/zoo.py (offline Keras application models with real BatchNorm statistics) is shared by the
# benchmarks and the tests; it is not part of the installed package.
sys.path.insert(0, str(ROOT / "benchmarks"))

HAVE_TF = importlib.util.find_spec("tensorflow") is not None

requires_tf = pytest.mark.skipif(not HAVE_TF, reason="needs TensorFlow (pip install 'edgeq[convert]'); "
                                 "this is a runtime-only environment")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "convert" in item.keywords and not HAVE_TF:
            item.add_marker(requires_tf)


@pytest.fixture(scope="session")
def fashion_test():
    """The 10,000 real Fashion-MNIST test images and labels (Debian's dataset-fashion-mnist)."""
    from edgeq.datasets import fashion_mnist_available, load_fashion_mnist

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (.ci/run does)")
    return load_fashion_mnist("t10k")


@pytest.fixture(scope="session")
def vtest_path():
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} missing: .ci/run extracts vtest.avi from Debian's opencv-doc")
    return VTEST


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The bundled model converted once with the default int8 recipe (needs TensorFlow)."""
    if not HAVE_TF:
        pytest.skip("needs TensorFlow (pip install 'edgeq[convert]')")
    import edgeq

    out = tmp_path_factory.mktemp("convert") / "fashion_mnist_int8.tflite"
    return edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(out), labels=str(BUNDLED_LABELS))


@pytest.fixture(scope="session")
def int8_model_path(converted):
    return pathlib.Path(converted.output)


@pytest.fixture
def marker_decoder():
    """A decoder registered for one test only ("marker", task "mark"): what a contributor's entry adds."""
    from helpers import decode_marker

    from edgeq.postprocess import Decoder, register, unregister

    decoder = register(Decoder("marker", "mark", "a red square in the corner (tests)", lambda shapes, task: None,
                               decode_marker, priority=500))
    yield decoder
    unregister("marker")
