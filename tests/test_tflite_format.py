"""The bounds-checked .tflite reader and the embedded metadata, checked against the interpreter."""
import json

import numpy as np
import pytest

from edgeq.errors import ModelError
from edgeq.metadata import METADATA_NAME, EdgeqMetadata, embed_metadata, read_metadata
from edgeq.modelinfo import inspect_model
from edgeq.preprocess import Preprocess
from edgeq.tflite_format import parse_model

pytestmark = pytest.mark.convert


def interpreter(data):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    # Without XNNPACK, so the op list is the file's own (no delegate node).
    it = Interpreter(model_content=data,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def test_reader_agrees_with_interpreter(int8_model_path):
    data = int8_model_path.read_bytes()
    mf = parse_model(data)
    it = interpreter(data)
    for ours, theirs in ((mf.main.inputs, it.get_input_details()), (mf.main.outputs, it.get_output_details())):
        for idx, det in zip(ours, theirs):
            t = mf.main.tensors[idx]
            assert t.name == det["name"]
            assert list(t.shape) == list(det["shape"])
            assert np.dtype(t.dtype.lower()) == det["dtype"]
            assert t.scale[0] == pytest.approx(det["quantization"][0])
            assert t.zero_point[0] == det["quantization"][1]
    details = {d["index"]: d for d in it.get_tensor_details()}   # the runtime adds scratch tensors after ours
    for t in mf.main.tensors:
        assert t.name == details[t.index]["name"]
        assert list(t.shape_signature) == list(details[t.index]["shape_signature"])
    assert len(mf.main.operators) == len(it._get_ops_details())
    assert [op.op for op in mf.main.operators] == [d["op_name"] for d in it._get_ops_details()]


def test_metadata_round_trip_keeps_model_behaviour(int8_model_path):
    data = int8_model_path.read_bytes()
    meta = read_metadata(data)
    assert meta.preprocess == Preprocess(28, 28, color="GRAY")
    assert len(meta.labels) == 10 and meta.labels[0] == "T-shirt/top"
    assert meta.recipe["name"] == "int8" and meta.calibration["used"] == 200
    assert len(meta.source_sha256) == 64
    new = EdgeqMetadata(preprocess=Preprocess(28, 28, color="GRAY", resize="letterbox"), labels=("a",) * 10,
                        task="other", recipe={"name": "x"})
    changed = embed_metadata(data, {METADATA_NAME: new.to_json().encode(), "extra": b"\x00\x01"})
    assert read_metadata(changed) == new
    assert parse_model(changed).metadata["extra"] == b"\x00\x01"
    assert list(parse_model(changed).metadata).count(METADATA_NAME) == 1
    x = np.random.default_rng(1).integers(-128, 128, (1, 28, 28, 1), dtype=np.int8)
    outs = []
    for d in (data, changed):
        it = interpreter(d)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_foreign_model_has_no_metadata(int8_model_path):
    from edgeq.metadata import pack_model, unpack_model
    m = unpack_model(int8_model_path.read_bytes())
    m.metadata = [md for md in m.metadata if md.name not in (b"edgeq", "edgeq")]
    report = inspect_model(pack_model(m))
    assert report.metadata is None and report.full_integer


def test_corrupt_metadata_json_is_a_model_error(int8_model_path):
    bad = embed_metadata(int8_model_path.read_bytes(), {METADATA_NAME: b"{not json"})
    with pytest.raises(ModelError, match="metadata is not valid"):
        read_metadata(bad)


@pytest.mark.parametrize("blob, match", [
    (b"", "empty"),
    (b"\x00" * 10, "too small"),
    (b"PK\x03\x04" + b"\x00" * 60, "zip/.keras"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 60, "HDF5"),
    (b"\x10\x00\x00\x00TFL3" + b"\xff" * 40, "corrupt"),
])
def test_garbage_is_rejected_with_reason(blob, match):
    with pytest.raises(ModelError, match=match):
        parse_model(blob)


def test_every_truncation_is_a_clean_error(int8_model_path):
    data = int8_model_path.read_bytes()
    for cut in list(range(8, 400, 7)) + [len(data) // 2, len(data) - 100]:
        with pytest.raises(ModelError):
            parse_model(data[:cut])


def test_json_report_keys(int8_model_path):
    d = inspect_model(int8_model_path).to_dict()
    for key in ("inputs", "outputs", "ops", "full_integer", "float_ops", "metadata", "size_bytes"):
        assert key in d
    for t in d["inputs"] + d["outputs"]:
        assert set(t) >= {"name", "shape", "dtype", "scale", "zero_point"}
    json.dumps(d)
    assert d["ops"]["CONV_2D"] == 5 and d["full_integer"] is True
