"""Quantization-aware training for Keras 3 models, native on the TensorFlow and JAX backends.

Two registered layers do the work, on `keras.quantizers.fake_quant_with_min_max_vars`
(on the TensorFlow backend that is TensorFlow's FakeQuant op, which the TFLite
converter turns into int8 kernels):

- `QuantizeWeights` wraps a Conv1D, Conv2D, DepthwiseConv2D, Dense or EinsumDense layer (a
  SeparableConv2D becomes its DepthwiseConv2D and 1x1 Conv2D, as TFLite runs it) and calls it
  on its kernel fake-quantized to symmetric int8: per output channel for convolutions,
  per tensor for Dense and EinsumDense (the TFLite converter takes no per-channel
  fully-connected weights). A BatchNormalization right after a convolution is folded into it,
  with its moving statistics frozen, so training sees the weights TFLite and TensorRT will run.
  With `preserve_sparsity`, a mask keeps the kernel's zeros zero.
- `QuantizeActivations` fake-quantizes a tensor to 8 bits over a range learned as a
  moving average of its minimum and maximum (the model inputs and the outputs of every
  quantized operation).

Custom layers and MultiHeadAttention are reached inside: the layers they hold in attributes of
their own (the attention's projections, a feed-forward Dense) go into a `QuantizeWeights` that
also quantizes its inputs and outputs, since no graph shows where their tensors come from; the
graph models they hold (keras.io's feed-forward `Sequential`) become quantization-aware whole.
The copy of the layer is wrapped in `replaced_layers.Replaced`, so that it saves and loads.
LayerNormalization, softmax and the other layers inside stay float and are named.
"""

import warnings

import keras
import numpy as np

from keras_compress._keras3 import (
    call_count,
    call_takes_training,
    call_with_values,
    child_layers,
    graph_nodes,
    is_graph_model,
    producer,
    sublayers,
)
from keras_compress.errors import ModelStateError, QuantizationError
from keras_compress.layer_kinds import builtin_name, kind_of
from keras_compress.replaced_layers import Replaced, in_scope_of, put

__all__ = ["QuantizeActivations", "QuantizeWeights", "check_model", "quantize_aware", "is_quantize_aware",
           "quantized_weights", "quantized_kernel_count", "weight_quantized_layers"]

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
    """Calls a Conv1D, Conv2D, DepthwiseConv2D, Dense or EinsumDense layer on its kernel
    fake-quantized to symmetric int8, with a following BatchNormalization folded in and the
    kernel's zeros kept.

    Args:
        layer: the layer to quantize.
        batch_norm: a BatchNormalization that followed `layer` (whose activation is linear),
            folded into its kernel and bias with frozen moving statistics; or None.
        preserve_sparsity: hold a mask of the kernel's nonzeros and keep the rest zero.
        quantize_io: fake-quantize the inputs and outputs too (a layer inside a custom layer,
            whose tensors no graph shows).
        activation: applied after the (quantized) output, and quantized itself with `quantize_io`:
            the activation `layer` had when int8 kernels cannot fuse it (`layer`'s own is then linear).
    """

    def __init__(self, layer, batch_norm=None, preserve_sparsity=False, quantize_io=False, activation=None,
                 **kwargs):
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **kwargs)
        self.batch_norm = batch_norm
        self.preserve_sparsity = bool(preserve_sparsity)
        self.quantize_io = bool(quantize_io)
        self.activation = None if activation is None else keras.activations.get(activation)
        if self.quantize_io:  # each builds on its first call, in this layer's name scope
            self.input_range = QuantizeActivations(name="input_range")
            self.output_range = QuantizeActivations(name="output_range")
            if self.activation is not None:
                self.activation_range = QuantizeActivations(name="activation_range")
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

    @property
    def _has_bias(self):
        return getattr(self.layer, "bias", None) is not None

    def folded(self):
        """`(kernel, bias)` as the layer computes with them: masked, with the BatchNormalization
        folded in (bias None when the layer has none and nothing is folded)."""
        ops = keras.ops
        kernel = ops.convert_to_tensor(self.layer.kernel)
        bias = ops.convert_to_tensor(self.layer.bias) if self._has_bias else None
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
        if self._has_bias:
            replaced[id(self.layer.bias)] = bias
        kwargs = {"training": training} if call_takes_training(self.layer) else {}
        shape = keras.ops.shape(inputs)  # sizes unknown here (a sequence's length) are tensors
        # A Dense layer on inputs of rank 3 and more runs on rows: TFLite makes the batched
        # matrix product a float BATCH_MATMUL, and a matrix product of rows an int8 FULLY_CONNECTED.
        rows = self._axis is None and not isinstance(self.layer, keras.layers.EinsumDense) and len(shape) > 2
        if rows:
            inputs = keras.ops.reshape(inputs, (-1, shape[-1]))
        if self.quantize_io:  # after the reshape: TFLite's reshape keeps the scale it is given
            inputs = self.input_range(inputs, training=training)
        outputs = call_with_values(self, replaced, inputs, **kwargs)
        if bias is not None and not self._has_bias:  # a folded BatchNormalization's shift
            outputs = keras.ops.add(outputs, bias)
        if rows:
            outputs = keras.ops.reshape(outputs, (*shape[:-1], outputs.shape[-1]))
        if self.quantize_io:
            outputs = self.output_range(outputs, training=training)
        if self.activation is not None:
            outputs = self.activation(outputs)
            if self.quantize_io:
                outputs = self.activation_range(outputs, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = dict(super().get_config(), preserve_sparsity=self.preserve_sparsity,
                      quantize_io=self.quantize_io, activation=None if self.activation is None else
                      keras.activations.serialize(self.activation))
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


def weight_quantized_layers(model):
    """The `QuantizeWeights` layers of a Keras 3 QAT model, those inside its layers included."""
    return [layer for layer in sublayers(model) if isinstance(layer, QuantizeWeights)]


def quantized_kernel_count(model):
    """How many kernels of a Keras 3 QAT model are quantized (one per `QuantizeWeights`)."""
    return len(weight_quantized_layers(model))


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


def _quantized(layer, sparse, batch_norm=None, **options):
    """`layer` in a `QuantizeWeights` (given `options`), its mask (with `sparse`) keeping the
    kernel's zeros."""
    wrapper = QuantizeWeights(layer, batch_norm=batch_norm, preserve_sparsity=sparse, **options)
    if sparse:
        wrapper.sparsity_mask.assign(keras.ops.cast(keras.ops.not_equal(layer.kernel, 0), "float32"))
    return wrapper


def _quantized_inner(layer, sparse):
    """`layer`, held inside a custom layer, in a `QuantizeWeights` that quantizes its inputs and
    outputs too; an activation int8 kernels cannot fuse runs after the quantized output."""
    activation = _fused_activation(layer)
    if activation is not None:
        layer.activation = keras.activations.linear  # the model's own copy
    return _quantized(layer, sparse, quantize_io=True, activation=activation)


def _quantized_inside(layer, sparse, original, path, seen):
    """`(layer, left float, untrained)`: `layer` (a custom layer or attention of the model's own copy,
    changed in place) with the layers it holds in attributes quantization-aware, wrapped in
    `Replaced`, or `layer` itself when nothing in it is; the paths of the layers inside that stay
    float, and of the BatchNormalization layers folded with their initial statistics, named as in
    `original` (the user's layer). A kernel layer is quantized by `_quantized_inner`, a graph model
    whole, and a layer holding layers the same way as `layer` (so each builds as it did, then gets
    its replacements)."""
    earlier = {}
    if isinstance(layer, Replaced):  # shrunk: its smaller layers are kept, unless quantized here
        earlier, layer = layer.replaced, layer.layer
        original = original.layer if isinstance(original, Replaced) else original
    replaced, left_float, untrained = {}, [], []
    held = [value for value in vars(layer).values() if isinstance(value, keras.layers.Layer)]
    children = child_layers(layer)
    users = child_layers(original) if original is not None else []
    users = users if len(users) == len(children) else [None] * len(children)
    for index, (child, user) in enumerate(zip(children, users)):
        if id(child) in seen:
            continue
        seen.add(id(child))
        name = f"{path}/{(user or child).name}"
        # In a list or dict it cannot be swapped; one the copy shares with your model (a config
        # holding the layer itself) stays yours, untouched.
        if not any(value is child for value in held) or child is user:
            if kind_of(child).int8 in (None, "kernel", "split") or child_layers(child):
                left_float.append(name)
        elif is_graph_model(child):
            with in_scope_of(child):  # its variables' paths stay under the layer's
                replaced[str(index)], untrained_inside, float_inside = _quantized_graph(user or child, sparse)
            untrained.extend(f"{name}/{inner}" for inner in untrained_inside)
            left_float.extend(f"{name}/{inner}" for inner in float_inside)
        elif kind_of(child).int8 == "kernel":
            with in_scope_of(child):  # its mask's path under the layer's
                replaced[str(index)] = _quantized_inner(child, sparse)
        elif child_layers(child):
            new, float_inside, untrained_inside = _quantized_inside(child, sparse, user, name, seen)
            if new is not child:
                replaced[str(index)] = new
            left_float.extend(float_inside)
            untrained.extend(untrained_inside)
        elif kind_of(child).int8 in (None, "split"):
            left_float.append(name)
    if not replaced:
        return layer, ([path] if not children else left_float), untrained
    put(layer, replaced, None)
    routes = {**{route: new for route, new in earlier.items() if route not in replaced}, **replaced}
    return Replaced(layer, routes, name=layer.name), left_float, untrained


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
    in `QuantizeWeights` and `QuantizeActivations` after the inputs and quantized outputs, and
    the same inside its custom layers.
    (`clusters` is always False: `qat` refuses cluster preservation for Keras 3 models.)"""
    quantized, untrained, left_float = _quantized_graph(model, sparse)
    if untrained:
        warnings.warn(f"BatchNormalization layers {', '.join(untrained)} of {model.name!r} hold their "
                      "initial statistics (mean 0, variance 1): quantization-aware training folds them into "
                      "the convolutions before them with these statistics frozen. Train the float model "
                      "first, then call quantize_aware.", stacklevel=3)
    if left_float:
        message = f"These layers of {model.name!r} stay float (keras_compress does not quantize them): " \
                  f"{', '.join(left_float)}."
        if strict:
            raise QuantizationError(message + " Pass strict=False to accept that, or change them (e.g. put "
                                    "BatchNormalization right after a convolution with no activation).",
                                    left_float)
        warnings.warn(message, stacklevel=3)
    return quantized


def _quantized_graph(model, sparse):
    """`(copy, untrained, left float)`: the quantization-aware copy of graph model `model`, the
    BatchNormalization layers it folds with their initial statistics, and the layers that stay
    float (by path inside custom layers)."""
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
    inside = {}  # id(custom layer or attention) -> its copy with quantized layers inside
    originals = {layer.name: layer for layer in model.layers}
    left_float, float_outputs = [], set()  # float_outputs: layers whose outputs int8 layers may read
    for layer, _, _ in nodes:
        if kind_of(layer).int8 is not None or id(layer) in folded_norms or layer.name in float_outputs:
            continue
        float_outputs.add(layer.name)
        if not isinstance(layer, keras.layers.Layer):  # a raw operation of the graph (`x + y`)
            left_float.append(layer.name)
            continue
        if is_graph_model(layer):  # a nested model (a keras-hub backbone): quantization-aware whole
            new, untrained_inside, float_inside = _quantized_graph(originals.get(layer.name, layer), sparse)
            float_inside = [f"{layer.name}/{name}" for name in float_inside]
            untrained_inside = [f"{layer.name}/{name}" for name in untrained_inside]
        else:
            new, float_inside, untrained_inside = _quantized_inside(layer, sparse, originals.get(layer.name),
                                                                    layer.name, set())
        if new is layer:
            left_float.append(layer.name)
        else:
            inside[id(layer)] = new
            left_float.extend(float_inside)
            untrained.extend(untrained_inside)

    # The output of a layer called once and read only by an activation layer (or a folded
    # BatchNormalization) is quantized after it.
    def quantized_later(layer, outputs):
        after = [reader for tensor in outputs for reader in readers.get(id(tensor), [])]
        return call_count(layer) == 1 and len(after) == 1 and after[0] is not None \
            and (_is_activation(after[0]) or id(after[0]) in folded_norms)

    later = {layer.name for layer, _, outputs in nodes if quantized_later(layer, outputs)}

    # A float layer's output is quantized for the int8 layers that read it; layers quantized inside
    # quantize their own inputs (a second quantizer in a row would only round again).
    def read_inside_only(outputs):
        after = [reader for tensor in outputs for reader in readers.get(id(tensor), [])]
        return bool(after) and all(reader is not None and id(reader) in inside for reader in after)

    float_outputs -= {layer.name for layer, _, outputs in nodes if read_inside_only(outputs)}
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
        if id(layer) in inside:
            return inside[id(layer)]
        if kind_of(layer).int8 not in ("kernel", "split"):
            return layer
        if _fused_activation(layer) is not None:
            split[layer.name] = _fused_activation(layer)
            layer.activation = keras.activations.linear  # the model's own copy
        if kind_of(layer).int8 == "split":
            return layer  # split into its two convolutions when called
        return _quantized(layer, sparse, folded.get(layer.name))

    def call(layer, *args, **kwargs):
        inner = layer.layer if isinstance(layer, (QuantizeWeights, Replaced)) else layer
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
        if (_quantizes_output(inner) or inner.name in float_outputs) and inner.name not in later:
            name = f"{inner.name}_output_quant" if inner.name in split else f"{inner.name}_quant"
            # Each float output of a layer with several (a keras-hub backbone's dict) gets its own.
            outputs = keras.tree.map_structure(
                lambda tensor: QuantizeActivations(name=unique(name))(tensor)
                if "float" in str(tensor.dtype) else tensor, outputs)
        return outputs

    quantized = keras.models.clone_model(source, clone_function=clone, call_function=call)
    # A Sequential's graph has a name of its own: the copy keeps the model's (and its structure).
    return keras.Model(quantized.input, quantized.output, name=model.name), untrained, left_float
