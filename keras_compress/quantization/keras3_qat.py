"""Quantization-aware training for Keras 3 models, native on the TensorFlow and JAX backends.

Two registered layers do the work, on `keras.quantizers.fake_quant_with_min_max_vars`
(on the TensorFlow backend that is TensorFlow's FakeQuant op, which the TFLite
converter turns into int8 kernels):

- `QuantizeWeights` wraps a Conv1D, Conv2D, DepthwiseConv2D or Dense layer (a SeparableConv2D
  becomes its DepthwiseConv2D and 1x1 Conv2D, as TFLite runs it) and calls it
  on its kernel fake-quantized to symmetric int8: per output channel for convolutions,
  per tensor for Dense (the TFLite converter takes no per-channel fully-connected
  weights). A BatchNormalization right after a convolution is folded into it, with its
  moving statistics frozen, so training sees the weights TFLite and TensorRT will run.
  With `preserve_sparsity`, a mask keeps the kernel's zeros zero.
- `QuantizeActivations` fake-quantizes a tensor to 8 bits over a range learned as a
  moving average of its minimum and maximum (the model inputs and the outputs of every
  quantized operation).
"""

import warnings

import keras
import numpy as np

from keras_compress._keras3 import (
    call_count,
    call_takes_training,
    call_with_values,
    graph_nodes,
    producer,
    sublayers,
)
from keras_compress.errors import ModelStateError, QuantizationError
from keras_compress.layer_kinds import builtin_name, kind_of

__all__ = ["QuantizeActivations", "QuantizeWeights", "check_model", "quantize_aware", "is_quantize_aware",
           "quantized_weights", "quantized_kernel_count"]

# Activations int8 kernels fuse.
_ACTIVATIONS = ("relu", "relu6", "linear")
# The narrowest activation range quantized with (256 steps of 4e-6).
_MIN_RANGE = 1e-3


def _fake_quant_symmetric(kernel, axis):
    """`kernel` on a symmetric int8 grid ([-127, 127] steps of max|w| / 127), per channel along
    `axis` or per tensor; the range follows the weights without a gradient of its own."""
    ops = keras.ops
    if axis is None:
        peak = ops.max(ops.abs(kernel))
    else:
        reduce = tuple(i for i in range(len(kernel.shape)) if i != axis % len(kernel.shape))
        peak = ops.max(ops.abs(kernel), axis=reduce)
    peak = ops.stop_gradient(ops.maximum(peak, 1e-8))
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -peak, peak, num_bits=8, narrow_range=True,
                                                        axis=axis)


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizeActivations(keras.layers.Layer):
    """Fake-quantizes its input to 8 bits (asymmetric, per tensor) over a range learned while
    training as the moving average of the batches' minimum and maximum (0 always inside).

    Args:
        ema_decay: weight of the old range in each update.
    """

    def __init__(self, ema_decay=0.999, **kwargs):
        super().__init__(**kwargs)
        self.ema_decay = ema_decay
        self.supports_masking = True

    def build(self, input_shape=None):
        # [-6, 6] until the first training batch sets the range (tfmot's default start).
        constant = keras.initializers.Constant
        self.range_min = self.add_weight(name="range_min", shape=(), initializer=constant(-6.0),
                                         trainable=False)
        self.range_max = self.add_weight(name="range_max", shape=(), initializer=constant(6.0),
                                         trainable=False)
        self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs, training=None):
        ops = keras.ops
        low, high = self.range_min.value, self.range_max.value
        if training:
            batch_low = ops.minimum(ops.min(ops.stop_gradient(inputs)), 0.0)
            batch_high = ops.maximum(ops.max(ops.stop_gradient(inputs)), 0.0)
            first = ops.equal(self.seen.value, 0.0)
            low = ops.where(first, batch_low, self.ema_decay * low + (1 - self.ema_decay) * batch_low)
            high = ops.where(first, batch_high, self.ema_decay * high + (1 - self.ema_decay) * batch_high)
            self.range_min.assign(low)
            self.range_max.assign(high)
            self.seen.assign(1.0)
        # A range narrower than this (a tensor that was ~0) would make int8 runtimes refuse its scale.
        high = ops.maximum(high, low + _MIN_RANGE)
        return keras.quantizers.fake_quant_with_min_max_vars(inputs, low, high, num_bits=8)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), ema_decay=self.ema_decay)


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizeWeights(keras.layers.Wrapper):
    """Calls a Conv1D, Conv2D, DepthwiseConv2D or Dense layer on its kernel fake-quantized to
    symmetric int8, with a following BatchNormalization folded in and the kernel's zeros kept.

    Args:
        layer: the layer to quantize.
        batch_norm: a BatchNormalization that followed `layer` (whose activation is linear),
            folded into its kernel and bias with frozen moving statistics; or None.
        preserve_sparsity: hold a mask of the kernel's nonzeros and keep the rest zero.
    """

    def __init__(self, layer, batch_norm=None, preserve_sparsity=False, **kwargs):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.batch_norm = batch_norm
        self.preserve_sparsity = bool(preserve_sparsity)
        if layer.built and (batch_norm is None or batch_norm.built):
            self._add_mask()

    @property
    def _axis(self):
        kind = kind_of(self.layer)
        if kind.int8 != "kernel":
            raise QuantizationError(
                f"{self.name} wraps a {type(self.layer).__name__}, which this process does not know to "
                "quantize: register its kind (kc.layer_kinds.register_layer_kind) before loading or building "
                "the model.", [self.layer.name])
        return -1 if kind.kernel_axis == "depthwise" else kind.kernel_axis

    @property
    def _depthwise(self):
        return kind_of(self.layer).kernel_axis == "depthwise"

    def _add_mask(self):
        if self.preserve_sparsity:
            self.sparsity_mask = self.add_weight(name="sparsity_mask", shape=tuple(self.layer.kernel.shape),
                                                 initializer="ones", trainable=False)
        self.built = True

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(self.layer.compute_output_shape(input_shape))
        self._add_mask()

    def get_build_config(self):
        return {"input_shape": self.layer.get_build_config()["input_shape"]}

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def folded(self):
        """`(kernel, bias)` as the layer computes with them: masked, with the BatchNormalization
        folded in (bias None when the layer has none and nothing is folded)."""
        ops = keras.ops
        kernel = ops.convert_to_tensor(self.layer.kernel)
        bias = ops.convert_to_tensor(self.layer.bias) if self.layer.use_bias else None
        if self.preserve_sparsity:
            kernel = ops.multiply(kernel, self.sparsity_mask.value)
        norm = self.batch_norm
        if norm is not None:
            factor = ops.rsqrt(ops.add(norm.moving_variance.value, norm.epsilon))
            if norm.scale:
                factor = ops.multiply(factor, norm.gamma.value)
            # DepthwiseConv2D kernels are (h, w, channels, multiplier); outputs channels * multiplier.
            kernel = ops.multiply(kernel, ops.reshape(factor, kernel.shape[-2:]) if
                                  self._depthwise else factor)
            shift = ops.negative(norm.moving_mean.value) if bias is None else \
                ops.subtract(bias, norm.moving_mean.value)
            bias = ops.multiply(shift, factor)
            if norm.center:
                bias = ops.add(bias, norm.beta.value)
        return kernel, bias

    def quantized_kernel(self, kernel=None):
        """The kernel the layer runs with: folded (unless given, folded), then fake-quantized to int8."""
        kernel = self.folded()[0] if kernel is None else kernel
        if self._depthwise:
            # One range per output channel (channels x multiplier), as TFLite quantizes it.
            shape = kernel.shape
            flat = keras.ops.reshape(kernel, (*shape[:-2], 1, shape[-2] * shape[-1]))
            return keras.ops.reshape(_fake_quant_symmetric(flat, -1), shape)
        return _fake_quant_symmetric(kernel, self._axis)

    def call(self, inputs, training=None):
        kernel, bias = self.folded()
        replaced = {id(self.layer.kernel): self.quantized_kernel(kernel)}
        if self.layer.use_bias:
            replaced[id(self.layer.bias)] = bias
        kwargs = {"training": training} if call_takes_training(self.layer) else {}
        shape = tuple(inputs.shape)
        # A Dense layer on inputs of rank 3 and more runs on rows: TFLite makes the batched
        # matrix product a float BATCH_MATMUL, and a matrix product of rows an int8 FULLY_CONNECTED.
        rows = self._axis is None and len(shape) > 2 and None not in shape[1:]
        if rows:
            inputs = keras.ops.reshape(inputs, (-1, shape[-1]))
        outputs = call_with_values(self, replaced, inputs, **kwargs)
        if bias is not None and not self.layer.use_bias:  # a folded BatchNormalization's shift
            outputs = keras.ops.add(outputs, bias)
        if rows:
            outputs = keras.ops.reshape(outputs, (-1, *shape[1:-1], outputs.shape[-1]))
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = dict(super().get_config(), preserve_sparsity=self.preserve_sparsity)
        config["batch_norm"] = (keras.saving.serialize_keras_object(self.batch_norm)
                                if self.batch_norm is not None else None)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        batch_norm = config.pop("batch_norm")
        if batch_norm is not None:
            batch_norm = keras.saving.deserialize_keras_object(batch_norm, custom_objects=custom_objects)
        return cls(layer, batch_norm=batch_norm, **config)


def quantized_kernel_count(model):
    """How many kernels of a Keras 3 QAT model are quantized (one per `QuantizeWeights`)."""
    return sum(isinstance(layer, QuantizeWeights) for layer in sublayers(model))


def is_quantize_aware(model):
    """Whether a Keras 3 model holds keras_compress's QAT layers."""
    return any(isinstance(layer, (QuantizeWeights, QuantizeActivations))
               for layer in sublayers(model))


def _channel_peaks(kernel, depthwise, per_tensor):
    """max |kernel| per output channel (channels x multiplier for a depthwise kernel), or overall."""
    if per_tensor:
        return np.abs(kernel).max(keepdims=True).ravel()
    channels = kernel.shape[-2] * kernel.shape[-1] if depthwise else kernel.shape[-1]
    return np.abs(kernel).reshape(-1, channels).max(axis=0)


def quantized_weights(layer):
    """`[(kernel variable, fake-quantized kernel as run, symmetric int8 step per output channel or
    per tensor)]` of a `QuantizeWeights` layer; empty for any other layer."""
    if not isinstance(layer, QuantizeWeights):
        return []
    value = keras.ops.convert_to_numpy(layer.quantized_kernel())
    # The largest weight of each channel sits on the edge of the grid: +-127 steps.
    peaks = _channel_peaks(value, layer._depthwise, layer._axis is None)
    return [(layer.layer.kernel, value, (np.maximum(peaks, 1e-8) / 127.0).astype(np.float32))]


def _foldable(layer, inputs, readers):
    """Whether BatchNormalization `layer` can fold into the convolution that makes its input: the
    convolution has no activation, and nothing else (no other layer, no model output) reads it."""
    if builtin_name(layer) != "BatchNormalization" or len(inputs) != 1 or call_count(layer) != 1:
        return False
    conv = producer(inputs[0])
    return (kind_of(conv).folds_batch_norm
            and getattr(conv.activation, "__name__", "") == "linear" and call_count(conv) == 1
            and len(readers[id(inputs[0])]) == 1 and layer.axis in (-1, len(inputs[0].shape) - 1))


def _quantizes_output(layer):
    return kind_of(layer).int8 in ("kernel", "split", "output")


def _is_activation(layer):
    name = builtin_name(layer)
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return name == "ReLU" or (name == "Activation" and activation in _ACTIVATIONS)


def _reads_ids(layer):
    """Whether `layer` is, or holds, an Embedding: its inputs are token ids (even when float),
    which an activation quantizer would round onto its grid. (A graph's raw ops, `x + y`, are
    operations, not layers, and hold nothing.)"""
    return isinstance(layer, keras.layers.Layer) and any(
        isinstance(inner, keras.layers.Embedding) for inner in [layer, *sublayers(layer)])


def _fused_activation(layer):
    """The activation a weighted layer applies itself, when int8 kernels cannot fuse it (not
    ReLU, ReLU6 or linear): it is split off so the layer's own output gets a range."""
    activation = getattr(layer, "activation", None)
    return activation if getattr(activation, "__name__", "linear") not in _ACTIVATIONS else None


def _quantized(layer, sparse, batch_norm=None):
    """`layer` in a `QuantizeWeights`, its mask (with `sparse`) keeping the kernel's zeros."""
    wrapper = QuantizeWeights(layer, batch_norm=batch_norm, preserve_sparsity=sparse)
    if sparse:
        wrapper.sparsity_mask.assign(keras.ops.cast(keras.ops.not_equal(layer.kernel, 0), "float32"))
    return wrapper


def _separated(layer, input_shape, batch_norm, sparse, unique):
    """The two convolutions SeparableConv2D `layer` computes (as TFLite runs it), with its
    weights, each in a `QuantizeWeights`."""
    depthwise = keras.layers.DepthwiseConv2D(
        layer.kernel_size, strides=layer.strides, padding=layer.padding,
        depth_multiplier=layer.depth_multiplier, data_format=layer.data_format,
        dilation_rate=layer.dilation_rate, use_bias=False, depthwise_regularizer=layer.depthwise_regularizer,
        depthwise_constraint=layer.depthwise_constraint, dtype=layer.dtype_policy,
        trainable=layer.trainable, name=unique(f"{layer.name}_depthwise"))
    pointwise = keras.layers.Conv2D(
        layer.filters, 1, data_format=layer.data_format, activation=layer.activation, use_bias=layer.use_bias,
        kernel_regularizer=layer.pointwise_regularizer, bias_regularizer=layer.bias_regularizer,
        activity_regularizer=layer.activity_regularizer, kernel_constraint=layer.pointwise_constraint,
        bias_constraint=layer.bias_constraint, dtype=layer.dtype_policy, trainable=layer.trainable,
        name=unique(f"{layer.name}_pointwise"))
    depthwise.build(input_shape)
    depthwise.kernel.assign(layer.depthwise_kernel)
    pointwise.build(depthwise.compute_output_shape(input_shape))
    pointwise.kernel.assign(layer.pointwise_kernel)
    if layer.use_bias:
        pointwise.bias.assign(layer.bias)
    return _quantized(depthwise, sparse), _quantized(pointwise, sparse, batch_norm)


def check_model(model):
    """Refuses a model Keras itself quantized after training: its int8 kernels cannot train."""
    from keras_compress._keras3 import quantized_layers

    quantized = quantized_layers(model)
    if quantized:
        raise ModelStateError(
            f"Model {model.name!r} was post-training quantized with Keras' model.quantize() (layers "
            f"{', '.join(quantized)}): its int8 kernels are frozen and cannot be trained "
            "with fake quantization. Call quantize_aware on the float model, before model.quantize().")


def quantize_aware(model, sparse, clusters, strict):
    """The Keras 3 `quantize_aware`: a copy of `model` with its convolutions and Dense layers
    in `QuantizeWeights` and `QuantizeActivations` after the inputs and quantized outputs.
    (`clusters` is always False: `qat` refuses cluster preservation for Keras 3 models.)"""
    from keras_compress._keras3 import copy_model, functional, output_tensors

    source = functional(copy_model(model))
    nodes = graph_nodes(source)
    readers = {}  # tensor -> the layers that read it, and None for each model output it is
    for layer, inputs, _ in nodes:
        for tensor in inputs:
            readers.setdefault(id(tensor), []).append(layer)
    for tensor in output_tensors(source):
        readers.setdefault(id(tensor), []).append(None)
    folded = {}  # convolution name -> BatchNormalization folded into it
    for layer, inputs, _ in nodes:
        if _foldable(layer, inputs, readers):
            folded[producer(inputs[0]).name] = layer
    folded_norms = {id(norm) for norm in folded.values()}
    untrained = [norm.name for norm in folded.values() if not np.any(norm.moving_mean.numpy())
                 and np.all(norm.moving_variance.numpy() == 1)]
    if untrained:
        warnings.warn(f"BatchNormalization layers {', '.join(untrained)} of {model.name!r} hold their "
                      "initial statistics (mean 0, variance 1): quantization-aware training folds them into "
                      "the convolutions before them with these statistics frozen. Train the float model "
                      "first, then call quantize_aware.", stacklevel=3)
    left_float = [layer.name for layer, _, _ in nodes
                  if not (kind_of(layer).int8 is not None
                          or id(layer) in folded_norms)]
    if left_float:
        message = f"These layers of {model.name!r} stay float (keras_compress does not quantize them): " \
                  f"{', '.join(left_float)}."
        if strict:
            raise QuantizationError(message + " Pass strict=False to accept that, or change them (e.g. put "
                                    "BatchNormalization right after a convolution with no activation).",
                                    left_float)
        warnings.warn(message, stacklevel=3)

    # The output of a layer called once and read only by an activation layer (or a folded
    # BatchNormalization) is quantized after it.
    def quantized_later(layer, outputs):
        after = [reader for tensor in outputs for reader in readers.get(id(tensor), [])]
        return call_count(layer) == 1 and len(after) == 1 and after[0] is not None \
            and (_is_activation(after[0]) or id(after[0]) in folded_norms)

    later = {layer.name for layer, _, outputs in nodes if quantized_later(layer, outputs)}
    names = {layer.name for layer, _, _ in nodes}

    def unique(name):  # a shared layer's calls each get their own quantizer
        candidate, count = name, 0
        while candidate in names:
            count += 1
            candidate = f"{name}_{count}"
        names.add(candidate)
        return candidate

    quantized_inputs = {}

    def quantize_input(tensor):
        if not (isinstance(tensor, keras.KerasTensor) and "float" in str(tensor.dtype)
                and isinstance(producer(tensor), keras.layers.InputLayer)):
            return tensor
        if id(tensor) not in quantized_inputs:
            name = unique(f"{producer(tensor).name}_quant")
            quantized_inputs[id(tensor)] = QuantizeActivations(name=name)(tensor)
        return quantized_inputs[id(tensor)]

    split = {}  # layer name -> the activation split off it
    separated = {}  # SeparableConv2D name -> its two quantized convolutions

    def clone(layer):
        if kind_of(layer).int8 not in ("kernel", "split"):
            return layer
        if _fused_activation(layer) is not None:
            split[layer.name] = _fused_activation(layer)
            layer.activation = keras.activations.linear  # the model's own copy
        if kind_of(layer).int8 == "split":
            return layer  # split into its two convolutions when called
        return _quantized(layer, sparse, folded.get(layer.name))

    def call(layer, *args, **kwargs):
        inner = layer.layer if isinstance(layer, QuantizeWeights) else layer
        if not _reads_ids(inner):
            args, kwargs = keras.tree.map_structure(quantize_input, (args, kwargs))
        if id(inner) in folded_norms:
            return args[0] if inner.name in later else \
                QuantizeActivations(name=unique(f"{inner.name}_quant"))(args[0])  # folded before
        if kind_of(inner).int8 == "split":  # one pair per layer, a range per call
            if inner.name not in separated:
                separated[inner.name] = _separated(inner, args[0].shape, folded.get(inner.name), sparse,
                                                   unique)
            depthwise, pointwise = separated[inner.name]
            hidden = QuantizeActivations(name=unique(f"{inner.name}_depthwise_quant"))(depthwise(args[0]))
            outputs = pointwise(hidden)
        else:
            outputs = layer(*args, **kwargs)
        if inner.name in split:
            outputs = QuantizeActivations(name=unique(f"{inner.name}_quant"))(outputs)
            activation = keras.layers.Activation(split[inner.name], name=unique(f"{inner.name}_activation"))
            outputs = activation(outputs)
        # A layer left float gets its output quantized too, for the int8 operations after it.
        if (_quantizes_output(inner) or inner.name in left_float) and inner.name not in later:
            outputs = QuantizeActivations(name=unique(f"{inner.name}_output_quant" if inner.name in split
                                                      else f"{inner.name}_quant"))(outputs)
        return outputs

    quantized = keras.models.clone_model(source, clone_function=clone, call_function=call)
    # A Sequential's graph has a name of its own: the copy keeps the model's (and its structure).
    return keras.Model(quantized.input, quantized.output, name=model.name)
