"""External delegates and the Edge TPU loader, exercised with a real delegate built from C.

tests/delegate/edgeq_test_delegate.c implements the TFLite plugin ABI: it claims float ADD
nodes (or, with claim=edgetpu-custom-op, the Edge TPU's custom op), runs them itself and counts
what it did; the counters are read back through ctypes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeq.errors import DelegateError, DelegateUnavailableError, ModelError, UsageError
from edgeq.runtime import libraries as lib
from edgeq.runtime import load
from edgeq.runtime.engines import delegated_node_counts

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data"
ADD = DATA / "add_float.tflite"
TPU_MODEL = DATA / "edgetpu_add.tflite"
ADD_A = np.arange(8, dtype=np.float32) * 0.5 - 1.0
ADD_B = np.linspace(-2.0, 2.0, 8, dtype=np.float32)


@pytest.fixture(scope="session")
def delegate_lib(tmp_path_factory) -> pathlib.Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) to build tests/delegate/edgeq_test_delegate.c")
    out = tmp_path_factory.mktemp("delegate") / "libedgeq_test_delegate.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", str(HERE / "delegate"),
                    "-o", str(out), str(HERE / "delegate" / "edgeq_test_delegate.c")], check=True)
    return out


class Stats:
    def __init__(self, path: pathlib.Path):
        self.lib = ctypes.CDLL(str(path))  # same handle the interpreter's load_delegate gets
        self.lib.edgeq_test_delegate_options.restype = ctypes.c_char_p

    def reset(self) -> None:
        self.lib.edgeq_test_delegate_reset()

    def read(self) -> dict[str, int]:
        vals = [ctypes.c_int() for _ in range(6)]
        self.lib.edgeq_test_delegate_stats(*[ctypes.byref(v) for v in vals])
        keys = ("created", "destroyed", "claimed", "partitions", "invokes", "nodes_run")
        return dict(zip(keys, (v.value for v in vals)))

    @property
    def options(self) -> str:
        return self.lib.edgeq_test_delegate_options().decode()


@pytest.fixture()
def stats(delegate_lib) -> Stats:
    s = Stats(delegate_lib)
    s.reset()
    return s


def expected(x: np.ndarray) -> np.ndarray:
    return (x + ADD_A) * ADD_B + x


def test_external_delegate_claims_adds_runs_them_and_matches_cpu(delegate_lib, stats):
    x = np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32)
    with load(ADD, delegate=str(delegate_lib), label="hello") as m, load(ADD, delegate="cpu") as cpu:
        r = m.delegate_report
        assert r.delegate == delegate_lib.name
        assert r.delegated_nodes == 2 and r.total_nodes == 3  # the two ADDs, not the MUL
        assert r.cpu_delegated_nodes == 1  # XNNPACK took the MUL left over
        s = stats.read()
        assert s["created"] == 1 and s["claimed"] == 2 and s["partitions"] == 2
        assert stats.options == "label=hello"
        for _ in range(3):
            y = m.run(x)[0]
        np.testing.assert_allclose(y, cpu.run(x)[0], rtol=1e-6)
        np.testing.assert_allclose(y, expected(x), rtol=1e-6)
        s = stats.read()
        assert s["invokes"] == 6 and s["nodes_run"] == 6  # 2 partitions x 3 runs
    assert stats.read()["destroyed"] == 1


def test_external_delegate_null_return_is_a_clear_error(delegate_lib, stats):
    with pytest.raises(DelegateError, match=r"refused to start .*fail.*creation refused \(fail option set\)"):
        load(ADD, delegate=str(delegate_lib), fail=1)
    assert stats.read()["created"] == 0


def test_external_delegate_rejecting_an_option_names_it(delegate_lib, stats):
    with pytest.raises(DelegateError, match="unknown option 'bogus'"):
        load(ADD, delegate=str(delegate_lib), bogus="x")


def test_delegate_path_errors(tmp_path):
    with pytest.raises(DelegateUnavailableError, match="cannot load delegate library"):
        load(ADD, delegate=str(tmp_path / "missing.so"))
    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no libm to use as a non-delegate shared library")
    with pytest.raises(DelegateError, match="not a TFLite external delegate"):
        load(ADD, delegate=libm)


def test_edgetpu_loader_uses_library_device_and_runs_the_custom_op(delegate_lib, stats, monkeypatch):
    """The Edge TPU path with the stub standing in for libedgetpu (found via $EDGEQ_EDGETPU_LIBRARY)."""
    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, str(delegate_lib))
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    with load(TPU_MODEL, delegate="edgetpu", device="usb:0") as m:
        r = m.delegate_report
        assert r.delegate == "edgetpu" and r.attempts == (("edgetpu", True, "requested"),)
        assert r.delegated_nodes == 2 and r.total_nodes == 3  # the custom op and the last ADD
        np.testing.assert_allclose(m.run(x)[0], expected(x), rtol=1e-6)
    assert stats.options == "device=usb:0"
    assert stats.read()["nodes_run"] == 2


def test_edgetpu_library_option_and_no_device_option(delegate_lib, stats):
    with load(ADD, delegate="edgetpu", library=str(delegate_lib)) as m:
        assert m.delegate_report.delegate == "edgetpu" and m.delegate_report.delegated_nodes == 2
    assert stats.read()["created"] == 1
    assert stats.options == ""  # no device given -> no option passed (libedgetpu picks the first TPU)


def test_edgetpu_missing_library_says_what_to_install(monkeypatch):
    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, "/nonexistent/libedgetpu.so.1")
    with pytest.raises(DelegateUnavailableError, match="libedgetpu1-std"):
        load(ADD, delegate="edgetpu")
    monkeypatch.delenv(lib.EDGETPU_LIBRARY_ENV)
    assert lib.find_edgetpu_library(None) == lib.edgetpu_library_name() == "libedgetpu.so.1"


def test_edgetpu_null_return_means_no_device(delegate_lib, stats, monkeypatch):
    monkeypatch.setenv("EDGEQ_TEST_DELEGATE_NO_DEVICE", "1")
    with pytest.raises(DelegateUnavailableError, match=r"no device found.*is an Edge TPU usb:1 attached"):
        load(TPU_MODEL, delegate="edgetpu", library=str(delegate_lib), device="usb:1")


def test_auto_on_tpu_model_picks_edgetpu_when_present(delegate_lib, stats, monkeypatch):
    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, str(delegate_lib))
    with load(TPU_MODEL, delegate="auto") as m:
        r = m.delegate_report
        assert r.delegate == "edgetpu" and [a.name for a in r.attempts] == ["edgetpu"]
        assert r.attempts[0].ok and "compiled for the Edge TPU" in r.attempts[0].reason


def test_auto_on_tpu_model_without_runtime_fails_clearly(monkeypatch):
    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, "/nonexistent/libedgetpu.so.1")
    with pytest.raises(DelegateUnavailableError, match="compiled for the Edge TPU but the Edge TPU cannot be used"):
        load(TPU_MODEL, delegate="auto")


def test_delegate_not_claiming_the_tpu_op_gives_model_error(delegate_lib, stats):
    with pytest.raises(ModelError, match="edgetpu-custom-op"):
        load(TPU_MODEL, delegate=str(delegate_lib), claim="ADD")


def test_edgetpu_on_uncompiled_model_warns_nothing_offloaded(delegate_lib, stats, monkeypatch, caplog):
    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, str(delegate_lib))
    with caplog.at_level("WARNING", logger="edgeq"), load(ADD, delegate="edgetpu") as m:
        (warning,) = m.delegate_report.warnings  # in the report, for commands to print
    assert "nothing will be offloaded" in warning and "nothing will be offloaded" in caplog.text
    assert m.delegate_report.to_dict()["warnings"] == [warning] and warning in m.delegate_report.describe()
    with load(TPU_MODEL, delegate="edgetpu") as m:
        assert m.delegate_report.warnings == ()


def test_bench_cli_shows_the_edgetpu_warning_from_its_child_process(delegate_lib, monkeypatch, capsys, tmp_path):
    from edgeq.cli import main

    monkeypatch.setenv(lib.EDGETPU_LIBRARY_ENV, str(delegate_lib))
    out_json = tmp_path / "r.json"
    assert main(["bench", str(ADD), "--delegate", "edgetpu", "--runs", "3", "--warmup", "0",
                 "--json", str(out_json)]) == 0
    assert "nothing will be offloaded to the Edge TPU" in capsys.readouterr().err
    (row,) = json.loads(out_json.read_text())
    assert row["delegate"] == "edgetpu" and row["delegated_nodes"] == 2
    assert any("nothing will be offloaded" in w for w in row["warnings"])


def test_delegated_node_counting_recovers_partitions():
    ops = [
        {"index": 0, "op_name": "ADD", "inputs": [0, 1], "outputs": [3]},
        {"index": 1, "op_name": "MUL", "inputs": [3, 2], "outputs": [4]},
        {"index": 2, "op_name": "ADD", "inputs": [4, 0], "outputs": [5]},
        {"index": 3, "op_name": "DELEGATE", "inputs": [0, 1], "outputs": [3]},
        {"index": 4, "op_name": "DELEGATE", "inputs": [3, 2, 0], "outputs": [5]},
    ]
    assert delegated_node_counts(ops, 3) == [1, 2]


def test_gpu_with_library_path_loads_a_classic_gpu_delegate(delegate_lib, stats):
    """delegate='gpu', library=PATH: a classic TFLite GPU delegate .so through the plugin ABI."""
    x = np.ones((1, 8), np.float32)
    with load(ADD, delegate="gpu", library=str(delegate_lib), label="gpu-lib") as m:
        r = m.delegate_report
        assert r.delegate == "gpu" and r.delegated_nodes == 2
        np.testing.assert_allclose(m.run(x)[0], expected(x), rtol=1e-6)
    assert stats.options == "label=gpu-lib"  # library= itself is not passed on


TF_BACKEND_SCRIPT = """
import sys, numpy as np
from edgeq.runtime import load
with load(sys.argv[1], delegate=sys.argv[2], backend="tensorflow") as m:
    y = m.run(np.ones((1, 8), np.float32))[0]
    print("@@", m.delegate_report.backend, m.delegate_report.delegated_nodes, " ".join(f"{v:.6f}" for v in y[0]))
"""


@pytest.mark.convert
def test_tensorflow_backend_runs_the_external_delegate(delegate_lib):
    """The last-resort backend (tensorflow.lite) loads the same plugin and counts the same nodes.

    In a child process: once TensorFlow is loaded, LiteRT's WebGPU accelerator crashes (SIGSEGV)
    in that process, which would take the GPU tests down with it.
    """
    out = subprocess.run([sys.executable, "-c", TF_BACKEND_SCRIPT, str(ADD), str(delegate_lib)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("@@ ")][-1].split()
    assert line[1] == "tensorflow" and line[2] == "2"
    np.testing.assert_allclose([float(v) for v in line[3:]], expected(np.ones((1, 8), np.float32))[0], rtol=1e-5)


# ---- the delegate registry is the single source of delegates ----------------------------------
@pytest.fixture()
def npu(delegate_lib):
    """A delegate registered at test time, as a plugin would: the C test delegate under a new name."""
    from edgeq.runtime import DelegateOption, DelegateSpec, register_delegate
    from edgeq.runtime.delegates import DELEGATES
    from edgeq.runtime.engines import interpreter_engine
    from edgeq.runtime.libraries import load_external_delegate

    def loader(req):
        return interpreter_engine(req, "npu-test", delegate=load_external_delegate(
            req.backend, str(delegate_lib), req.options, what="npu-test"))

    spec = register_delegate(DelegateSpec(
        name="npu-test", help="the C test delegate standing in for a vendor NPU", loader=loader,
        options=(DelegateOption("label", "TEXT"), DelegateOption("claim", "ADD|edgetpu-custom-op",
                                                                 choices=("ADD", "edgetpu-custom-op")))))
    yield spec
    DELEGATES.pop("npu-test")


def test_registered_delegate_loads_runs_and_is_reported(npu, stats):
    x = np.random.default_rng(1).normal(size=(1, 8)).astype(np.float32)
    with load(ADD, delegate="npu-test", label="npu") as m:
        r = m.delegate_report
        assert r.delegate == "npu-test" and r.attempts == (("npu-test", True, "requested"),)
        assert r.delegated_nodes == 2 and r.cpu_delegated_nodes == 1 and r.total_nodes == 3
        np.testing.assert_allclose(m.run(x)[0], expected(x), rtol=1e-6)
    assert stats.options == "label=npu" and stats.read()["nodes_run"] == 2


def test_registered_delegate_options_are_checked_from_its_spec(npu, stats):
    with pytest.raises(UsageError, match=r"'npu-test' does not take option\(s\) device; valid options: label, claim"):
        load(ADD, delegate="npu-test", device="usb")
    with pytest.raises(UsageError, match="claim='MUL': expected one of ADD, edgetpu-custom-op"):
        load(ADD, delegate="npu-test", claim="MUL")
    assert stats.read()["created"] == 0  # refused before the library was even loaded
    with pytest.raises(UsageError, match="valid delegates: auto, xnnpack, litert-cpu, cpu, cpu-ref, edgetpu, gpu, "
                                         "npu-test"):
        load(ADD, delegate="npu")
    # not declared able to run Edge TPU models: refused like the CPU delegates
    with pytest.raises(ModelError, match="needs delegate='edgetpu', not 'npu-test'"):
        load(TPU_MODEL, delegate="npu-test")


def test_unregistered_name_is_unknown_again(npu):
    from edgeq.runtime.delegates import DELEGATES

    DELEGATES.pop("npu-test")
    try:
        with pytest.raises(UsageError, match="unknown delegate 'npu-test'"):
            load(ADD, delegate="npu-test")
    finally:
        DELEGATES["npu-test"] = npu


def test_register_delegate_refuses_duplicates_and_paths(npu):
    from edgeq.runtime import DelegateSpec, register_delegate

    with pytest.raises(UsageError, match="already registered"):
        register_delegate(npu)
    assert register_delegate(npu, replace=True) is npu
    with pytest.raises(UsageError, match="plain name"):
        register_delegate(DelegateSpec("libx.so", "a path", npu.loader))
    with pytest.raises(UsageError, match="takes a DelegateSpec"):
        register_delegate({"name": "x"})


def test_bench_gives_a_registered_delegate_the_options_its_spec_declares(npu, stats):
    from edgeq.bench import run_benchmark

    # label= is npu-test's option only: xnnpack must not get it (it would refuse it)
    rx, rn = run_benchmark([ADD], ["xnnpack", "npu-test"], [1], runs=3, warmup=0,
                           delegate_options={"label": "bench"}, isolate=False)
    assert rx.ok and rx.delegate == "xnnpack" and rn.ok and rn.delegate == "npu-test" and rn.delegated_nodes == 2
    assert stats.options == "label=bench"
    with pytest.raises(UsageError, match="npu-test: label, claim"):
        run_benchmark([ADD], ["xnnpack"], [1], delegate_options={"label": "x"}, isolate=False)


@pytest.mark.parametrize("command", ["run", "bench"])
def test_cli_help_lists_every_registered_delegate_and_its_options(npu, command, capsys):
    from edgeq.cli import main
    from edgeq.runtime.delegates import DELEGATES

    assert main([command, "--help"]) == 0
    text = "".join(capsys.readouterr().out.split())  # click wraps the help text (also at hyphens)
    delegate_line = text.split("--delegateTEXT", 1)[1].split("--delegate-option", 1)[0]
    listed = set(re.split("[:,]", delegate_line))
    assert set(DELEGATES) <= listed and "npu-test" in listed
    for spec in DELEGATES.values():
        for option in spec.options:
            assert f"{option.name}={option.values}" in text
