"""Quantization-aware training, sparsity-preserving when the model is sparse: tfmot for tf_keras
models, `keras3_qat` for Keras 3 models."""

import warnings

import numpy as np
import tensorflow as tf

from keras_compress._flavour import KERAS3, check_graph_model, flavour_of, keras_for
from keras_compress._keras import CODE_LAYER_NAMES, inbound_layers, keras
from keras_compress._tfmot import (ClusterWeights, is_quantization_layer, known_to_tfmot,
                                   leave_activation_ranges_out, no_op_quantize_config,
                                   output_quantize_config, quantizable, quantize_apply, quantize_scheme,
                                   tfmot, weight_quantizers)
from keras_compress.errors import KerasCompressError, UnsupportedModelError
from keras_compress.pruning.prune import pruning_wrappers
from keras_compress.pruning.report import has_sparse_kernel

__all__ = ["quantize_aware", "is_quantize_aware", "quantized_weights", "quantized_kernel_count"]

_quantize = tfmot.quantization.keras
# Layers tfmot's registry does not know but TFLite computes in int8: with their outputs quantized,
# the convolutions they feed run in int8 too (squeeze-excite and hard-swish products, an input
# scaled in the model).
_OUTPUT_ONLY = (keras.layers.Multiply, keras.layers.Rescaling)
# TFLite's average pool takes one scale on both sides; tfmot gives it an output range of its own,
# and the conversion fails where the two differ (DenseNet's transitions). Unquantized, it runs
# on its input's scale.
_SAME_SCALE = (keras.layers.AveragePooling1D, keras.layers.AveragePooling2D)


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
    if (isinstance(layer, (keras.layers.InputLayer, keras.Model, keras.layers.Embedding))
            or type(layer).__name__ in CODE_LAYER_NAMES or not layer._inbound_nodes):
        return False
    node = layer._inbound_nodes[0]
    inputs = tf.nest.flatten(node.input_tensors)
    return (len(tf.nest.flatten(node.outputs)) == 1 and all(tensor.dtype.is_floating for tensor in inputs)
            and all(getattr(tensor, "_keras_mask", None) is None for tensor in inputs))


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
    """True when `model` holds quantization-aware layers (it came from `quantize_aware`)."""
    if flavour_of(model) == KERAS3:
        from keras_compress.quantization.keras3_qat import is_quantize_aware_keras3

        return is_quantize_aware_keras3(model)
    return any(is_quantization_layer(layer)
               for layer in getattr(model, "layers", ()))


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


def check_preserve_flag(name, value):
    """Refuses a `preserve_*` argument that is not "auto", True or False (1 and 0 included)."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f'{name} must be "auto", True or False, got {value!r}')


def _preserve_clusters(model, preserve_clusters, keras3):
    """Whether quantization-aware training keeps the model's clusters."""
    check_preserve_flag("preserve_clusters", preserve_clusters)
    if preserve_clusters is False or (keras3 and preserve_clusters == "auto"):
        return False
    if keras3:
        raise UnsupportedModelError("preserve_clusters=True needs a tf_keras model: clustering and "
                                    "cluster-preserving quantization are built on tfmot.")
    from keras_compress.clustering.report import is_clustered

    clustered = is_clustered(model)
    if preserve_clusters is True and not clustered:
        raise KerasCompressError(f"preserve_clusters=True, but model {model.name!r} is not clustered: "
                                 "cluster and strip it first (kc.clustering), or pass \"auto\".")
    return clustered


def quantize_aware(model, *, preserve_sparsity="auto", preserve_clusters="auto", strict=False):
    """A copy of `model` that trains with int8 fake quantization.

    Fine-tune the result with `fit` for an epoch or two, then export it: a QAT model
    exports to int8 TFLite and ONNX (explicit Q/DQ) without calibration data.

    Weights are symmetric int8, per output channel for convolutions and per tensor for
    Dense; activations 8-bit over ranges set by the first training batch, then moving averages
    of the batches' ranges. tf_keras models use
    tfmot's default 8-bit scheme; Keras 3 models (TensorFlow or JAX backend) keras_compress's
    own layers (`keras3_qat`), which fold a BatchNormalization that follows a convolution
    into it, with frozen statistics, as TFLite and TensorRT run it.

    Layers that are not quantized (e.g. a BatchNormalization that does not directly
    follow a convolution) stay float and are listed in one warning; `strict=True`
    raises instead. Their outputs are quantized where a quantized layer reads them, so that
    layer still runs in int8. With `preserve_sparsity="auto"` a sparse model (pruned, then
    stripped) keeps its zeros zero through training; with `preserve_clusters="auto"` a
    clustered tf_keras model (`kc.clustering`, stripped) keeps its kernels on their
    centroids (tfmot's cluster-preserving scheme: the centroids train, and with sparsity
    too, the zeros stay).

    Args:
        model: a built Sequential or functional model, Keras 3 or tf_keras, without pruning
            wrappers.
        preserve_sparsity: "auto" (when a kernel has 5% zeros or more), True (refused for a
            dense model) or False.
        preserve_clusters: "auto" (when a tf_keras kernel holds few distinct values, each
            repeated four times or more on average over its nonzero weights:
            `kc.clustering.is_clustered`), True (refused for an unclustered or Keras 3 model)
            or False.
        strict: raise `KerasCompressError` rather than leave layers float.

    Returns:
        A new, uncompiled model; the weights are copied from `model`.

    Example:
        >>> import keras_compress as kc
        >>> import tf_keras as keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")])
        >>> qat = kc.quantization.quantize_aware(model)
        >>> kc.quantization.is_quantize_aware(qat)
        True
    """
    check_graph_model(model, action="quantize")
    keras3 = flavour_of(model) == KERAS3
    check_preserve_flag("preserve_sparsity", preserve_sparsity)
    if pruning_wrappers(model):
        raise KerasCompressError("The model still has pruning wrappers: quantize "
                                 "keras_compress.pruning.strip(model) after pruning.")
    if not keras3 and any(isinstance(layer, ClusterWeights) for layer in model.layers):
        raise KerasCompressError("The model still has clustering wrappers: quantize "
                                 "keras_compress.clustering.strip(model) after clustering.")
    if is_quantize_aware(model):
        raise KerasCompressError(f"Model {model.name!r} is already quantization-aware: train it as it is, "
                                 "or quantize the float model it came from.")
    quantized = keras_for(model).quantized_layers(model) if keras3 else []
    if quantized:
        raise KerasCompressError(
            f"Model {model.name!r} was post-training quantized with Keras' model.quantize() (layers "
            f"{', '.join(quantized)}): its int8 kernels are frozen and cannot be trained "
            "with fake quantization. Call quantize_aware on the float model, before model.quantize().")
    sparse = has_sparse_kernel(model)
    if preserve_sparsity is True and not sparse:
        raise KerasCompressError(f"preserve_sparsity=True, but model {model.name!r} is dense (no kernel has "
                                 "5% zeros): prune and strip it first, or leave preserve_sparsity=\"auto\".")
    sparse = sparse and preserve_sparsity is not False
    clusters = _preserve_clusters(model, preserve_clusters, keras3)
    if keras3:
        from keras_compress.quantization.keras3_qat import quantize_aware_keras3

        return quantize_aware_keras3(model, sparse, strict)
    scheme = quantize_scheme(sparse, clusters)
    candidates = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    annotations = {}
    for layer in candidates:
        if isinstance(layer, _SAME_SCALE):
            annotations[layer.name] = _same_scale_config
        elif quantizable(layer) or _folded_batch_norm(layer):
            annotations[layer.name] = None
        elif isinstance(layer, _OUTPUT_ONLY):
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
            raise KerasCompressError(
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
            raise KerasCompressError(message + " Pass strict=False to accept that, or change them "
                                     "(e.g. put BatchNormalization right after a Conv2D).")
        warnings.warn(message, stacklevel=2)
    return result


def quantized_weights(layer):
    """`[(variable, fake-quantized value, scale)]` for the quantized weights of a QAT layer.

    `scale` is the symmetric int8 step (per tensor, or per channel along the last axis);
    `value / scale` are integers in [-127, 127].
    """
    if flavour_of(layer) == KERAS3:
        from keras_compress.quantization.keras3_qat import quantized_weights_keras3

        return quantized_weights_keras3(layer)
    if not isinstance(layer, _quantize.QuantizeWrapper):
        return []
    result = []
    for weight, quantizer, variables in weight_quantizers(layer):
        value = quantizer(weight, training=False, weights=variables).numpy()
        low, high = variables["min_var"].numpy(), variables["max_var"].numpy()
        scale = (np.maximum(np.abs(low), np.abs(high)) / 127.0).astype(np.float32)
        result.append((weight, value, scale))
    return result


def quantized_kernel_count(model):
    """How many kernels of a QAT model train on the int8 grid."""
    if flavour_of(model) == KERAS3:
        from keras_compress.quantization.keras3_qat import quantized_kernel_count as keras3_count

        return keras3_count(model)
    return sum(len(weight_quantizers(layer)) for layer in model.layers
               if isinstance(layer, _quantize.QuantizeWrapper))
