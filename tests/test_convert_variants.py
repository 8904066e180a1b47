"""edgeq.convert.variants.convert_many: several recipes from one export and one calibration, each model the
same as edgeq.convert makes it alone (scales, zero points and outputs on real Fashion-MNIST images)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import BUNDLED_KERAS, BUNDLED_LABELS, CALIBRATION_DIR

pytestmark = pytest.mark.convert


def _params(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from edgeq.metadata import unpack_model

    with open(path, "rb") as f:
        tensors = unpack_model(f.read()).subgraphs[0].tensors
    return [(t.quantization.scale, t.quantization.zeroPoint) for t in tensors
            if t.quantization is not None and t.quantization.scale is not None]


def _outputs(path: str, images: np.ndarray) -> np.ndarray:
    import edgeq

    m = edgeq.load(path, num_threads=1)
    return np.stack([m.dequantize(m.run(m.prepare(img)))[0] for img in images])


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    from edgeq.convert.plan import make_recipe
    from edgeq.convert.variants import convert_many

    d = tmp_path_factory.mktemp("many")
    outputs = {"int8": d / "int8.tflite", make_recipe("int8", per_tensor=True): d / "pt.tflite",
               "float16": d / "f16.tflite"}
    return convert_many(str(BUNDLED_KERAS), str(CALIBRATION_DIR), outputs, labels=str(BUNDLED_LABELS))


def test_each_recipe_is_the_model_edgeq_convert_makes_alone(many, converted, tmp_path, fashion_test):
    import edgeq
    from edgeq.convert.plan import make_recipe

    int8, per_tensor, f16 = many
    assert [r.recipe.name for r in many] == ["int8", "int8", "float16"] and not per_tensor.recipe.per_channel
    alone_pt = edgeq.convert(str(BUNDLED_KERAS), str(CALIBRATION_DIR), str(tmp_path / "pt.tflite"),
                             recipe=make_recipe("int8", per_tensor=True), labels=str(BUNDLED_LABELS))
    alone_f16 = edgeq.convert(str(BUNDLED_KERAS), None, str(tmp_path / "f16.tflite"), recipe="float16",
                              labels=str(BUNDLED_LABELS))
    for shared, alone in ((int8, converted), (per_tensor, alone_pt)):
        a, b = _params(shared.output), _params(alone.output)
        assert len(a) == len(b) > 20
        for (s1, z1), (s2, z2) in zip(a, b):
            np.testing.assert_allclose(s1, s2, rtol=1e-4)
            np.testing.assert_array_equal(z1, z2)
        assert shared.calibration["used"] == alone.calibration["used"] == 200
    images = fashion_test[0][:50]
    for shared, alone in ((int8, converted), (per_tensor, alone_pt), (f16, alone_f16)):
        np.testing.assert_array_equal(_outputs(shared.output, images), _outputs(alone.output, images))
    assert f16.calibration == {} and f16.report.size_bytes == alone_f16.report.size_bytes


def test_each_model_carries_its_own_recipe_and_metadata(many):
    from edgeq.metadata import read_metadata

    for r in many:
        with open(r.output, "rb") as f:
            meta = read_metadata(f.read())
        assert meta.recipe["name"] == r.recipe.name and meta.recipe["per_channel"] == r.recipe.per_channel
        assert len(meta.labels) == 10 and meta.preprocess is not None
        saved = json.loads(pathlib.Path(str(r.output).replace(".tflite", ".recipe.json")).read_text())
        assert saved["per_channel"] == r.recipe.per_channel


def test_refuses_an_empty_request_and_a_tflite_source(tmp_path):
    from edgeq.convert.variants import convert_many
    from edgeq.errors import UsageError

    with pytest.raises(UsageError, match="at least one"):
        convert_many(str(BUNDLED_KERAS), str(CALIBRATION_DIR), {})
    src = tmp_path / "float.tflite"
    src.write_bytes((BUNDLED_KERAS.parent.parent / "tests" / "data" / "fashion_float.tflite").read_bytes())
    with pytest.raises(UsageError, match="edgeq.convert"):
        convert_many(str(src), str(CALIBRATION_DIR), {"int8": tmp_path / "o.tflite"})
