"""Quantization-aware training with tfmot, sparsity-preserving when the model is sparse."""

import warnings

import numpy as np

from keras_compress._flavour import TF_KERAS, check_graph_model
from keras_compress._keras import inbound_layers, keras
from keras_compress._tfmot import tfmot, is_quantization_layer, make_loadable, quantizable, weight_quantizers
from keras_compress.errors import KerasCompressError
from keras_compress.pruning.prune import pruning_wrappers

__all__ = ["quantize_aware", "is_quantize_aware", "quantized_weights"]

_quantize = tfmot.quantization.keras




def is_quantize_aware(model):
    """True when `model` holds tfmot quantization wrappers (it came from `quantize_aware`)."""
    return any(is_quantization_layer(layer)
               for layer in getattr(model, "layers", ()))


def _is_sparse(model, threshold=0.05):
    """Whether a kernel of the model has at least `threshold` exact zeros (it was pruned)."""
    for layer in model.layers:
        for weight in layer.weights:  # frozen layers too
            if "kernel" in weight.name and weight.shape.rank >= 2:
                if np.mean(weight.numpy() == 0) >= threshold:
                    return True
    return False


def _apply(model, annotated_names, scheme):
    def annotate(layer):
        if layer.name in annotated_names:
            return _quantize.quantize_annotate_layer(layer)
        return layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    # tfmot finds a layer's sparsity in its trainable weights: quantize unfrozen, then freeze
    # again what the caller had frozen.
    frozen = {layer.name for layer in model.layers if not layer.trainable}
    annotated.trainable = True
    with _quantize.quantize_scope():
        quantized = _quantize.quantize_apply(annotated, scheme)
    for layer in quantized.layers:
        if layer.name in frozen or getattr(getattr(layer, "layer", None), "name", None) in frozen:
            layer.trainable = False
    return make_loadable(quantized)


def _folded_batch_norm(layer):
    """Whether tfmot can quantize this layer as a BatchNormalization folded into the
    convolution before it (its Conv->BN transforms; a BN anywhere else it refuses)."""
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    before = inbound_layers(layer)
    return len(before) == 1 and isinstance(before[0], (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))


def quantize_aware(model, *, preserve_sparsity="auto", strict=False):
    """A copy of `model` that trains with int8 fake quantization (tfmot's default 8-bit scheme).

    Fine-tune the result with `fit` for an epoch or two, then export it: a QAT model
    exports to int8 TFLite and ONNX (explicit Q/DQ) without calibration data.

    Layers tfmot cannot quantize (e.g. a BatchNormalization that does not directly
    follow a convolution) stay float and are listed in one warning; `strict=True`
    raises instead. With `preserve_sparsity="auto"` a sparse model (pruned, then
    stripped) uses tfmot's pruning-preserving scheme, so its zeros stay zero.

    Args:
        model: a built Sequential or functional tf_keras model, without pruning wrappers.
        preserve_sparsity: "auto" (when the kernels hold many zeros), True or False.
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
    check_graph_model(model, action="quantize", flavours=(TF_KERAS,))
    if preserve_sparsity not in ("auto", True, False):
        raise ValueError(f'preserve_sparsity must be "auto", True or False, got {preserve_sparsity!r}')
    if pruning_wrappers(model):
        raise KerasCompressError("The model still has pruning wrappers: quantize "
                                 "keras_compress.pruning.strip(model) after pruning.")
    if is_quantize_aware(model):
        raise KerasCompressError(f"Model {model.name!r} is already quantization-aware.")
    sparse = _is_sparse(model) if preserve_sparsity == "auto" else preserve_sparsity
    scheme = (_quantize.collab_opts.Default8BitPrunePreserveQuantizeScheme() if sparse
              else _quantize.default_8bit.Default8BitQuantizeScheme())
    candidates = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    annotated = {layer.name for layer in candidates if quantizable(layer) or _folded_batch_norm(layer)}
    # Should tfmot refuse a layer all the same, leave it float and try again (the graph rule
    # above makes that rare: each try clones the whole model).
    while True:
        try:
            result = _apply(model, annotated, scheme)
            break
        except RuntimeError as error:
            name = next((n for n in annotated if f"Layer {n}:" in str(error)), None)
            if name is None:
                raise
            annotated.discard(name)
    left_float = [layer.name for layer in candidates if layer.name not in annotated]
    if left_float:
        message = (f"These layers of {model.name!r} stay float (tfmot cannot quantize them): "
                   f"{', '.join(left_float)}.")
        if strict:
            raise KerasCompressError(message + " Pass strict=False to accept that, or change them "
                                     "(e.g. put BatchNormalization right after a Conv2D).")
        warnings.warn(message, stacklevel=2)
    return result


def quantized_weights(layer):
    """`[(variable, fake-quantized value, scale)]` for the quantized weights of a QAT wrapper.

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
