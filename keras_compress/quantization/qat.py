"""Quantization-aware training with tfmot, sparsity-preserving when the model is sparse."""

import warnings

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _prune_preserve)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _registry)
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _quantize_layer

from keras_compress._keras import check_graph_model, inbound_layers, keras
from keras_compress.errors import KerasCompressError
from keras_compress.pruning.prune import pruning_wrappers

__all__ = ["quantize_aware", "is_quantize_aware", "quantized_weights"]

_quantize = tfmot.quantization.keras


class QuantizeLayer(_quantize_layer.QuantizeLayer):
    """tfmot's QuantizeLayer, marked built after `build`: otherwise a `.keras` load builds
    it twice (from the saved build config, then on first call) and its weights do not match.
    Same class name, so `.keras` files store its weights under the same key."""

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


class QuantizeWrapperV2(_quantize.QuantizeWrapperV2):
    """tfmot's QuantizeWrapperV2, saving its variables by name in `.keras` files and
    remembering that its weights keep their sparsity.

    tfmot's wrapper lists its variables in a different order (and count: the kernel
    appears twice) when built while loading, so Keras' index-based restore fails; its
    config drops the pruning-preserving weight quantizer; and that quantizer keeps its
    mask as a constant tensor computed at build time (stale after loading, and an extra
    graph input for tf2onnx). Here the mask is a non-trainable variable, saved with the
    model. Same class name, so the file layout is unchanged.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self._keep_masks_in_variables()

    def _keep_masks_in_variables(self):
        for weight, _, quantizer_variables in self._weight_vars:
            mask = quantizer_variables.get("sparsity_mask")
            if mask is not None and not isinstance(mask, tf.Variable):
                variable = self.add_weight(f"{self._weight_name(weight.name)}_sparsity_mask", shape=weight.shape,
                                           initializer=keras.initializers.Ones(), trainable=False)
                variable.assign(mask)
                quantizer_variables["sparsity_mask"] = variable

    def get_config(self):
        config = super().get_config()
        quantizer = getattr(self.quantize_config, "weight_quantizer", None)
        if isinstance(quantizer, _prune_preserve.PrunePreserveDefaultWeightsQuantizer):
            config["preserve_sparsity"] = True
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        preserve_sparsity = config.pop("preserve_sparsity", False)
        wrapper = super().from_config(config)
        if preserve_sparsity:
            # tfmot's own `apply_sparsity_preserve_quantize_config` needs a built layer.
            quantizers = _prune_preserve.Default8bitPrunePreserveQuantizeRegistry()._config_quantizer_map
            wrapper.quantize_config.weight_quantizer = quantizers[type(wrapper.quantize_config).__name__]
        return wrapper

    def _own_variables(self):
        variables = {}
        for variable in self._trainable_weights + self._non_trainable_weights:
            variables.setdefault(variable.name.split("/")[-1].split(":")[0], variable)
        return variables

    def save_own_variables(self, store):
        for key, variable in self._own_variables().items():
            store[key] = variable.numpy()

    def load_own_variables(self, store):
        variables = self._own_variables()
        missing = sorted(set(variables) - set(store.keys()))
        if missing:
            raise ValueError(f"Layer {self.name!r}: the file has no values for {missing}.")
        for key, variable in variables.items():
            variable.assign(store[key])


def _register_tfmot_objects():
    """Lets QAT models load with plain `load_model`, without tfmot's `quantize_scope`."""
    objects = dict(_quantize.quantize_scope().custom_objects[0], QuantizeLayer=QuantizeLayer,
                   QuantizeWrapperV2=QuantizeWrapperV2)
    for name in ("PrunePreserveDefault8BitConvWeightsQuantizer", "PrunePreserveDefault8BitWeightsQuantizer",
                 "PrunePreserveDefaultWeightsQuantizer"):
        objects[name] = getattr(_prune_preserve, name)
    custom = keras.utils.get_custom_objects()
    for name, obj in objects.items():
        custom.setdefault(name, obj)
    custom.update(QuantizeLayer=QuantizeLayer, QuantizeWrapperV2=QuantizeWrapperV2)


_register_tfmot_objects()


def is_quantize_aware(model):
    """True when `model` holds tfmot quantization wrappers (it came from `quantize_aware`)."""
    return any(isinstance(layer, (_quantize.QuantizeWrapper, _quantize_layer.QuantizeLayer))
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
    # Give the layers this module's loadable subclasses (they add only saving methods).
    # Rebuilding from the config instead would recompute the sparsity masks from fresh weights.
    for layer in quantized.layers:
        loadable = {"QuantizeLayer": QuantizeLayer, "QuantizeWrapperV2": QuantizeWrapperV2}
        layer.__class__ = loadable.get(type(layer).__name__, type(layer))
        if isinstance(layer, QuantizeWrapperV2):
            layer._keep_masks_in_variables()
    return quantized


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
        >>> keras = kc.keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")])
        >>> qat = kc.quantization.quantize_aware(model)
        >>> kc.quantization.is_quantize_aware(qat)
        True
    """
    check_graph_model(model, action="quantize")
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
    support = _registry.Default8BitQuantizeRegistry()
    candidates = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    annotated = {layer.name for layer in candidates if support.supports(layer) or _folded_batch_norm(layer)}
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
    for weight, quantizer, variables in layer._weight_vars:
        value = quantizer(weight, training=False, weights=variables).numpy()
        low, high = variables["min_var"].numpy(), variables["max_var"].numpy()
        scale = (np.maximum(np.abs(low), np.abs(high)) / 127.0).astype(np.float32)
        result.append((weight, value, scale))
    return result
