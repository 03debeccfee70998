"""The pruning wrapper and the schedule of rankings made by `PruningCallback`.

Both extend tfmot's classes so tfmot's tools (`strip_pruning`, its summaries)
keep working, and both are registered with Keras so pruned models load with a
plain `keras.models.load_model`, without tfmot's `prune_scope`.
"""

import tensorflow as tf

from keras_compress._keras import is_saving, keras
from keras_compress._tfmot import TfmotPruneWrapper, tfmot
from keras_compress.layer_kinds import rule_for
from keras_compress.pruning.schedules import ConstantSparsity, PolynomialDecay

__all__ = ["PruneLowMagnitude", "RankedSchedule", "pruning_wrap"]

_PACKAGE = "keras_compress"

# Layers may be saved by tfmot itself; let those load without a scope too. And the schedules
# (plain Python) load under the names their configs give.
keras.utils.get_custom_objects().setdefault("PruneLowMagnitude", TfmotPruneWrapper)
for _schedule in (PolynomialDecay, ConstantSparsity):
    keras.utils.get_custom_objects().setdefault(f"{_PACKAGE}>{_schedule.__name__}", _schedule)


@keras.utils.register_keras_serializable(package=_PACKAGE)
class RankedSchedule(tfmot.sparsity.keras.PruningSchedule):
    """Holds the user's schedule for masks that `PruningCallback` ranks itself.

    The wrapper never updates these masks on its own (`__call__` says "don't
    prune"); the callback ranks weights or filters across layers at the steps
    where `schedule` says so.
    """

    def __init__(self, schedule, granularity, scope):
        self.schedule = schedule
        self.granularity = granularity
        self.scope = scope

    def __call__(self, step):
        return tf.constant(False), tf.constant(0.0)

    def get_config(self):
        return {"class_name": keras.utils.get_registered_name(type(self)),
                "config": {"schedule": self.schedule.get_config(),
                           "granularity": self.granularity, "scope": self.scope}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.utils.deserialize_keras_object(config["schedule"])
        return cls(**config)


@keras.utils.register_keras_serializable(package=_PACKAGE)
class PruneLowMagnitude(TfmotPruneWrapper):
    """tfmot's pruning wrapper, saving its m-by-n pattern, with whole-channel masks.

    Args:
        layer: the layer to prune.
        channelwise: mask whole channels of the weights the layer's channel rule names
            (a kernel and its bias, a BatchNormalization's gamma and beta), so a pruned
            channel carries exact zeros.
        **kwargs: as for `tfmot.sparsity.keras.PruneLowMagnitude`.
    """

    def __init__(self, layer, channelwise=False, **kwargs):
        if channelwise:  # before tfmot checks the layer: a layer kind with a channel rule is prunable
            layer.get_prunable_weights = lambda: rule_for(layer).masked_weights(layer)
        super().__init__(layer, **kwargs)
        self.channelwise = channelwise
        # Set by PruningCallback when it drives this layer; global and filter masks are
        # ranked by that callback only.
        self.driven_by_pruning_callback = False

    def call(self, inputs, training=None, **kwargs):
        if training is True and not is_saving():  # a training step being traced: the start of fit
            self._check_training_is_driven()
        return super().call(inputs, training=training, **kwargs)

    def _check_training_is_driven(self):
        if self.driven_by_pruning_callback:
            return
        ranked = isinstance(self.pruning_schedule, RankedSchedule)
        with tf.init_scope():
            try:
                started = int(self.pruning_step.numpy()) >= 0
            except (AttributeError, NotImplementedError, ValueError):  # a distributed variable
                started = True
        if ranked or not started:
            what = (f'scope="{self.pruning_schedule.scope}", '
                    f'granularity="{self.pruning_schedule.granularity}"'
                    if ranked else "no pruning callback in this fit")
            raise RuntimeError(
                f"Layer {self.name!r} is pruned by keras_compress ({what}): train it with "
                "callbacks=[keras_compress.pruning.PruningCallback()], which ranks and applies the masks. "
                + ("tfmot's UpdatePruningStep would leave it dense." if ranked else ""))

    def get_config(self):
        config = super().get_config()
        config.update(channelwise=self.channelwise, sparsity_m_by_n=self.sparsity_m_by_n)
        return config


def pruning_wrap(schedule, granularity, scope, block_size, m_by_n):
    """`(layer -> its pruning wrapper, whether fit needs PruningCallback to apply the masks)`:
    tfmot ranks single weights within a layer (and m:n) itself; `PruningCallback` ranks the rest."""
    tfmot_ranks = granularity == "weight" and scope == "layer" or granularity == "m:n"
    wrapper_schedule = schedule if tfmot_ranks else RankedSchedule(schedule, granularity, scope)

    def wrap(layer):
        return PruneLowMagnitude(layer, pruning_schedule=wrapper_schedule, block_size=block_size,
                                 sparsity_m_by_n=m_by_n, channelwise=granularity == "filter")
    return wrap, not tfmot_ranks
