"""The Keras 3 pruning wrapper: masks held beside a layer, applied in every call.

The wrapper owns one non-trainable mask per pruned weight and a step counter, and calls
the wrapped layer with `stateless_call` on its weights times their masks, so the forward
pass and the gradients see the pruned model on the TensorFlow and the JAX backend
alike. `PruningCallback` decides the masks and writes pruned weights back as zeros after
every step. The wrapper is registered with Keras, so pruned `.keras` files load with a
plain `keras.saving.load_model`.
"""

import keras

from keras_compress._keras3 import call_takes_mask, call_takes_training, call_with_values, unwrapped
from keras_compress.layer_kinds import builtin_name, channel_masked_weights
from keras_compress.pruning.report import kernels
from keras_compress.pruning.schedules import ConstantSparsity, PolynomialDecay

__all__ = ["PruneLowMagnitude", "prunable_weights", "prunability", "pruning_wrap", "strip_pruning"]

_SCHEDULES = {cls.__name__: cls for cls in (PolynomialDecay, ConstantSparsity)}


def _is_keras_layer(layer):
    return (type(layer).__module__ or "").split(".")[0] == "keras"


def prunable_weights(layer, channelwise=False):
    """The weights of `layer` that a mask prunes: those its channel rule masks with
    `channelwise`, else the kernels and embeddings of a built-in Keras layer (and of the
    built-in layers inside it, e.g. MultiHeadAttention's projections). Empty when none."""
    if channelwise:
        return channel_masked_weights(layer)
    if not _is_keras_layer(layer):
        return []
    return kernels(layer)


def prunability(layer):
    """As tfmot's for tf_keras: "weights", "none" (nothing to prune) or None (a layer with weights
    that pruning does not know: custom layers stay dense)."""
    if prunable_weights(layer):
        return "weights"
    return "none" if builtin_name(layer) or not layer.weights else None


def strip_pruning(model):
    """`model` with its pruning wrappers replaced by the layers inside them (weights shared)."""
    return unwrapped(model, (PruneLowMagnitude,))


@keras.saving.register_keras_serializable(package="keras_compress")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes a Keras 3 layer by masking its weights; `PruningCallback` sets the masks.

    Args:
        layer: a built Keras 3 layer with prunable weights.
        pruning_schedule: `PolynomialDecay` or `ConstantSparsity`.
        granularity: "weight", "filter" or "m:n".
        scope: "layer" or "global".
        block_size: `(h, w)` blocks of weights pruned together (granularity "weight").
        sparsity_m_by_n: `(m, n)` for granularity "m:n".
    """

    def __init__(self, layer, pruning_schedule, granularity="weight", scope="layer", block_size=(1, 1),
                 sparsity_m_by_n=None, **kwargs):
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.supports_masking = layer.supports_masking
        self.pruning_schedule = pruning_schedule
        self.granularity = granularity
        self.scope = scope
        self.block_size = tuple(block_size)
        self.sparsity_m_by_n = tuple(sparsity_m_by_n) if sparsity_m_by_n else None
        # Set by PruningCallback when it drives this layer: it alone sets the masks.
        self.driven_by_pruning_callback = False
        if layer.built:
            self._make_masks()

    @property
    def channelwise(self):
        return self.granularity == "filter"

    def _make_masks(self):
        weights = prunable_weights(self.layer, self.channelwise)
        if not weights:
            raise ValueError(f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has no weights "
                             f"to prune with granularity={self.granularity!r}.")
        self.masks = [self.add_weight(name="mask", shape=tuple(weight.shape), dtype=weight.dtype,
                                      initializer="ones", trainable=False) for weight in weights]
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), dtype="int32",
                                            initializer=keras.initializers.Constant(-1), trainable=False)
        # (weight, mask, None): the shape of tfmot's `pruning_vars`, read by reports and ranking.
        self.pruning_vars = [(weight, mask, None) for weight, mask in zip(weights, self.masks)]
        self.built = True

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._make_masks()

    def get_build_config(self):
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config["layer"])
            self.layer.built = True
        self._make_masks()

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if training and not self.driven_by_pruning_callback:  # a training step being traced
            raise RuntimeError(
                f"Layer {self.name!r} is pruned by keras_compress, and no pruning callback drives this "
                "training: train it with callbacks=[keras_compress.pruning.PruningCallback()], which sets "
                "the masks (without it the model would train dense).")
        masked = {id(weight): keras.ops.multiply(weight.value, mask_variable.value)
                  for weight, mask_variable, _ in self.pruning_vars}
        if call_takes_training(self.layer):
            kwargs["training"] = training
        if mask is not None and call_takes_mask(self.layer):
            kwargs["mask"] = mask
        outputs = call_with_values(self, masked, inputs, *args, **kwargs)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def compute_output_spec(self, *args, **kwargs):
        if not call_takes_mask(self.layer):
            kwargs.pop("mask", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(pruning_schedule={"class_name": type(self.pruning_schedule).__name__,
                                        "config": self.pruning_schedule.get_config()["config"]},
                      granularity=self.granularity, scope=self.scope, block_size=list(self.block_size),
                      sparsity_m_by_n=list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        schedule = config.pop("pruning_schedule")
        if schedule.get("class_name") not in _SCHEDULES:
            raise ValueError(f"Unknown pruning schedule {schedule.get('class_name')!r}: expected one of "
                             f"{sorted(_SCHEDULES)}.")
        config["pruning_schedule"] = _SCHEDULES[schedule["class_name"]].from_config(schedule["config"])
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"],
                                                                custom_objects=custom_objects)
        return cls(**config)


def pruning_wrap(schedule, granularity, scope, block_size, m_by_n):
    """`(layer -> its pruning wrapper, whether fit needs PruningCallback)`: it ranks every mask."""
    def wrap(layer):
        return PruneLowMagnitude(layer, pruning_schedule=schedule, granularity=granularity, scope=scope,
                                 block_size=block_size, sparsity_m_by_n=m_by_n)
    return wrap, True
