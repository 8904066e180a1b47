"""Malformed edgeq metadata is one clear ModelError naming the file — never a traceback, never a silently
wrong prediction, never raw control characters on the terminal (issue: hardening, case 8)."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import edgeq
from edgeq.errors import ModelError
from edgeq.metadata import METADATA_NAME, embed_metadata
from edgeq.modelinfo import inspect_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
INT8 = ROOT / "tests" / "data" / "fashion_int8.tflite"


def _good() -> dict:
    d = edgeq.read_metadata(INT8.read_bytes()).to_dict()
    return json.loads(json.dumps(d))


def _with(tmp_path: pathlib.Path, name: str, payload: bytes) -> pathlib.Path:
    out = tmp_path / f"{name}.tflite"
    out.write_bytes(embed_metadata(INT8.read_bytes(), {METADATA_NAME: payload}))
    return out


def _pre(**changes) -> bytes:
    d = _good()
    d["preprocess"].update(changes)
    return json.dumps(d).encode()


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


CASES = {
    "null": b"null",
    "list": b"[1, 2, 3]",
    "not_json": b"\xff\xfe garbage",
    "deeply_nested": _nested(100000),
    "nested_recipe": json.dumps({**_good(), "recipe": {"a": json.loads(_nested(500))}}).encode(),
    "height_fraction": _pre(height=28.5),
    "height_huge": _pre(height=10**30),
    "input_100000": _pre(height=100000, width=100000),
    "pad_huge": _pre(pad_value=1e9),
    "pad_text": _pre(pad_value="x"),
    "std_nan": _pre(std=[float("nan")]),
    "std_text": _pre(std="255"),
    "color_number": _pre(color=3),
    "labels_dict": json.dumps({**_good(), "labels": {"a": 1}}).encode(),
    "label_escape": json.dumps({**_good(), "labels": ["\x1b[2J\x1b[Hpwned"] + _good()["labels"][1:]}).encode(),
    "task_number": json.dumps({**_good(), "task": 7}).encode(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_metadata_is_a_model_error_naming_the_file(tmp_path, case):
    path = _with(tmp_path, case, CASES[case])
    for action in (lambda: inspect_model(path), lambda: edgeq.load(path, delegate="xnnpack")):
        with pytest.raises(ModelError) as info:
            action()
        assert str(path) in str(info.value) and "metadata is not valid" in str(info.value)


def test_valid_metadata_still_loads_and_predicts(tmp_path):
    path = _with(tmp_path, "good", json.dumps(_good()).encode())
    with edgeq.load(path, delegate="xnnpack") as m:
        top = m.predict(np.zeros((28, 28), np.uint8), top_k=1)
    assert top[0].label in _good()["labels"]


def test_cli_prints_no_traceback_and_no_escape_sequence(tmp_path):
    path = _with(tmp_path, "label_escape", CASES["label_escape"])
    out = subprocess.run([sys.executable, "-m", "edgeq.cli", "inspect", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "\x1b[2J" not in out.stderr + out.stdout
    assert "error:" in out.stderr and "control characters" in out.stderr


DEEP = r"""
import sys
sys.setrecursionlimit(10 ** 6)  # as some libraries do: json's C decoder would then overflow the C stack
import pathlib
from edgeq.errors import ModelError
from edgeq.metadata import METADATA_NAME, embed_metadata
from edgeq.modelinfo import inspect_model
data = embed_metadata(pathlib.Path(sys.argv[1]).read_bytes(), {METADATA_NAME: b"[" * 200000 + b"]" * 200000})
try:
    inspect_model(data)
except ModelError as exc:
    print("refused:", exc)
"""


def test_deep_nesting_is_refused_before_the_json_decoder_recurses():
    """Seen: with a raised recursion limit, 100,000 nested brackets killed the process with SIGSEGV."""
    out = subprocess.run([sys.executable, "-c", DEEP, str(INT8)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "refused:" in out.stdout and "nested 200000 levels deep" in out.stdout
