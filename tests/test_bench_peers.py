"""benchmarks/bench_peers.py and op_profile.py without the peer packages: the CPU reader, the option checks,
and the one-op models the profile times (each must compute exactly what that op computes inside the model)."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import bench_peers
import hide_isa
import numpy as np
import op_profile
import peers
import pytest

from edgeq.runtime import load

DATA = pathlib.Path(__file__).parent / "data"

# the head of /proc/cpuinfo of the 2-vCPU Sapphire-Rapids-class VM bench_peers was first run on (flags cut short)
XEON = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 amx_int8
bogomips\t: 5200.00

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 amx_int8
"""
# an arm64 board's layout: no model name line per core, "Features" instead of "flags", no MHz
ARM = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_cpuinfo_x86_flags_and_int8_peaks():
    info = peers.parse_cpuinfo(XEON)
    assert info["model"] == "Intel(R) Xeon(R) Processor"
    assert info["logical_cpus"] == 2 and info["mhz"] == 2600.0
    assert info["flags"] == ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"]
    peaks = dict(peers.int8_peak(info, cores=2))
    assert list(peaks) == ["amx_int8", "avx512_vnni", "avx_vnni", "avx2"]   # widest path first
    assert peaks["avx512_vnni"] == pytest.approx(128 * 2.6 * 2)            # GMAC/s: MACs/cycle x GHz x cores
    assert peaks["amx_int8"] == pytest.approx(8 * peaks["avx512_vnni"])


def test_cpuinfo_arm_layout_without_clock_has_no_peak():
    info = peers.parse_cpuinfo(ARM)
    assert info["model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert info["flags"] == ["asimddp"] and info["mhz"] is None and info["logical_cpus"] == 1
    assert peers.int8_peak(info, cores=4) == []   # no x86 int8 path known and no clock: nothing claimed


@pytest.mark.parametrize("argv, message", [
    (["--stacks", "edgeq,tensorrt"], "--stacks: unknown tensorrt; expected a comma list of edgeq, edgeq-tuned"),
    (["--models", ""], "--models: unknown (empty)"),
    (["--stacks", "edgeq-tuned,openvino"], "edgeq-tuned starts from the edgeq default model; add edgeq"),
    (["--stacks", "openvino-tflite"], "openvino-tflite starts from the edgeq default model; add edgeq"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--eval-limit", "-5"], "--eval-limit must be >= 1, got -5"),
])
def test_bad_options_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_peers.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_quick_mode_defaults_and_order():
    args = bench_peers.parse_args(["--quick", "--stacks", "openvino,edgeq,edgeq,edgeq-tuned"])
    assert args.rounds == 2 and args.eval_limit == 1000
    assert args.stacks == ["edgeq", "edgeq-tuned", "openvino"]   # fixed order, duplicates gone
    assert bench_peers.parse_args(["--eval-limit", "60000"]).eval_limit == 10000   # the test split has 10,000


def test_one_op_models_compute_what_the_op_computes_inside_the_model():
    """Every op of the int8 Fashion-MNIST model, cut out, gives bit-exactly the model's own intermediate output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = DATA / "fashion_int8.tflite"
    model = op_profile.load(path)
    whole = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    whole.allocate_tensors()
    inp = whole.get_input_details()[0]
    x = np.random.default_rng(0).integers(-128, 128, inp["shape"]).astype(inp["dtype"])
    whole.set_tensor(inp["index"], x)
    whole.invoke()
    sg = model.subgraphs[0]
    kinds = []
    for i, op in enumerate(sg.operators):
        one = Interpreter(model_content=op_profile.single_op_model(model, i),
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        one.allocate_tensors()
        feeds = [t for t in op.inputs if t >= 0 and not op_profile._is_const(model, sg.tensors[t])]
        assert len(one.get_input_details()) == len(feeds) >= 1
        for d, t in zip(one.get_input_details(), feeds):
            one.set_tensor(d["index"], whole.get_tensor(t))
        one.invoke()
        np.testing.assert_array_equal(one.get_tensor(one.get_output_details()[0]["index"]),
                                      whole.get_tensor(op.outputs[0]))
        kinds.append(op_profile.op_name(model, op, op_profile._opcode_names()))
    assert kinds.count("CONV_2D") >= 1 and kinds.count("DEPTHWISE_CONV_2D") >= 1


def test_macs_of_a_convolution_come_from_its_shapes():
    model = op_profile.load(DATA / "fashion_int8.tflite")
    sg, names = model.subgraphs[0], op_profile._opcode_names()
    conv = next(op for op in sg.operators if op_profile.op_name(model, op, names) == "CONV_2D")
    out, w = sg.tensors[conv.outputs[0]].shape, sg.tensors[conv.inputs[1]].shape   # NHWC, [Cout, kh, kw, Cin]
    assert op_profile.macs(model, conv, "CONV_2D") == out[1] * out[2] * w[0] * w[1] * w[2] * w[3] > 0
    assert op_profile.macs(model, conv, "SOFTMAX") == 0


# ---- --hide-isa: this CPU's AVX2 code paths (benchmarks/hide_isa.py, cpuid_mask.c) ------------------------------
def _hide_isa_or_skip(tmp_path) -> pathlib.Path:
    if not hide_isa.cpu_can_fault_cpuid():
        pytest.skip("no CPUID faulting here (cpuid_fault missing from /proc/cpuinfo): --hide-isa cannot run")
    if "avx512f" not in peers.parse_cpuinfo(pathlib.Path("/proc/cpuinfo").read_text())["flags"]:
        pytest.skip("this CPU has no AVX-512 to hide")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build benchmarks/cpuid_mask.c")
    return hide_isa.build(tmp_path)


CHILD = """
import json, sys
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as seen
import peers
from edgeq.runtime import load

with load(sys.argv[1], delegate="xnnpack", num_threads=1) as m:
    x = np.load(sys.argv[2])
    out = np.concatenate([m.run([x[i:i + 1]])[0] for i in range(len(x))])
    np.save(sys.argv[3], out)
    print(json.dumps({"avx512f": bool(seen["AVX512F"]), "avx2": bool(seen["AVX2"]), "cpu": peers.cpu_info(),
                      "nodes": m.delegate_report.delegated_nodes}))
"""


def test_hidden_isa_runs_the_same_int8_model_on_avx2_kernels_with_the_same_results(tmp_path, int8_model_path,
                                                                                     fashion_test):
    lib = _hide_isa_or_skip(tmp_path)
    images, _ = fashion_test
    with load(int8_model_path, delegate="xnnpack", num_threads=1) as m:
        x = np.concatenate([m.prepare(img) for img in images[:64]])
        full = np.concatenate([m.run([x[i:i + 1]])[0] for i in range(len(x))])
    np.save(tmp_path / "x.npy", x)
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, LD_PRELOAD=str(lib), PYTHONPATH=f"{root}:{root / 'benchmarks'}", **{hide_isa.ENV: "1"})
    out = subprocess.run([sys.executable, "-c", CHILD, str(int8_model_path), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["avx2"] and not seen["avx512f"]          # NumPy's own CPUID probe sees no AVX-512
    assert "avx2" in seen["cpu"]["flags"] and not any(f.startswith(("avx512", "amx", "avx_vnni"))
                                                      for f in seen["cpu"]["flags"])
    assert seen["cpu"]["hidden"] == hide_isa.NOTE and seen["nodes"] > 0
    masked = np.load(tmp_path / "y.npy")
    # Other kernels, the same int8 arithmetic: at most one output step apart, the same class for every image.
    assert np.abs(masked.astype(int) - full.astype(int)).max() <= 1
    assert (masked.argmax(1) == full.argmax(1)).all()


def test_op_profile_with_hide_isa_reexecutes_itself_and_reports_the_avx2_peak(tmp_path, int8_model_path):
    _hide_isa_or_skip(tmp_path)
    root = pathlib.Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "op_profile.py"), str(int8_model_path),
                          "--hide-isa", "--threads", "1", "--runs", "5"], capture_output=True, text=True, check=True)
    head = out.stdout.splitlines()[0]
    assert "(AVX-512, AMX and AVX-VNNI hidden from CPUID)" in head and "peaks (int8 GMAC/s): avx2" in head
    assert "avx512" not in head.split("hidden")[0] and "% of avx2 peak" in out.stdout
