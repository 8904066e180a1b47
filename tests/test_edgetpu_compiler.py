"""Edge TPU compiler integration, shape freezing and the check's rules, without TensorFlow.

The compiler itself cannot run here (closed-source, x86-64 Debian/Ubuntu, not installable), so:
- the log parser reads tests/data/edgetpu_compiler_*.log, texts written by us in the compiler's
  documented output format (coral.ai/docs/edgetpu/compiler/ and the logs users quote in
  google-coral/edgetpu issues #60, #173, #433, #490, #512; the operation-log layout and rows of
  ``oplog`` follow a compiler-14 log published as tiny_yolo_edgetpu.log in
  rajansaini691/retinanet-model-tflite, shortened and renamed); none is a run captured by us;
- the subprocess boundary runs tests/data/edgetpu_compiler_standin.py put on PATH as
  ``edgetpu_compiler``: a stand-in that says so in its version line and maps ops by a test rule.
"""
from __future__ import annotations

import json
import os
import pathlib
import stat
import sys

import numpy as np
import pytest
from conftest import CALIBRATION_DIR, TEST_DATA

from edgeq.cli import main
from edgeq.convert.calibration import read_image
from edgeq.edgetpu import (
    CompilerError,
    check_model,
    compile_model,
    freeze_shapes,
    is_edgetpu_compiled,
    parse_compiler_log,
)
from edgeq.edgetpu.check import OpContext
from edgeq.edgetpu.ops import SUPPORTED_OPS, rule_for
from edgeq.errors import ToolNotFoundError, UsageError
from edgeq.tflite_format import TensorInfo, load_model_file

STANDIN = TEST_DATA / "edgetpu_compiler_standin.py"
FASHION_INT8 = TEST_DATA / "fashion_int8.tflite"   # int8, Keras export: shape_signature [-1, 28, 28, 1]


def _log(name: str) -> str:
    return (TEST_DATA / f"edgetpu_compiler_{name}.log").read_text()


def run_cli(args, capsys):
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def real_image() -> np.ndarray:
    path = sorted((CALIBRATION_DIR / "bag").glob("*.png"))[0]
    img = read_image(str(path))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def frozen_fashion(tmp_path_factory, real_image) -> pathlib.Path:
    out = tmp_path_factory.mktemp("frozen") / "fashion_int8_static.tflite"
    freeze_shapes(FASHION_INT8, out, image=real_image)
    return out


@pytest.fixture
def standin_on_path(tmp_path, monkeypatch) -> pathlib.Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "edgetpu_compiler"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("EDGEQ_STANDIN_DECLINE", "EDGEQ_STANDIN_FAIL"):
        monkeypatch.delenv(var, raising=False)
    return exe


# ---- the log parser ------------------------------------------------------------------------------
def test_parse_fully_mapped_log():
    log = parse_compiler_log(_log("mapped"))
    assert log.version == "16.0.384591198" and log.succeeded and log.compile_ms == 412
    assert log.input_model == "mobilenetv2_035_96_uint8.tflite"
    assert log.output_models == ("mobilenetv2_035_96_uint8_edgetpu.tflite",)
    assert log.on_chip_used_bytes == round(512.25 * 1024) and log.on_chip_remaining_bytes == round(7.26 * 2**20)
    assert log.off_chip_bytes == 0 and log.subgraphs == 1 and log.total_ops == 67
    assert log.fully_mapped and log.tpu_ops == 67 and log.cpu_ops == 0  # derived: no "will run on" lines
    assert sum(r.count for r in log.rows) == 67 and all(r.mapped for r in log.rows)
    assert log.mapped_counts()["CONV_2D"] == 35


def test_parse_partially_mapped_log():
    log = parse_compiler_log(_log("partial"))
    assert log.succeeded and not log.fully_mapped
    assert (log.tpu_ops, log.cpu_ops, log.total_ops) == (2, 112, 114)
    hs = [r for r in log.rows if r.op == "HARD_SWISH"]
    assert len(hs) == 1 and hs[0].count == 19 and not hs[0].mapped and hs[0].status == "Operation not supported"
    assert log.mapped_counts()["CONV_2D"] == 1 and log.op_counts()["CONV_2D"] == 43
    assert sum(r.count for r in log.rows if not r.mapped) == 112


def test_parse_failed_log():
    log = parse_compiler_log(_log("failed"))
    assert not log.succeeded and not log.fully_mapped and log.rows == ()
    assert any("dynamic-sized tensors" in e for e in log.errors)
    assert any(e.startswith("Compilation failed:") for e in log.errors)


def test_parse_operation_log_file():
    log = parse_compiler_log(_log("oplog"))
    assert log.version == "14.1.317412892" and log.input_model == "tiny_detector_uint8.tflite"
    statuses = {(r.op, r.status) for r in log.rows if not r.mapped}
    assert ("RESIZE_NEAREST_NEIGHBOR", "Operation version not supported") in statuses
    assert log.mapped_counts() == {"CONCATENATION": 0, "MAX_POOL_2D": 6, "RESIZE_NEAREST_NEIGHBOR": 0,
                                   "CONV_2D": 11, "QUANTIZE": 2}
    assert (log.tpu_ops, log.cpu_ops) == (19, 5)


def test_parse_stdout_without_operation_table():
    """Without -s the compiler prints no table, and for a fully mapped model no "will run on" counts either."""
    text = _log("mapped").split("Operator   ")[0]
    assert "Mapped to Edge TPU" not in text
    log = parse_compiler_log(text)
    assert log.rows == () and log.succeeded and log.fully_mapped
    assert (log.tpu_ops, log.cpu_ops, log.total_ops) == (67, 0, 67)
    partial = parse_compiler_log(_log("partial").split("Operator   ")[0])
    assert partial.rows == () and not partial.fully_mapped and (partial.tpu_ops, partial.cpu_ops) == (2, 112)


def test_parse_garbage_is_not_success():
    log = parse_compiler_log("bash: edgetpu_compiler: cannot execute binary file: Exec format error\n")
    assert not log.succeeded and log.rows == () and log.version is None


# ---- shape freezing (real model, real image, LiteRT interpreter) -----------------------------------
def test_dynamic_batch_model_is_refused_then_frozen(frozen_fashion):
    before = check_model(FASHION_INT8)
    assert not before.compatible and before.certain
    assert before.first_unmapped.index == 0 and before.first_unmapped.category == "dynamic_shape"
    assert any("dynamic shape" in i and "[-1, 28, 28, 1]" in i for i in before.issues)
    assert any("fix-shapes" in s for s in before.suggestions)
    # every op was refused only for its dynamic size: freezing fixes all of them
    assert {v.category for v in before.ops} == {"dynamic_shape"}

    _, mf = load_model_file(frozen_fashion)
    assert not any(t.is_dynamic for t in mf.main.tensors)
    assert mf.main.tensors[mf.main.inputs[0]].shape_signature == (1, 28, 28, 1)
    after = check_model(frozen_fashion)
    assert after.compatible and after.first_unmapped is None and after.tpu_ops == len(after.ops) == 12
    assert 0 < after.parameter_bytes < 100 * 1024 and after.fits_cache


def test_frozen_model_gives_the_same_output(frozen_fashion, real_image):
    from ai_edge_litert.interpreter import Interpreter

    from edgeq.edgetpu.shapes import sample_input

    _, mf = load_model_file(FASHION_INT8)
    x, where = sample_input(mf, real_image)
    assert "real image" in where and x.dtype == np.int8 and x.shape == (1, 28, 28, 1)
    outs = []
    for path in (FASHION_INT8, frozen_fashion):
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].max() > outs[0].min()  # a real prediction, not a constant


def test_freeze_result_and_refusals(tmp_path, real_image):
    out = tmp_path / "f.tflite"
    r = freeze_shapes(FASHION_INT8, out, image=real_image)
    assert r.max_abs_diff == 0.0 and r.changed_tensors > 10 and "real image" in r.verified_on
    assert r.inputs[0].shape_signature == (-1, 28, 28, 1) and r.inputs[0].frozen_shape == (1, 28, 28, 1)
    with pytest.raises(Exception, match="already exists"):
        freeze_shapes(FASHION_INT8, out)
    again = freeze_shapes(out, tmp_path / "g.tflite")
    assert again.already_static and (tmp_path / "g.tflite").read_bytes() == out.read_bytes()
    from edgeq.edgetpu.shapes import frozen_input_shape

    hw = TensorInfo(0, "img", (1, 1, 1, 3), (-1, -1, -1, 3), "UINT8", 0)
    with pytest.raises(UsageError, match="dynamic height/width.*--input-size"):
        frozen_input_shape(hw, None)
    assert frozen_input_shape(hw, (160, 120)) == (1, 120, 160, 3)
    batch_only = TensorInfo(0, "img", (1, 28, 28, 1), (-1, 28, 28, 1), "INT8", 0)
    assert frozen_input_shape(batch_only, (28, 28)) == (1, 28, 28, 1)
    with pytest.raises(UsageError, match="fixed height/width 28x28.*contradicts"):  # not silently ignored
        frozen_input_shape(batch_only, (32, 28))


# ---- the op table's documented constraints ----------------------------------------------------
def _t(i, shape, dtype="INT8", const=False):
    return TensorInfo(i, f"t{i}", tuple(shape), tuple(shape), dtype, 1 if const else 0, (0.1,), (0,),
                      is_constant=const)


class _Opts:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _ctx(inputs, outputs, options=None, constants=None, runtime=14):
    constants = constants or {}
    return OpContext(op=None, inputs=tuple(inputs), outputs=tuple(outputs), options=options,
                     constant=lambda pos: constants.get(pos), runtime=runtime)


@pytest.mark.parametrize("op,ctx,fragment", [
    ("SOFTMAX", _ctx([_t(0, (1, 4, 10))], [_t(1, (1, 4, 10))]), "not 1-D"),
    ("SOFTMAX", _ctx([_t(0, (1, 20000))], [_t(1, (1, 20000))]), "at most 16,000"),
    ("MEAN", _ctx([_t(0, (1, 7, 7, 30)), _t(1, (2,), "INT32", True)], [_t(2, (1, 7, 7))],
                  constants={1: np.array([0, 3])}), "batch"),
    ("MEAN", _ctx([_t(0, (1, 7, 7, 30)), _t(1, (1,), "INT32", True)], [_t(2, (1, 7, 7))],
                  constants={1: np.array([-1])}), "multiple of 4"),
    ("MEAN", _ctx([_t(0, (1, 7, 7, 32)), _t(1, (1,), "INT32", True)], [_t(2, (1, 7, 7))],
                  constants={1: np.array([3])}, runtime=12), "x and/or y only"),
    ("STRIDED_SLICE", _ctx([_t(0, (1, 8, 8, 4))] + [_t(i, (4,), "INT32", True) for i in (1, 2, 3)],
                           [_t(4, (1, 4, 4, 4))], _Opts(ellipsisMask=0, newAxisMask=0),
                           {1: np.zeros(4), 2: np.array([1, 8, 8, 4]), 3: np.array([1, 2, 2, 1])}), "strides"),
    ("STRIDED_SLICE", _ctx([_t(0, (1, 8, 8, 4))] + [_t(i, (4,), "INT32", True) for i in (1, 2, 3)],
                           [_t(4, (1, 8, 8, 4))], _Opts(ellipsisMask=1, newAxisMask=0),
                           {1: np.zeros(4), 2: np.array([1, 8, 8, 4]), 3: np.ones(4)}), "ellipsis"),
    ("CONCATENATION", _ctx([_t(0, (1, 4, 4, 8)), _t(1, (1, 4, 4, 8), const=True)], [_t(2, (1, 4, 4, 16))],
                           _Opts(fusedActivationFunction=0), {1: np.ones((1, 4, 4, 8), np.int8)}), "all zeros"),
    ("MAX_POOL_2D", _ctx([_t(0, (1, 8, 8, 4))], [_t(1, (1, 4, 4, 4))], _Opts(fusedActivationFunction=1)),
     "fused activation"),
    ("FULLY_CONNECTED", _ctx([_t(0, (1, 5, 64)), _t(1, (10, 64), const=True)], [_t(2, (1, 5, 10))],
                             _Opts(weightsFormat=0)), "one-dimensional"),
    ("CONV_2D", _ctx([_t(0, (1, 8, 8, 4))], [_t(1, (1, 8, 8, 4))], _Opts(dilationHFactor=1, dilationWFactor=2)),
     "same dilation"),
    ("RESIZE_BILINEAR", _ctx([_t(0, (1, 2, 8, 8, 4))], [_t(1, (1, 2, 16, 16, 4))], _Opts()), "3-dimensional"),
])
def test_documented_constraints_refuse(op, ctx, fragment):
    why = rule_for(op).check(ctx)
    assert why is not None and fragment in why


@pytest.mark.parametrize("op,ctx", [
    ("SOFTMAX", _ctx([_t(0, (1, 10))], [_t(1, (1, 10))])),
    ("MEAN", _ctx([_t(0, (1, 7, 7, 32)), _t(1, (2,), "INT32", True)], [_t(2, (1, 32))],
                  constants={1: np.array([1, 2])})),
    ("STRIDED_SLICE", _ctx([_t(0, (1, 8, 8, 4))] + [_t(i, (4,), "INT32", True) for i in (1, 2, 3)],
                           [_t(4, (1, 4, 8, 4))], _Opts(ellipsisMask=0, newAxisMask=0),
                           {1: np.zeros(4), 2: np.array([1, 4, 8, 4]), 3: np.ones(4)})),
    ("CONCATENATION", _ctx([_t(0, (1, 4, 4, 8)), _t(1, (1, 4, 4, 8), const=True)], [_t(2, (1, 4, 4, 16))],
                           _Opts(fusedActivationFunction=0), {1: np.zeros((1, 4, 4, 8), np.int8)})),
])
def test_documented_constraints_accept(op, ctx):
    assert rule_for(op).check(ctx) is None


@pytest.mark.parametrize("shape,fragment", [
    ((1, 2, 8, 8, 1), "outside the 3 innermost"),  # only 3 non-unit dims, but one is not innermost
    ((2, 8, 8, 1), "batch size 2"),
    ((4, 1, 1, 10), "batch size 4"),
])
def test_tensor_dimension_rule_refuses(shape, fragment):
    from edgeq.edgetpu.check import _tensor_problems

    problems = _tensor_problems(_t(0, shape))
    assert [c for c, _ in problems] == ["dimensions"] and fragment in problems[0][1]


@pytest.mark.parametrize("shape", [(1, 8, 8, 3), (1, 1, 8, 8, 3), (8, 8, 3), (1, 1000), (5,)])
def test_tensor_dimension_rule_accepts(shape):
    from edgeq.edgetpu.check import _tensor_problems

    assert _tensor_problems(_t(0, shape)) == []


def test_table_has_runtime_versions_and_no_hard_swish():
    assert "HARD_SWISH" not in SUPPORTED_OPS and "DEQUANTIZE" not in SUPPORTED_OPS
    assert SUPPORTED_OPS["TRANSPOSE"].min_runtime == 14 and SUPPORTED_OPS["CONV_2D"].min_runtime == 1
    assert not SUPPORTED_OPS["RESHAPE"].exact and SUPPORTED_OPS["CONV_2D"].exact


def test_model_of_old_ops_maps_on_old_runtimes(frozen_fashion):
    # int8 I/O, so no QUANTIZE (13+): its ops all exist since the first runtimes
    assert check_model(frozen_fashion, runtime_version=10).compatible


def test_compiled_model_is_recognised():
    _, mf = load_model_file(TEST_DATA / "edgetpu_add.tflite")
    assert is_edgetpu_compiled(mf)
    _, plain = load_model_file(TEST_DATA / "add_float.tflite")
    assert not is_edgetpu_compiled(plain)
    r = check_model(TEST_DATA / "edgetpu_add.tflite")
    assert r.already_compiled and r.ops[0].mapped and r.ops[0].category == "compiled"
    assert not r.compatible and r.first_unmapped.category == "data_type"  # its float ops stay on the CPU


# ---- the subprocess boundary -------------------------------------------------------------------
def test_missing_compiler_says_where_it_runs(tmp_path, monkeypatch, frozen_fashion):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotFoundError) as info:
        compile_model(frozen_fashion, tmp_path)
    msg = str(info.value)
    assert "x86-64" in msg and "Debian/Ubuntu" in msg and "edgetpu-compiler" in msg and "apt" in msg
    assert not list(tmp_path.glob("*_edgetpu.tflite"))


def test_compile_through_standin_agrees_with_check(standin_on_path, tmp_path, frozen_fashion):
    r = compile_model(frozen_fashion, tmp_path / "out", min_runtime_version=13)
    assert r.command[1:4] == ("-s", "-o", r.command[3]) and r.command[4:6] == ("-m", "13")
    assert r.log.version.endswith("(not Coral's compiler)")  # the stand-in never claims to be the compiler
    assert r.command[0] == str(standin_on_path)
    out = pathlib.Path(r.outputs[0])
    assert out.name == "fashion_int8_static_edgetpu.tflite" and out.parent == tmp_path / "out"
    _, mf = load_model_file(out)
    assert is_edgetpu_compiled(mf)
    assert r.compatible and r.differences == () and r.preflight.compatible
    assert [v.op for v in r.ops] == ["edgetpu-custom-op"]
    assert pathlib.Path(r.log_path).read_text().startswith("Edge TPU Compiler version")
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temp files


def test_a_file_named_like_an_option_reaches_the_compiler_as_a_file(standin_on_path, tmp_path, frozen_fashion,
                                                                    monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(frozen_fashion, tmp_path / "--name.tflite")
    r = compile_model("--name.tflite", tmp_path / "out")
    assert r.command[-1] == "./--name.tflite"  # never parsed as an option by the compiler
    assert [pathlib.Path(p).name for p in r.outputs] == ["--name_edgetpu.tflite"]


def test_compile_segments_are_all_written(standin_on_path, tmp_path, frozen_fashion):
    r = compile_model(frozen_fashion, tmp_path, segments=3)
    assert "-n" in r.command and r.command[r.command.index("-n") + 1] == "3"
    names = sorted(pathlib.Path(p).name for p in r.outputs)
    assert names == [f"fashion_int8_static_segment_{i}_of_3_edgetpu.tflite" for i in range(3)]
    assert all(is_edgetpu_compiled(load_model_file(p)[1]) for p in r.outputs)


def test_compile_reports_where_compiler_differs(standin_on_path, tmp_path, frozen_fashion, monkeypatch):
    monkeypatch.setenv("EDGEQ_STANDIN_DECLINE", "MEAN")
    r = compile_model(frozen_fashion, tmp_path)
    assert not r.compatible and r.preflight.compatible
    assert r.log.tpu_ops == 9 and r.log.cpu_ops == 3
    assert any(d.startswith("MEAN: the check expected 1 of 1 mapped, the compiler mapped 0") and
               "unspecified limitation" in d for d in r.differences)
    assert any(d.startswith("overall:") for d in r.differences)
    assert r.first_unmapped.op == "MEAN" and "unspecified limitation" in r.first_unmapped.reason
    assert [v.op for v in r.ops] == ["edgetpu-custom-op", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]


def test_compile_failure_and_no_overwrite(standin_on_path, tmp_path, frozen_fashion, monkeypatch):
    compile_model(frozen_fashion, tmp_path)
    target = tmp_path / "fashion_int8_static_edgetpu.tflite"
    before = target.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        compile_model(frozen_fashion, tmp_path)
    monkeypatch.setenv("EDGEQ_STANDIN_FAIL", "Model failed in Tflite interpreter.")
    with pytest.raises(CompilerError, match="exit code 1.*Model failed in Tflite interpreter") as info:
        compile_model(frozen_fashion, tmp_path, force=True)
    assert target.read_bytes() == before  # a failed compile replaces nothing
    assert "pre-flight check found no problem" in str(info.value) and "edgetpu_compiler -s" in str(info.value)
    # the error says what to do: for a dynamic-batch model, the pre-flight finding and its fix
    with pytest.raises(CompilerError) as info:
        compile_model(FASHION_INT8, tmp_path)
    assert "dynamic-sized tensors" in str(info.value) and "edgeq edgetpu fix-shapes" in str(info.value)
    assert not (tmp_path / "fashion_int8_edgetpu.tflite").exists()


def test_compile_refuses_an_already_compiled_model(standin_on_path, tmp_path):
    with pytest.raises(UsageError, match="already compiled.*from before edgetpu_compiler"):
        compile_model(TEST_DATA / "edgetpu_add.tflite", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the CLI -------------------------------------------------------------------------------------
def test_cli_check_exit_codes_and_json(frozen_fashion, tmp_path, capsys):
    code, out, err = run_cli(["edgetpu", "check", frozen_fashion, "--json", "-"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["compatible"] is True and d["first_unmapped"] is None and len(d["ops"]) == 12
    assert set(d["ops"][0]) >= {"index", "op", "mapped", "reason"} and d["ops"][0]["op"] == "CONV_2D"
    assert "estimate" in " ".join(d["notes"]) and "all 12 ops would map" in err

    code, out, err = run_cli(["edgetpu", "check", FASHION_INT8, "--json", tmp_path / "r.json"], capsys)
    assert code == 3 and "edgetpu_compiler would refuse" in err and "Traceback" not in err
    assert "verdict: edgetpu_compiler would REFUSE the whole model" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["compatible"] is False and d["verdict_certain"] is True and "dynamic-sized" in d["compiler_refuses"]
    assert d["first_unmapped"]["index"] == 0 and "dynamic size" in d["first_unmapped"]["reason"]
    code, out, err = run_cli(["edgetpu", "check", tmp_path / "missing.tflite"], capsys)
    assert code == 1 and "not found" in err


def test_cli_fix_shapes_and_compile(standin_on_path, tmp_path, capsys):
    sample = sorted((CALIBRATION_DIR / "coat").glob("*.png"))[0]
    out = tmp_path / "static.tflite"
    code, stdout, err = run_cli(["edgetpu", "fix-shapes", FASHION_INT8, "-o", out, "--sample", sample,
                                 "--json", "-"], capsys)
    assert code == 0, err
    d = json.loads(stdout)
    assert d["freeze"]["inputs"][0]["frozen_shape"] == [1, 28, 28, 1] and d["edgetpu"]["compatible"]
    assert "real image" in d["freeze"]["verified_on"] and d["freeze"]["max_abs_diff"] == 0.0
    code, stdout, err = run_cli(["edgetpu", "compile", out, "-o", tmp_path / "c", "--json", "-"], capsys)
    assert code == 0, err
    d = json.loads(stdout)
    assert d["compatible"] and d["first_unmapped"] is None and d["differences"] == []
    assert d["compiler"]["rows"] and all(r["mapped"] for r in d["compiler"]["rows"])
    assert (tmp_path / "c" / "static_edgetpu.tflite").is_file()


def test_cli_compile_without_compiler(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run_cli(["edgetpu", "compile", FASHION_INT8, "-o", tmp_path], capsys)
    assert code == 1 and "x86-64 Debian/Ubuntu" in err and "Traceback" not in err
