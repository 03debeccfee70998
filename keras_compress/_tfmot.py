"""The one module for tensorflow-model-optimization's internals.

Every private tfmot module, class or attribute the package needs is reached here,
behind named helpers, so that the rest of the package uses tfmot's public API and
these names only. It also holds the subclasses that fix how tfmot's quantization
layers save and load.
"""

import os

import tensorflow as tf


def _import_tfmot():
    """Imports tfmot without its side effect on the process: on import it sets
    TF_USE_LEGACY_KERAS=1, which would turn the user's `tf.keras` into tf_keras."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    getattr(tf.keras, "version", None)  # resolves `tf.keras` as the user's environment says, once
    try:
        import tensorflow_model_optimization
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tensorflow_model_optimization


tfmot = _import_tfmot()

# The imports below read tfmot, which must be imported through the guard above first.
# ruff: noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _prune_preserve)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _registry)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
    NoOpActivation, QuantizeAwareActivation)
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry, pruning_wrapper

from keras_compress._keras import keras

__all__ = ["tfmot", "TfmotPruneWrapper", "QuantizeLayer", "QuantizeWrapperV2", "data_classes",
           "is_quantization_layer", "make_loadable", "prunability", "quantizable", "weight_quantizers"]

_quantize = tfmot.quantization.keras

# tfmot's pruning wrapper class (public only through `prune_low_magnitude`).
TfmotPruneWrapper = pruning_wrapper.PruneLowMagnitude


def prunability(layer):
    """"weights" if tfmot can wrap `layer` and prune some of its weights, "none" if it can
    wrap it but there is nothing to prune, None if tfmot cannot wrap it at all."""
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return "weights"
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return None
    return "weights" if registry._weight_names(layer) or registry._is_rnn_layer(layer) else "none"


def quantizable(layer):
    """Whether tfmot's default 8-bit registry quantizes `layer` on its own."""
    return _registry.Default8BitQuantizeRegistry().supports(layer)


def data_classes():
    """tfmot's base classes whose configs hold settings only (no code): quantize configs,
    quantizers, activation wrappers and pruning schedules."""
    return (_quantize.QuantizeConfig, _quantize.quantizers.Quantizer, tfmot.sparsity.keras.PruningSchedule,
            QuantizeAwareActivation, NoOpActivation)


def is_quantization_layer(layer):
    """Whether `layer` is one of tfmot's QAT layers (a quantize wrapper or input quantizer)."""
    return isinstance(layer, (_quantize.QuantizeWrapper, _quantize_layer.QuantizeLayer))


def weight_quantizers(layer):
    """`[(weight, quantizer, quantizer variables)]` of a QAT wrapper."""
    return list(layer._weight_vars)


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
        for weight, _, quantizer_variables in weight_quantizers(self):
            mask = quantizer_variables.get("sparsity_mask")
            if mask is not None and not isinstance(mask, tf.Variable):
                variable = self.add_weight(f"{self._weight_name(weight.name)}_sparsity_mask",
                                           shape=weight.shape,
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


def make_loadable(model):
    """Gives a freshly quantized model's layers this module's loadable subclasses (they add
    only saving methods; rebuilding from the config would recompute sparsity masks)."""
    for layer in model.layers:
        loadable = {"QuantizeLayer": QuantizeLayer, "QuantizeWrapperV2": QuantizeWrapperV2}
        layer.__class__ = loadable.get(type(layer).__name__, type(layer))
        if isinstance(layer, QuantizeWrapperV2):
            layer._keep_masks_in_variables()
    return model
