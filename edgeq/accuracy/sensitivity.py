"""``edgeq analyze``: which layers does int8 quantization hurt, and how much would floating each help?

Per activation tensor, from TensorFlow's ``QuantizationDebugger`` (NumericVerify ops compare each
quantized op's output with the float op run on the same inputs): RMSE relative to the tensor's
int8 scale (~0.29 is pure rounding error; much more means clipping or a badly fitting range),
SQNR in dB, max abs error. Then, model-level: the output SQNR and top-1 agreement of the model
when that tensor *alone* is kept float (its producer and consumers denylisted), against the
fully quantized model. The ranking is by that model-level gain: what floating the layer buys.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..convert.converter import prepared_converter
from ..convert.plan import calibration_dataset
from ..convert.quantize import CalibratedModel, check_recipe, input_batches
from ..convert.recipes import Recipe, get_recipe
from ..errors import UsageError
from ..preprocess import Preprocess
from .mixed import Score, Scorer


@dataclasses.dataclass(frozen=True)
class LayerReport:
    name: str                   # activation tensor (= debugger node name)
    op: str
    rmse_over_scale: float | None
    sqnr_db: float | None       # of this tensor alone (debugger, float op vs quantized op)
    max_abs_error: float | None
    scale: float | None
    float_alone_sqnr_db: float  # model output SQNR with this tensor alone kept float
    float_alone_agreement: float
    gain_db: float              # float_alone_sqnr_db minus the fully quantized model's output SQNR
    float_nodes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["float_nodes"] = list(self.float_nodes)
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True)
class AnalysisReport:
    model: str
    samples: int
    recipe: str
    preprocess: Preprocess
    quantized: Score            # the fully quantized model against float, on the calibration samples
    layers: tuple[LayerReport, ...]   # most helpful to keep float first

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "samples": self.samples, "recipe": self.recipe,
                "preprocess": self.preprocess.to_dict(), "quantized": self.quantized.to_dict(),
                "layers": [layer.to_dict() for layer in self.layers]}


def _finite(v: float) -> float | str:
    return round(v, 4) if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def tensor_power(cal: CalibratedModel, samples: np.ndarray) -> dict[str, float]:
    """Mean square of every op output of the float model over the samples (the SQNR signal power).

    The debugger's direct float/quantized comparison needs every tensor preserved, which its
    converter route does not do; its per-layer MSE plus this signal power gives the same SQNR.
    """
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # preserving all tensors is the point here, not a debugging accident
        warnings.simplefilter("ignore", UserWarning)
        interp = Interpreter(model_content=cal.data, experimental_preserve_all_tensors=True, num_threads=1)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *samples.shape[1:]], strict=False)
    interp.allocate_tensors()
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    outputs = [o for op in interp._get_ops_details() for o in op["outputs"]]  # noqa: SLF001 - op graph
    sums = dict.fromkeys(outputs, 0.0)
    for x in samples:
        interp.set_tensor(inp["index"], x[None].astype(np.float32))
        interp.invoke()
        for i in outputs:
            v = interp.get_tensor(i).astype(np.float64)
            sums[i] += float(np.mean(v * v))
    return {names[i]: s / len(samples) for i, s in sums.items()}


@contextlib.contextmanager
def open_converter(model: Any, calibration: Any, rec: Recipe, preprocess: Preprocess | None,
                   preprocess_options: dict[str, Any] | None, num_samples: int, seed: int,
                   quiet: bool = True) -> Iterator[tuple[Any, Any, Callable, Preprocess]]:
    """(tf, configured TFLiteConverter, representative dataset, preprocessing) as edgeq.convert sets them up."""
    dataset = calibration_dataset(calibration, num_samples=num_samples, seed=seed)
    with prepared_converter(model, dataset, rec, preprocess, preprocess_options, quiet=quiet) as prep:
        yield prep.tf, prep.converter, prep.representative, prep.preprocess


def analyze(model: Any, calibration: Any, *, recipe: str | Recipe = "int8", preprocess: Preprocess | None = None,
            preprocess_options: dict[str, Any] | None = None, num_samples: int = 200, seed: int = 0,
            quiet: bool = True, progress: Callable[[str], None] | None = None) -> AnalysisReport:
    """Per-layer quantization sensitivity of a float Keras/SavedModel model on calibration data."""
    from .._native import quiet_native_stderr

    rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    check_recipe(rec)
    say = progress or (lambda msg: None)
    with open_converter(model, calibration, rec, preprocess, preprocess_options, num_samples, seed, quiet) as (
            tf, converter, rep, pre):
        say("calibrating and running the quantization debugger")
        options = tf.lite.experimental.QuantizationDebugOptions()
        with quiet_native_stderr(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the debugger uses tf.lite.Interpreter (deprecated)
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=rep,
                                                                 debug_options=options)
            debugger.run()
        stats = _debugger_rows(debugger)
        cal = CalibratedModel(tf, debugger.calibrated_model, rec)
        samples = np.concatenate(list(input_batches(rep)()))
    with quiet_native_stderr(quiet):
        return _rank(model, rec, pre, cal, samples, stats, say)


def _rank(model: Any, rec: Recipe, pre: Preprocess, cal: CalibratedModel, samples: np.ndarray,
          stats: dict[str, dict[str, float]], say: Callable[[str], None]) -> AnalysisReport:
    power = tensor_power(cal, samples)
    if not len(cal.layers()):
        raise UsageError(f"{model}: no quantizable activation tensors found")
    scorer = Scorer(cal.data, samples, None)
    full = scorer.score(cal.quantize())
    say(f"fully quantized: output SQNR {full.sqnr_db:.1f} dB, top-1 agreement {full.agreement:.2f}% "
        f"on {len(samples)} samples")
    layers = []
    for layer in cal.layers():
        s = scorer.score(cal.quantize(layer.float_nodes))
        row = stats.get(layer.name, {})
        mse, scale = row.get("mean_squared_error"), row.get("scale")
        layers.append(LayerReport(
            name=layer.name, op=layer.op,
            rmse_over_scale=math.sqrt(mse) / scale if mse is not None and scale else None,
            sqnr_db=_sqnr(power.get(layer.name), mse), max_abs_error=row.get("max_abs_error"), scale=scale,
            float_alone_sqnr_db=s.sqnr_db, float_alone_agreement=s.agreement,
            gain_db=s.sqnr_db - full.sqnr_db, float_nodes=layer.float_nodes))
    layers.sort(key=lambda r: (-r.gain_db, -(r.rmse_over_scale or 0)))
    return AnalysisReport(str(model), len(samples), rec.name, pre, full, tuple(layers))


def _sqnr(signal: float | None, noise: float | None) -> float | None:
    if signal is None or noise is None:
        return None
    return 10 * math.log10(max(signal, 1e-30) / max(noise, 1e-30))


def _debugger_rows(debugger: Any) -> dict[str, dict[str, float]]:
    """layer_statistics_dump parsed: {tensor_name: {metric: value}}."""
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    out = {}
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        vals = {}
        for k, v in row.items():
            if k in ("op_name", "tensor_name"):
                continue
            try:
                vals[k] = float(v)
            except (TypeError, ValueError):
                pass
        out[row["tensor_name"]] = vals
    return out


def format_analysis(r: AnalysisReport, top: int = 15) -> str:
    q = r.quantized
    lines = [f"{r.model}: {r.recipe} on {r.samples} calibration samples ({r.preprocess.describe()})",
             f"fully quantized vs float: output SQNR {q.sqnr_db:.2f} dB, top-1 agreement {q.agreement:.2f}%",
             f"{'#':>2} {'op':<18} {'RMSE/scale':>10} {'SQNR dB':>8} {'float-alone: out SQNR':>22} {'gain dB':>8} "
             f"{'agree %':>8}  tensor"]
    for i, layer in enumerate(r.layers[:top], 1):
        rs = f"{layer.rmse_over_scale:10.3f}" if layer.rmse_over_scale is not None else f"{'-':>10}"
        sq = f"{layer.sqnr_db:8.2f}" if layer.sqnr_db is not None else f"{'-':>8}"
        lines.append(f"{i:>2} {layer.op:<18} {rs} {sq} {layer.float_alone_sqnr_db:22.2f} {layer.gain_db:8.2f} "
                     f"{layer.float_alone_agreement:8.2f}  {_short(layer.name)}")
    if len(r.layers) > top:
        lines.append(f"   … {len(r.layers) - top} more (see --json)")
    return "\n".join(lines)


def _short(name: str, width: int = 60) -> str:
    first = name.split(";")[0]
    return first if len(first) <= width else "…" + first[-(width - 1):]


def plot_analysis(r: AnalysisReport, path: str | os.PathLike, top: int = 20) -> None:
    """Horizontal bar chart of the model-level SQNR gain per layer, written atomically as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'edgeq[plot]'") from exc
    from ..fileio import atomic_path

    layers = list(r.layers[:top])[::-1]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(layers) + 1.8))
    ax.barh([f"{_short(x.name, 45)} ({x.op})" for x in layers], [x.gain_db for x in layers], color="#d9534f")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("output SQNR gain (dB), tensor alone kept float")
    ax.set_title(f"{os.path.basename(r.model)}: {r.recipe} sensitivity\n"
                 f"(fully quantized output SQNR {r.quantized.sqnr_db:.1f} dB)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
