"""Quantization-aware training of tf_keras models, on tfmot's default 8-bit scheme (its
sparsity- and cluster-preserving variants), for `keras_compress.quantization.qat`."""

import warnings

import numpy as np

from keras_compress._keras import CODE_LAYER_NAMES, first_call, inbound_layers, is_masked, keras
from keras_compress._layer_configs import check_rebuildable
from keras_compress._tfmot import (
    ClusterWeights,
    is_quantization_layer,
    known_to_tfmot,
    leave_activation_ranges_out,
    no_op_quantize_config,
    output_quantize_config,
    quantizable,
    quantize_apply,
    quantize_scheme,
    tfmot,
    weight_quantizers,
)
from keras_compress.errors import ModelStateError, QuantizationError
from keras_compress.layer_kinds import kind_of

__all__ = ["check_model", "quantize_aware", "is_quantize_aware", "quantized_weights",
           "quantized_kernel_count", "weight_quantized_layers"]

_quantize = tfmot.quantization.keras


def _same_scale_config():
    """A no-op config (the layer keeps its input's scale) that is not counted as left float."""
    return no_op_quantize_config()


def _float_before_quantized_config():
    """For a layer left float whose output a quantized layer reads: its output is quantized, so
    that the next layer reads int8 and runs in int8 (tfmot quantizes no input but the model's)."""
    return output_quantize_config()


def _read_by_concatenations_alone(model, annotations):
    """tfmot quantizes a Concatenate's output alone, turning off its inputs' output quantizers,
    but not the activation quantizer of a Conv2D or Dense before it: the TFLite converter then
    puts the concatenation on that input's scale and clips the others to it (DenseNet's blocks).
    The names of those layers, read by concatenations alone, whose outputs must stay unquantized."""
    readers = {}
    for layer in model.layers:
        for before in inbound_layers(layer):
            readers.setdefault(before.name, []).append(layer)
    return [layer.name for layer in model.layers
            if annotations.get(layer.name, no_op_quantize_config) is None and readers.get(layer.name)
            and all(isinstance(reader, keras.layers.Concatenate) for reader in readers[layer.name])
            and not isinstance(layer, keras.layers.Activation) and hasattr(layer, "activation")]


def _wrappable(layer):
    """Whether tfmot's quantize wrapper can take `layer` and quantize its output: not an input,
    a nested model, a Lambda or TF-op layer (an op on two tensors gets them as one list), an
    Embedding (tfmot would quantize the token ids before it), a layer of several outputs, or one
    reading masked or non-float tensors (the wrapper drops masks)."""
    call = first_call(layer)
    if (isinstance(layer, (keras.layers.InputLayer, keras.Model, keras.layers.Embedding))
            or type(layer).__name__ in CODE_LAYER_NAMES or call is None):
        return False
    inputs, outputs = call
    return (len(outputs) == 1 and all(tensor.dtype.is_floating for tensor in inputs)
            and not any(is_masked(tensor) for tensor in inputs))


def _quantize_outputs_read_by_quantized_layers(model, annotations):
    """Turns the float layers in `annotations` (not annotated, or no-op) whose outputs a layer
    quantized by the scheme reads into `_float_before_quantized_config`."""
    for layer in model.layers:
        if annotations.get(layer.name, no_op_quantize_config) is not None:
            continue
        for before in inbound_layers(layer):
            if (annotations.get(before.name, no_op_quantize_config) is no_op_quantize_config
                    and _wrappable(before)):
                annotations[before.name] = _float_before_quantized_config


def is_quantize_aware(model):
    """Whether a tf_keras model holds tfmot's quantization layers."""
    return any(is_quantization_layer(layer) for layer in getattr(model, "layers", ()))


def check_model(model):
    """Refuses a model tfmot cannot make quantization-aware as it is."""
    if any(isinstance(layer, ClusterWeights) for layer in model.layers):
        raise ModelStateError("The model still has clustering wrappers: quantize "
                                 "keras_compress.clustering.strip(model) after clustering.")


def _apply(model, annotations, scheme):
    """tfmot's quantization of `model` with `annotations`: layer name -> a function making its
    quantize config, or None for the scheme's own."""
    # tfmot rebuilds the model from its config: let it find the model's own custom layer classes,
    # which tf_keras cannot always find by name (tf_keras ConvNeXt's LayerScale).
    classes = {type(layer).__name__: type(layer) for layer in model.layers
               if not hasattr(keras.layers, type(layer).__name__)}
    with keras.utils.custom_object_scope(classes):
        return quantize_apply(model, {name: make_config() if make_config else None
                                      for name, make_config in annotations.items()}, scheme)


def _folded_batch_norm(layer):
    """Whether tfmot can quantize this layer as a BatchNormalization folded into the
    convolution before it (its Conv->BN transforms; a BN anywhere else it refuses)."""
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    before = inbound_layers(layer)
    return len(before) == 1 and isinstance(before[0], (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))


def quantize_aware(model, sparse, clusters, strict):
    """tfmot's quantization-aware copy of `model`, keeping its zeros (`sparse`) and its clusters
    (`clusters`); the layers it leaves float are named in a warning, or raise with `strict`."""
    check_rebuildable(model, "quantize", need_name=True)  # tfmot finds layers by their configs' names
    scheme = quantize_scheme(sparse, clusters)
    candidates = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    annotations = {}
    for layer in candidates:
        help_tfmot = kind_of(layer).tfmot
        if help_tfmot == "input_scale":
            annotations[layer.name] = _same_scale_config
        elif quantizable(layer) or _folded_batch_norm(layer):
            annotations[layer.name] = None
        elif help_tfmot == "output":
            annotations[layer.name] = output_quantize_config
        elif known_to_tfmot(layer):
            # tfmot would quantize its output before a quantized layer with the layer's own
            # config, and fail: keep it float (its output is quantized below, where needed).
            annotations[layer.name] = no_op_quantize_config
    _quantize_outputs_read_by_quantized_layers(model, annotations)
    leave_activation_ranges_out(scheme, _read_by_concatenations_alone(model, annotations))
    # Should tfmot refuse a layer all the same, leave it float and try again (the graph rule
    # above makes that rare: each try clones the whole model).
    while True:
        if not annotations:
            raise QuantizationError(
                f"Model {model.name!r} has no layer tfmot can quantize (Conv, Dense, pooling, known "
                "activations...): quantization-aware training would change nothing. Export it as it "
                'is, or post-training quantize it (kc.export(..., quantize="dynamic")).')
        try:
            result = _apply(model, annotations, scheme)
            break
        except RuntimeError as error:
            name = next((n for n in annotations if f"Layer {n}:" in str(error)), None)
            if name is None:
                raise
            del annotations[name]
    # Not annotated, or annotated to stay float.
    left_float = [layer.name for layer in candidates if annotations.get(layer.name, no_op_quantize_config)
                  in (no_op_quantize_config, _float_before_quantized_config)]
    if left_float:
        message = (f"These layers of {model.name!r} stay float (tfmot cannot quantize them): "
                   f"{', '.join(left_float)}.")
        if strict:
            raise QuantizationError(message + " Pass strict=False to accept that, or change them "
                                    "(e.g. put BatchNormalization right after a Conv2D).", left_float)
        warnings.warn(message, stacklevel=3)
    return result




def quantized_weights(layer):
    """`[(variable, fake-quantized value, scale)]` for the quantized weights of a tfmot QAT layer.

    `scale` is the symmetric int8 step (per tensor, or per channel along the last axis);
    `value / scale` are integers in [-127, 127].
    """
    if not isinstance(layer, _quantize.QuantizeWrapper):
        return []
    result = []
    for weight, quantizer, variables in weight_quantizers(layer):
        value = quantizer(weight, training=False, weights=variables).numpy()
        low, high = variables["min_var"].numpy(), variables["max_var"].numpy()
        scale = (np.maximum(np.abs(low), np.abs(high)) / 127.0).astype(np.float32)
        result.append((weight, value, scale))
    return result


def weight_quantized_layers(model):
    """The tfmot wrappers of a tf_keras QAT model that quantize weights."""
    return [layer for layer in model.layers
            if isinstance(layer, _quantize.QuantizeWrapper) and weight_quantizers(layer)]


def quantized_kernel_count(model):
    """How many kernels of a tf_keras QAT model train on the int8 grid."""
    return sum(len(weight_quantizers(layer)) for layer in weight_quantized_layers(model))
