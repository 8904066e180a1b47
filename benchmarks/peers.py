"""The stacks bench_peers.py compares: how each converts a Keras model to int8 and how each runs it.

Every stack converts from the same .keras file with the same 200 calibration images (the seeded
sample ``edgeq.convert`` takes of calibration_data/), and runs on the CPU with the same thread count:

  - edgeq          ``edgeq.convert`` (default int8 recipe), loaded by ``edgeq.load(path, num_threads=T)``
  - edgeq-tuned    ``edgeq.tune(default, output=...)`` on this machine, loaded by ``edgeq.load(path)``
  - ort-s8s8       tf2onnx (opset 17) -> ``quant_pre_process`` -> ``quantize_static`` QDQ, MinMax, S8S8 (defaults)
  - ort-u8s8-rr    the same with uint8 activations and ``reduce_range=True`` (ORT's advice for AVX2/AVX-512 w/o VNNI)
  - openvino       ``ov.convert_model`` from the Keras object -> ``nncf.quantize`` (defaults) -> IR
  - openvino-tflite  no conversion of its own: OpenVINO's runtime (its TFLite frontend) runs edgeq's default
                   int8 .tflite as it is (the question: could edgeq reach OpenVINO's kernels with its own file?)

ONNX Runtime sessions: CPU provider, ``intra_op_num_threads=T``, ``inter_op_num_threads=1``, intra-op
spinning off. OpenVINO: ``compile_model(..., "CPU", {"INFERENCE_NUM_THREADS": T})`` (its default LATENCY hint).
The peer packages are the ``edgeq[peers]`` extra; none of this is imported by edgeq itself.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
import time
from collections.abc import Callable
from typing import Any

import hide_isa
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
CALIBRATION = ROOT / "calibration_data"
STACKS = ("edgeq", "edgeq-tuned", "ort-s8s8", "ort-u8s8-rr", "openvino", "openvino-tflite")
LABELS = {"edgeq": "edgeq int8 (default)", "edgeq-tuned": "edgeq int8, tuned",
          "ort-s8s8": "ONNX Runtime S8S8 (default)", "ort-u8s8-rr": "ONNX Runtime U8S8 reduce-range",
          "openvino": "OpenVINO + NNCF", "openvino-tflite": "OpenVINO running edgeq's .tflite"}
SUFFIX = {"edgeq": ".tflite", "edgeq-tuned": ".tuned.tflite", "ort-s8s8": ".s8s8.onnx",
          "ort-u8s8-rr": ".u8s8rr.onnx", "openvino": ".ov.xml", "openvino-tflite": ".tflite"}
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp", "i8mm", "sve")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: its Keras source, preprocessing (edgeq's contract) and input shape."""

    name: str
    keras: pathlib.Path
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, self.height, self.width, self.channels)

    def preprocess(self) -> Any:
        from edgeq.preprocess import Preprocess

        if self.channels == 1:  # the bundled model's contract: grayscale, pixel / 255
            return Preprocess(self.height, self.width, color="GRAY", mean=(0.0,), std=(255.0,))
        return Preprocess(self.height, self.width, color="RGB", mean=(127.5,), std=(127.5,))


def calibration_arrays(spec: ModelSpec, count: int = 200, seed: int = 0) -> np.ndarray:
    """The very images edgeq.convert calibrates on (same source, count and seed), preprocessed: [N,H,W,C]."""
    from edgeq.convert.calibration import CalibrationDataset

    return np.stack(list(CalibrationDataset(str(CALIBRATION), spec.preprocess(), num_samples=count, seed=seed)))


# ---- CPU ------------------------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name, logical CPUs, nominal MHz and the int8-relevant ISA flags from /proc/cpuinfo text."""
    model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    return {"model": model.group(1).strip() if model else "unknown",
            "logical_cpus": len(re.findall(r"^processor\s*:", text, re.M)),
            "mhz": float(mhz.group(1)) if mhz else None,
            "flags": [f for f in ISA_FLAGS if f in flags]}


def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU as this process's libraries see it: without the flags ``--hide-isa`` hides (hide_isa.py)."""
    try:
        info = parse_cpuinfo(pathlib.Path(path).read_text())
    except OSError:
        return {"model": "unknown", "logical_cpus": 0, "mhz": None, "flags": []}
    if hide_isa.active():
        info.update(flags=hide_isa.visible_flags(info["flags"]), hidden=hide_isa.NOTE)
    return info


# Dense int8 multiply-accumulates per cycle per core of the widest int8 dot-product path of an ISA
# (two 512-bit FMA ports assumed for AVX-512: Xeon Gold/Platinum; half on one-port parts).
INT8_MACS_PER_CYCLE = (("amx_int8", 1024), ("avx512_vnni", 128), ("avx_vnni", 64), ("avx2", 32))


def int8_peak(info: dict[str, Any], cores: int) -> list[tuple[str, float]]:
    """(ISA, peak int8 GMAC/s over `cores` at the nominal clock) for each int8 path the CPU has, widest first."""
    ghz = (info.get("mhz") or 0.0) / 1000.0
    return [(isa, macs * ghz * cores) for isa, macs in INT8_MACS_PER_CYCLE if isa in info.get("flags", [])]


# ---- conversion -----------------------------------------------------------------------------------

def convert(stack: str, spec: ModelSpec, out: pathlib.Path, default_tflite: pathlib.Path | None = None) -> dict:
    """Convert `spec` with one stack into `out`; returns seconds (from the .keras file; TensorFlow already imported).

    edgeq-tuned starts from the edgeq default model (`default_tflite`): its seconds are the tuning only;
    openvino-tflite runs that very file (nothing to convert).
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if stack == "edgeq":
        import edgeq

        edgeq.convert(str(spec.keras), str(CALIBRATION), str(out), preprocess=spec.preprocess(), num_samples=200,
                      seed=0, task="classify" if spec.channels == 1 else "other", force=True, save_recipe=False)
    elif stack == "edgeq-tuned":
        import edgeq

        result = edgeq.tune(str(default_tflite), output=str(out), force=True)
        info = {"runtime": result.runtime}
    elif stack.startswith("ort-"):
        _convert_ort(spec, out, u8s8_reduce_range=stack == "ort-u8s8-rr")
    elif stack == "openvino":
        _convert_openvino(spec, out)
    elif stack == "openvino-tflite":
        if out != default_tflite:
            raise ValueError(f"openvino-tflite runs edgeq's default model {default_tflite}, not {out}")
        return {"size_bytes": artifact_size(out)}
    else:
        raise ValueError(f"unknown stack {stack!r}; expected one of {', '.join(STACKS)}")
    return {"seconds": time.perf_counter() - t0, "size_bytes": artifact_size(out), **info}


def artifact_size(path: pathlib.Path) -> int:
    """Bytes on disk; an OpenVINO IR is its .xml plus its .bin."""
    size = path.stat().st_size
    if path.suffix == ".xml":
        size += path.with_suffix(".bin").stat().st_size
    return size


def _convert_ort(spec: ModelSpec, out: pathlib.Path, *, u8s8_reduce_range: bool) -> None:
    import keras
    import tensorflow as tf
    import tf2onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = keras.models.load_model(spec.keras, compile=False)
    samples = calibration_arrays(spec)
    fl, pre = out.with_suffix(".float.onnx"), out.with_suffix(".pre.onnx")
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec(spec.shape, tf.float32, name="input"),),
                               opset=17, output_path=str(fl))
    quant_pre_process(str(fl), str(pre), skip_symbolic_shape=True)  # static shapes: no sympy needed

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> dict | None:
            x = next(self.it, None)
            return None if x is None else {"input": x[None]}

    act = QuantType.QUInt8 if u8s8_reduce_range else QuantType.QInt8
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=act,
                    weight_type=QuantType.QInt8, reduce_range=u8s8_reduce_range,
                    calibrate_method=CalibrationMethod.MinMax)
    fl.unlink()
    pre.unlink()


def _convert_openvino(spec: ModelSpec, out: pathlib.Path) -> None:
    import keras
    import nncf
    import openvino as ov

    model = keras.models.load_model(spec.keras, compile=False)
    samples = calibration_arrays(spec)
    ov_model = ov.convert_model(model, input=[list(spec.shape)])
    quantized = nncf.quantize(ov_model, nncf.Dataset(list(samples), lambda x: x[None]), subset_size=len(samples))
    ov.save_model(quantized, str(out))


# ---- running ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Runner:
    """prepare(float NHWC batch of 1) -> the feed (outside the timed call); run(feed) -> first output."""

    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], np.ndarray]
    config: str


def open_runner(stack: str, path: pathlib.Path, threads: int) -> Runner:
    if stack in ("edgeq", "edgeq-tuned"):
        return _edgeq_runner(path, None if stack == "edgeq-tuned" else threads)
    if stack.startswith("ort-"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return Runner(lambda x: {name: np.ascontiguousarray(x, np.float32)}, lambda f: sess.run(None, f)[0],
                      f"onnxruntime {ort.__version__} CPU, {threads} intra-op threads, no spinning")
    if stack in ("openvino", "openvino-tflite"):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        prepare = (lambda x: np.ascontiguousarray(x, np.float32)) if stack == "openvino" else _tflite_quantizer(path)
        if stack == "openvino-tflite":  # its TFLite frontend reads the batch as dynamic: fix it to 1 like the others
            dims = model.inputs[0].get_partial_shape()
            model.reshape([1] + [dims[i].get_length() for i in range(1, dims.rank.get_length())])
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
        req = compiled.create_infer_request()
        out = compiled.outputs[0]
        return Runner(lambda x: {0: prepare(x)}, lambda f: req.infer(f)[out],
                      f"openvino {ov.get_version()} CPU, INFERENCE_NUM_THREADS={threads}, "
                      f"hint {compiled.get_property('PERFORMANCE_HINT')}, "
                      f"precision {compiled.get_property('INFERENCE_PRECISION_HINT')}")
    raise ValueError(f"unknown stack {stack!r}; expected one of {', '.join(STACKS)}")


def _edgeq_runner(path: pathlib.Path, threads: int | None) -> Runner:
    """edgeq.load as a user calls it: explicit threads for the default model, nothing for the tuned one."""
    import edgeq

    model = edgeq.load(str(path)) if threads is None else edgeq.load(str(path), num_threads=threads)
    rep = model.delegate_report
    return Runner(_tflite_quantizer(path), lambda f: model.run(f)[0],
                  f"edgeq.load: {rep.delegate}, {rep.delegated_nodes}/{rep.total_nodes} nodes delegated"
                  + (f", threads {threads}" if threads else f" ({dict(rep.details).get('tuned', 'untuned')})"))


def _tflite_quantizer(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    """Float NHWC -> the .tflite's input tensor (its scale and zero point; as is for a float input)."""
    from edgeq.modelinfo import TensorSpec
    from edgeq.tflite_format import load_model_file

    _, mf = load_model_file(str(path))
    q = TensorSpec.from_tensor(mf.main.tensors[mf.main.inputs[0]])
    scale, zero, dtype = q.scale or 0.0, q.zero_point or 0, np.dtype(q.dtype)

    def prepare(x: np.ndarray) -> np.ndarray:
        if not scale:
            return x.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return prepare
