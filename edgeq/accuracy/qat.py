"""``edgeq.qat``: quantization-aware fine-tuning, then edgeq's converter to a full-integer .tflite.

When post-training quantization costs too much accuracy and a mixed model is not an option (the
Edge TPU needs every op in 8 bits), fine-tune the model with simulated int8 (``fakequant``) on the
user's labelled data, fed through the same preprocessing contract as conversion and evaluation.
Each epoch reports the fake-quant validation top-1; the best epoch's weights are kept (saved as
``OUT.qat.keras``), training stops early when validation stops improving, and Ctrl-C stops
training and still converts and saves the best model so far. The result is converted by
``edgeq.convert`` (calibrated on training images, metadata embedded) and measured on the
validation data against the original float model.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..convert.converter import ConversionResult, convert
from ..convert.plan import make_recipe, read_labels, recipe_path_for
from ..convert.source import describe_source_model, infer_preprocess, load_keras
from ..errors import UsageError
from ..fileio import check_outputs, private_tempdir, write_bytes_atomic
from ..preprocess import Preprocess
from .data import EvalData, read_eval_data
from .evaluate import evaluate

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    epoch: int               # 0: before training
    loss: float | None
    val_top1: float          # percent, fake-quant model on the validation data

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QatResult:
    output: str
    checkpoint: str                  # the best epoch's float weights (OUT.qat.keras)
    history: tuple[EpochRecord, ...]
    best_epoch: int
    stopped: str                     # "completed", "early stop" or "interrupted"
    float_val_top1: float            # the original float model on the validation data
    int8_val_top1: float             # the converted .tflite on the validation data
    conversion: ConversionResult

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "checkpoint": self.checkpoint, "best_epoch": self.best_epoch,
                "stopped": self.stopped, "float_val_top1": self.float_val_top1,
                "int8_val_top1": self.int8_val_top1,
                "history": [h.to_dict() for h in self.history], "conversion": self.conversion.to_dict()}


def qat(model: Any, train_data: Any, val_data: Any, output: str | os.PathLike, *, epochs: int = 3,
        lr: float = 1e-4, batch_size: int = 64, patience: int = 2, recipe: str = "int8",
        labels: Sequence[str] | str | os.PathLike | None = None, preprocess: Preprocess | None = None,
        preprocess_options: dict[str, Any] | None = None, calibration_samples: int = 200, seed: int = 0,
        force: bool = False, target: str | None = None,
        progress: Callable[[str], None] | None = None) -> QatResult:
    """Fine-tune `model` (.keras/.h5 path or Keras 3 model) with fake int8 quantization on labelled
    `train_data`, keep the epoch with the best fake-quant top-1 on `val_data`, convert it to a
    full-integer .tflite at `output` (recipe int8 or uint8; target "edgetpu": batch 1, static shapes, checked).

    train_data/val_data: anything ``edgeq eval --data`` reads (class folders, IDX, CSV/JSON lists) or
    an EvalData (e.g. ``read_eval_data(images, labels)``)."""
    say = progress or log.info
    _check_options(epochs, lr, batch_size, patience, recipe)
    out = pathlib.Path(output)
    checkpoint = out.with_name(out.stem + ".qat.keras")
    kind, desc = describe_source_model(model)
    check_outputs([desc if kind != "keras_model" else None], force=force,
                  created={"output": out, "recipe file": recipe_path_for(out), "checkpoint": checkpoint})
    train, val = read_eval_data(train_data), read_eval_data(val_data)
    for name, d in (("training", train), ("validation", val)):
        if not d.labelled:
            raise UsageError(f"the {name} data {d.source} has no labels; QAT needs labelled images "
                             "(class folders, IDX files or a CSV/JSON list of path,label)")
    keras_model = load_keras(desc) if kind == "keras_file" else model
    pre, warnings = infer_preprocess(keras_model, kind, preprocess, dict(preprocess_options or {}))
    for w in warnings:
        say(f"warning: {w}")
    label_list = read_labels(labels)
    n_classes = int(np.prod(keras_model.outputs[0].shape[1:]))
    x_train, y_train = tensors(train, pre, label_list, n_classes)
    x_val, y_val = tensors(val, pre, label_list, n_classes)
    say(f"QAT: {len(x_train)} training and {len(x_val)} validation samples, {pre.describe()}")
    folded, history, best, stopped = train_fake_quant(keras_model, x_train, y_train, x_val, y_val, epochs=epochs,
                                                      lr=lr, batch_size=batch_size, patience=patience, seed=seed,
                                                      say=say)
    save_checkpoint(folded, checkpoint, force)
    calib = x_train[np.random.default_rng(seed).permutation(len(x_train))[:calibration_samples]]
    conv = convert(folded, calib, out, recipe=make_recipe(recipe, target=target), preprocess=pre,
                   labels=label_list or None, force=force, target=target)
    report = evaluate(keras_model, [conv.output], val)
    say(f"converted {conv.output}: int8 validation top-1 {report.models[1].top1:.2f}% "
        f"(float model {report.models[0].top1:.2f}%)")
    return QatResult(str(out), str(checkpoint), tuple(history), best, stopped, report.models[0].top1,
                     report.models[1].top1, conv)


def _check_options(epochs: int, lr: float, batch_size: int, patience: int, recipe: str) -> None:
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise UsageError(f"--epochs, batch size and patience must be >= 1 (got {epochs}, {batch_size}, {patience})")
    if not lr > 0:
        raise UsageError(f"--lr must be > 0, got {lr}")
    if recipe not in ("int8", "uint8"):
        raise UsageError(f"QAT makes full-integer 8-bit models: --recipe int8 or uint8, not {recipe!r}")


def tensors(data: EvalData, pre: Preprocess, labels: Sequence[str], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed float inputs and class indices, exactly as conversion and evaluation prepare them."""
    x = np.stack([pre.apply(img, data.input_color) for _, img in data.images()]).astype(np.float32)
    y = data.with_model_classes(labels, n_classes).labels
    return x, np.asarray(y, np.int64)


def train_fake_quant(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                     epochs: int, lr: float, batch_size: int, patience: int, seed: int,
                     say: Callable[[str], None]) -> tuple[Any, list[EpochRecord], int, str]:
    """(the folded float model holding the best epoch's weights, history, best epoch, how training ended)."""
    import keras

    from .fakequant import fold_batchnorm, quantize_model

    keras.utils.set_random_seed(seed)
    folded = fold_batchnorm(model)
    q = quantize_model(folded)
    last = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    q.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=last != "softmax"))
    for i in range(0, min(len(x_train), 20 * batch_size), batch_size):   # activation ranges before epoch 0
        q(x_train[i:i + batch_size], training=True)
    start = 100.0 * float(q.evaluate(x_val, y_val, batch_size=256, verbose=0, return_dict=True)["accuracy"])
    say(f"epoch 0 (before QAT): fake-quant validation top-1 {start:.2f}%")
    keeper = _keeper_class()(folded, start, patience, epochs, say)
    stopped = "completed"
    try:
        q.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
              validation_data=(x_val, y_val), validation_batch_size=256, callbacks=[keeper])
    except KeyboardInterrupt:
        stopped = "interrupted"
        say(f"interrupted: converting the best model so far (epoch {keeper.best_epoch})")
    if keeper.early and stopped == "completed":
        stopped = "early stop"
    folded.set_weights(keeper.best_weights)
    return folded, keeper.history, keeper.best_epoch, stopped


def _keeper_class() -> type:
    """A Keras callback: per-epoch progress, the best weights kept, early stop (built lazily: Keras)."""
    import keras

    class BestKeeper(keras.callbacks.Callback):
        def __init__(self, folded: Any, start: float, patience: int, epochs: int, say: Callable[[str], None]):
            super().__init__()
            self.folded, self.patience, self.epochs, self.say = folded, patience, epochs, say
            self.best, self.best_epoch, self.best_weights = start, 0, folded.get_weights()
            self.history = [EpochRecord(0, None, start)]
            self.early = False

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            top1 = 100.0 * float(logs.get("val_accuracy", 0.0))
            self.history.append(EpochRecord(epoch + 1, float(logs.get("loss", float("nan"))), top1))
            better = top1 > self.best
            if better:
                self.best, self.best_epoch, self.best_weights = top1, epoch + 1, self.folded.get_weights()
            self.say(f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f}, fake-quant "
                     f"validation top-1 {top1:.2f}%" + (" (best so far, kept)" if better else ""))
            if epoch + 1 - self.best_epoch >= self.patience:
                self.early = True
                self.model.stop_training = True
                self.say(f"early stop: no better validation top-1 for {self.patience} epoch(s)")

    return BestKeeper


def save_checkpoint(model: Any, path: pathlib.Path, force: bool) -> pathlib.Path:
    """The best epoch's float model as .keras, written atomically (exclusive unless force)."""
    with private_tempdir("qat") as tmp:
        tmp_file = pathlib.Path(tmp) / "best.keras"
        model.save(tmp_file)
        return write_bytes_atomic(path, tmp_file.read_bytes(), exclusive=not force)
