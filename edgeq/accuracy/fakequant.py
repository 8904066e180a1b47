"""Native Keras 3 fake quantization that simulates what TFLite's int8 converter will do.

Why native and not TensorFlow Model Optimization: tfmot's ``quantize_model`` needs legacy Keras
(tf-keras with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow loads), cannot load Keras 3 ``.keras``
files, and its result is a tf-keras model that edgeq's converter (Keras 3) cannot take back. The
simulation here mirrors the converter's choices, layer by layer, on the user's own Keras 3 model:

- BatchNormalization after a convolution/dense is folded into it first (as the converter folds it);
- weights: symmetric int8 per output channel, levels -127..127 (TFLite's per-channel scheme);
- activations: asymmetric int8 per tensor, 256 levels over a min/max range tracked as a moving
  average during training (the converter calibrates min/max); the range always contains 0;
- ReLU/ReLU6 fused into the producing op (one quantized tensor), other activations (hard-swish,
  sigmoid, softmax, ...) quantized before and after, as separate TFLite ops are;
- gradients pass straight through the rounding and stop outside the range (clipped values).

The trained weights stay in the plain (folded) float model, which edgeq's converter then
quantizes with calibration like any other model.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FUSED_ACTIVATIONS = ("linear", "relu", "relu6")
PASS_THROUGH = ("InputLayer", "Reshape", "Flatten", "MaxPooling2D", "Dropout", "ZeroPadding2D", "Identity",
                "SpatialDropout2D", "Cropping2D")
WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
EMA_MOMENTUM = 0.9


def _layers_module() -> Any:
    import keras

    return keras


def fake_quant_weights(kernel: Any, axes: tuple[int, ...]) -> Any:
    """Symmetric per-channel int8 (-127..127) over the reduced `axes`, straight-through gradient."""
    from keras import ops

    scale = ops.maximum(ops.max(ops.abs(kernel), axis=axes, keepdims=True), 1e-12) / 127.0
    q = ops.round(kernel / scale) * scale
    return kernel + ops.stop_gradient(q - kernel)


def build_classes() -> dict[str, type]:
    """The Keras layer classes (built lazily: importing edgeq never imports Keras).

    Long because the two classes must be defined where Keras is imported, and each is short."""
    keras = _layers_module()
    from keras import ops

    class ActivationQuantizer(keras.layers.Layer):
        """Per-tensor asymmetric int8 with a moving-average min/max range."""

        def build(self, input_shape: Any) -> None:
            self.lo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="range_min")
            self.hi = self.add_weight(shape=(), initializer="zeros", trainable=False, name="range_max")
            self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

        def call(self, x: Any, training: bool | None = None) -> Any:
            if training:
                bmin, bmax = ops.minimum(ops.min(x), 0.0), ops.maximum(ops.max(x), 0.0)
                first = ops.equal(self.seen, 0.0)
                self.lo.assign(ops.where(first, bmin, EMA_MOMENTUM * self.lo + (1 - EMA_MOMENTUM) * bmin))
                self.hi.assign(ops.where(first, bmax, EMA_MOMENTUM * self.hi + (1 - EMA_MOMENTUM) * bmax))
                self.seen.assign(1.0)
            lo, hi = ops.minimum(self.lo, 0.0), ops.maximum(self.hi, self.lo + 1e-6)
            scale = (hi - lo) / 255.0
            zero = ops.round(-lo / scale)            # nudged so that 0 is exact, as TFLite does
            xc = ops.clip(x, lo, hi)
            q = (ops.clip(ops.round(xc / scale) + zero, 0.0, 255.0) - zero) * scale
            out = xc + ops.stop_gradient(q - xc)
            return ops.where(ops.greater(self.seen, 0.0), out, x)

    class QuantizedLayer(keras.layers.Layer):
        """A layer of the float model run with fake-quantized weights and outputs (weights shared)."""

        def __init__(self, inner: Any, **kwargs: Any):
            super().__init__(name=f"fq_{inner.name}", **kwargs)
            self.inner = inner
            kind = type(inner).__name__
            self.kind = kind
            act = getattr(getattr(inner, "activation", None), "__name__", "linear")
            self.act_name = act
            self.pre_q = ActivationQuantizer(name=f"fq_{inner.name}_pre") if (
                kind in WEIGHTED and act not in FUSED_ACTIVATIONS) else None
            through = kind in PASS_THROUGH or getattr(inner, "edgeq_folded", False)
            self.out_q = None if through else ActivationQuantizer(name=f"fq_{inner.name}_out")

        def build(self, input_shape: Any) -> None:
            if not self.inner.built:
                self.inner.build(input_shape)
            for q in (self.pre_q, self.out_q):
                if q is not None:
                    q.build(None)
            self.built = True

        def call(self, inputs: Any, training: bool | None = None, **kwargs: Any) -> Any:
            if self.kind not in WEIGHTED:
                y = self.inner(inputs, **kwargs)   # e.g. a mask the original call was given
            else:
                y = self._weighted(inputs)
                if self.pre_q is not None:
                    y = self.pre_q(y, training=training)
                y = self.inner.activation(y)
            return self.out_q(y, training=training) if self.out_q is not None else y

        def _weighted(self, x: Any) -> Any:
            layer = self.inner
            if self.kind == "Dense":
                y = ops.matmul(x, fake_quant_weights(layer.kernel, (0,)))
            elif self.kind == "Conv2D":
                y = ops.conv(x, fake_quant_weights(layer.kernel, (0, 1, 2)), strides=layer.strides,
                             padding=layer.padding, data_format=layer.data_format, dilation_rate=layer.dilation_rate)
            else:  # DepthwiseConv2D: TFLite's channel is input channel x multiplier
                y = ops.depthwise_conv(x, fake_quant_weights(layer.kernel, (0, 1)), strides=layer.strides,
                                       padding=layer.padding, data_format=layer.data_format,
                                       dilation_rate=layer.dilation_rate)
            if layer.use_bias:
                y = y + (layer.bias if self.kind != "DepthwiseConv2D" else ops.reshape(layer.bias, (-1,)))
            return y

    return {"ActivationQuantizer": ActivationQuantizer, "QuantizedLayer": QuantizedLayer}


def fold_batchnorm(model: Any) -> Any:
    """A copy of the model with every BatchNormalization that directly follows a Conv2D/DepthwiseConv2D/Dense
    (its only consumer, with no activation between) folded into that layer, as the converter folds it. The
    BatchNormalization layers stay, frozen as exact identities (so the graph and layer names are unchanged)."""
    keras = _layers_module()
    follows = _foldable_pairs(model)

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if layer.name in follows:
            config["use_bias"] = True
        return type(layer).from_config(config)

    out = keras.models.clone_model(model, clone_function=clone)
    folded_bn = set(follows.values())
    for layer in model.layers:
        if not layer.weights:
            continue
        target = out.get_layer(layer.name)
        if layer.name in folded_bn:
            params = _bn_params(layer)
            identity = {"gamma": np.ones_like(params["moving_mean"]), "beta": np.zeros_like(params["moving_mean"]),
                        "moving_mean": np.zeros_like(params["moving_mean"]),
                        "moving_variance": np.full_like(params["moving_variance"], 1.0 - layer.epsilon)}
            target.set_weights([identity[v.path.split("/")[-1]] for v in target.weights])
            target.trainable = False
            target.edgeq_folded = True   # fake quant passes it through: the converter removes it
            continue
        target.set_weights(_fold(layer, model.get_layer(follows[layer.name])) if layer.name in follows
                           else layer.get_weights())
    return out


def _bn_params(bn: Any) -> dict[str, np.ndarray]:
    return dict(zip([v.path.split("/")[-1] for v in bn.weights], bn.get_weights()))


def _foldable_pairs(model: Any) -> dict[str, str]:
    """{conv/dense layer name: the BatchNormalization layer name that follows it}."""
    pairs = {}
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        inbound = [n for n in getattr(layer, "_inbound_nodes", [])]
        if len(inbound) != 1:
            continue
        parents = [t._keras_history.operation for t in inbound[0].input_tensors]   # noqa: SLF001 - graph walk
        if len(parents) != 1:
            continue
        p = parents[0]
        act = getattr(getattr(p, "activation", None), "__name__", "linear")
        if type(p).__name__ in WEIGHTED and act == "linear" and len(p._outbound_nodes) == 1:  # noqa: SLF001
            pairs[p.name] = layer.name
    return pairs


def _fold(layer: Any, bn: Any) -> list[np.ndarray]:
    """Kernel and bias of `layer` with `bn` (inference mode) folded in."""
    w = layer.get_weights()
    depthwise = type(layer).__name__ == "DepthwiseConv2D"
    channels = w[0].shape[2] * w[0].shape[3] if depthwise else w[0].shape[-1]
    kernel, bias = w[0], (w[1] if layer.use_bias else np.zeros(channels, np.float32))
    params = _bn_params(bn)
    gamma = params.get("gamma", np.ones_like(params["moving_mean"]))
    beta = params.get("beta", np.zeros_like(params["moving_mean"]))
    factor = gamma / np.sqrt(params["moving_variance"] + bn.epsilon)
    if depthwise:
        kernel = kernel * factor.reshape(1, 1, kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * factor
    return [kernel.astype(np.float32), ((bias - params["moving_mean"]) * factor + beta).astype(np.float32)]


def quantize_model(model: Any) -> Any:
    """A fake-quant training model sharing its weights with the (folded) float `model`."""
    keras = _layers_module()
    classes = build_classes()
    input_q = classes["ActivationQuantizer"](name="fq_input")

    def wrap(layer: Any) -> Any:
        if type(layer).__name__ == "InputLayer":
            return layer
        return classes["QuantizedLayer"](layer)

    body = keras.models.clone_model(model, clone_function=wrap)
    inputs = keras.Input(model.inputs[0].shape[1:])
    return keras.Model(inputs, body(input_q(inputs)), name=f"{model.name}_qat")
