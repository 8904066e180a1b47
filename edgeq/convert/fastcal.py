"""Fast calibration: TFLite's activation ranges recorded by running the float model through XNNPACK.

TensorFlow Lite's calibrator runs every sample through its builtin kernels, one thread, logging each
op's tensors: for MobileNetV2-224 and 200 images that is ~20 s, two thirds of a conversion. The ranges
it records are plain min/max over the samples, so edgeq records them itself on the same float graph:

1. TFLite's calibrator runs on the first sample only (``_experimental_calibrate_only``): that gives the
   exact float graph the quantizer will see, which tensors get a range, and a reference for step 3;
2. that model, with every ranged tensor made a graph output, runs under XNNPACK (multi-threaded) over
   all samples, keeping each tensor's min/max;
3. the first sample's ranges are checked against TFLite's own; on any mismatch edgeq says so and
   calibrates with TFLite's calibrator instead.

One quirk is reproduced on purpose: TFLite logs an op's inputs *after* the op ran, so when the memory
planner lets an op write its output over an input (an in-place ADD of a residual block), that input's
recorded range also covers the output's. edgeq finds those pairs from the builtin interpreter's tensor
addresses and unites the ranges the same way, so the quantized model keeps TFLite's scales.

``EDGEQ_CALIBRATOR=tflite`` forces TFLite's calibrator (e.g. to compare the two).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..tflite_format import load_model_file
from .recipes import Recipe

log = logging.getLogger(__name__)

ENV = "EDGEQ_CALIBRATOR"
TOLERANCE = 1e-3   # |XNNPACK - TFLite| on the first sample, relative to the tensor's range width
Ranges = dict[int, tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class FastCalibration:
    """The calibrated float model (ranges written in) and what happened: ``used`` False means fell back."""

    data: bytes
    used: bool
    samples: int
    note: str = ""


def calibrator_choice() -> str:
    """'xnnpack' (default) or 'tflite', from EDGEQ_CALIBRATOR."""
    choice = os.environ.get(ENV, "xnnpack").strip().lower() or "xnnpack"
    if choice not in ("xnnpack", "tflite"):
        from ..errors import UsageError

        raise UsageError(f"{ENV}={choice!r}: expected 'xnnpack' (fast, the default) or 'tflite' "
                         "(TensorFlow Lite's own calibrator)")
    return choice


def fast_calibration_for(rec: Recipe) -> bool:
    """int8-activation recipes calibrate through XNNPACK unless EDGEQ_CALIBRATOR=tflite."""
    return rec.activations == "int8" and rec.needs_calibration and calibrator_choice() == "xnnpack"


def calibrate_fast(converter: Any, run_calibration: Callable[[], bytes],
                   num_threads: int | None = None) -> FastCalibration:
    """Calibrate ``converter`` (configured by edgeq, representative dataset set): XNNPACK ranges checked
    against TFLite's on the first sample.

    run_calibration: runs the converter in calibrate-only mode and returns the calibrated float model.
    """
    rep = converter.representative_dataset
    rep = getattr(rep, "input_gen", rep)  # TFLite wraps it in a RepresentativeDataset once it has run
    first = _first_sample(rep)
    converter.representative_dataset = lambda: iter([first])
    try:
        seed = run_calibration()
    finally:
        converter.representative_dataset = rep
    why = unsupported(seed)
    if why is None:
        ranges, first_ranges, count = record_ranges(seed, rep, num_threads)
        why = mismatch(seed, first_ranges)
        if why is None:
            return FastCalibration(write_ranges(seed, ranges), True, count)
    note = f"fast calibration not used ({why}); calibrated with TensorFlow Lite's calibrator instead (slower)"
    log.info("%s", note)  # a warning of the conversion result: finish_conversion logs it
    return FastCalibration(run_calibration(), False, 0, note)


def _first_sample(rep: Callable[[], Iterable[Sequence[np.ndarray]]]) -> Sequence[np.ndarray]:
    gen = iter(rep())
    try:
        return next(gen)
    except StopIteration:  # not an EdgeqError: run_quantizer then blames the data with the skip reasons
        raise ValueError("the calibration data gave no usable sample") from None
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()


def ranged_tensors(data: bytes) -> Ranges:
    """{tensor index: (min, max)} of every tensor the calibrator gave a range."""
    from ..metadata import unpack_model

    m = unpack_model(data)
    out = {}
    for i, t in enumerate(m.subgraphs[0].tensors):
        q = t.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            out[i] = (float(q.min[0]), float(q.max[0]))
    return out


def unsupported(seed: bytes) -> str | None:
    """Why the XNNPACK route cannot see every ranged tensor (None when it can)."""
    _, mf = load_model_file(seed)
    if len(mf.subgraphs) > 1:
        return f"the model has {len(mf.subgraphs)} subgraphs (control flow)"
    sg = mf.main
    visible = set(sg.inputs) | {o for op in sg.operators for o in op.outputs}
    hidden = sorted(set(ranged_tensors(seed)) - visible)
    if hidden:
        return f"{len(hidden)} ranged tensor(s) are op intermediates, e.g. {sg.tensors[hidden[0]].name!r}"
    return None


def exposed(seed: bytes, tensors: Iterable[int]) -> bytes:
    """The model with the given tensors appended to its outputs, so XNNPACK must produce them."""
    from ..metadata import pack_model, unpack_model

    m = unpack_model(seed)
    sg = m.subgraphs[0]
    outs = [int(o) for o in sg.outputs]
    sg.outputs = outs + [i for i in tensors if i not in set(outs)]
    return pack_model(m)


def inplace_pairs(seed: bytes, shapes: Sequence[Sequence[int]]) -> dict[int, tuple[int, ...]]:
    """{input tensor: outputs written over it}: ops the builtin memory planner runs in place.

    Read from the tensor addresses of the builtin interpreter (no XNNPACK) TFLite's calibrator uses:
    a consumer's output at its input's address can only be an in-place op (the input is live).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=seed,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for d, shape in zip(interp.get_input_details(), shapes):
        interp.resize_tensor_input(d["index"], list(shape), strict=False)
    interp.allocate_tensors()
    addr: dict[int, int] = {}
    for d in interp.get_tensor_details():
        try:
            view = interp.tensor(d["index"])()
        except ValueError:  # no data (e.g. an optional input)
            continue
        if isinstance(view, np.ndarray) and view.size:  # (a 0-d tensor comes back as a numpy scalar)
            addr[d["index"]] = view.ctypes.data
        del view
    _, mf = load_model_file(seed)
    pairs: dict[int, list[int]] = {}
    for op in mf.main.operators:
        for t in op.inputs:
            for o in op.outputs:
                if t >= 0 and o != t and t in addr and addr.get(o) == addr[t]:
                    pairs.setdefault(t, []).append(o)
    return {t: tuple(os_) for t, os_ in pairs.items()}


def record_ranges(seed: bytes, rep: Callable[[], Iterable[Sequence[np.ndarray]]],
                  num_threads: int | None = None) -> tuple[Ranges, Ranges, int]:
    """(ranges over all samples, ranges of the first sample, sample count), TFLite's in-place rule applied.

    Long because it is one loop over the samples that must not hold interpreter buffers between invokes.
    """
    from ai_edge_litert.interpreter import Interpreter

    wanted = sorted(ranged_tensors(seed))
    threads = num_threads or min(4, os.cpu_count() or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=exposed(seed, wanted), num_threads=threads)
    details = interp.get_input_details()
    inputs = [d["index"] for d in details]
    lo = np.full(len(wanted), np.inf)
    hi = np.full(len(wanted), -np.inf)
    first: Ranges = {}
    shapes: list[tuple[int, ...]] | None = None
    pairs: dict[int, tuple[int, ...]] = {}
    count = 0
    for sample in rep():
        arrays = [np.asarray(a, d["dtype"]) for a, d in zip(sample, details)]
        if shapes != [a.shape for a in arrays]:
            shapes = [a.shape for a in arrays]
            for i, a in zip(inputs, arrays):
                interp.resize_tensor_input(i, list(a.shape), strict=False)
            interp.allocate_tensors()
        for i, a in zip(inputs, arrays):
            interp.set_tensor(i, a)
        interp.invoke()
        for k, t in enumerate(wanted):
            v = interp.tensor(t)()
            lo[k] = min(lo[k], float(v.min()))
            hi[k] = max(hi[k], float(v.max()))
            del v
        if count == 0:
            first = {t: (float(lo[k]), float(hi[k])) for k, t in enumerate(wanted)}
            pairs = inplace_pairs(seed, shapes)
        count += 1
    total = {t: (float(lo[k]), float(hi[k])) for k, t in enumerate(wanted)}
    return unite_inplace(total, pairs), unite_inplace(first, pairs), count


def unite_inplace(ranges: Ranges, pairs: dict[int, tuple[int, ...]]) -> Ranges:
    """Each in-place input's range widened by the outputs written over it (what TFLite records)."""
    out = dict(ranges)
    for t, outs in pairs.items():
        if t not in out:
            continue
        lo, hi = out[t]
        for o in outs:
            if o in ranges:
                lo, hi = min(lo, ranges[o][0]), max(hi, ranges[o][1])
        out[t] = (lo, hi)
    return out


def mismatch(seed: bytes, first: Ranges) -> str | None:
    """None when the first sample's XNNPACK ranges match TFLite's recorded ones, else which tensor differs."""
    expected = ranged_tensors(seed)
    for t, (lo, hi) in expected.items():
        got = first.get(t)
        tol = TOLERANCE * max(hi - lo, 1e-6)
        if got is None or abs(got[0] - lo) > tol or abs(got[1] - hi) > tol:
            name = load_model_file(seed)[1].main.tensors[t].name
            return (f"tensor {t} {name!r}: TFLite recorded [{lo:.6g}, {hi:.6g}] on the first sample, XNNPACK "
                    f"gave {'nothing' if got is None else f'[{got[0]:.6g}, {got[1]:.6g}]'}")
    return None


def write_ranges(seed: bytes, ranges: Ranges) -> bytes:
    """The seed model with its recorded min/max replaced by ``ranges``."""
    from ..metadata import pack_model, unpack_model

    m = unpack_model(seed)
    for i, t in enumerate(m.subgraphs[0].tensors):
        if i in ranges and t.quantization is not None and t.quantization.min is not None:
            t.quantization.min = np.array([ranges[i][0]], np.float32)
            t.quantization.max = np.array([ranges[i][1]], np.float32)
    return pack_model(m)
