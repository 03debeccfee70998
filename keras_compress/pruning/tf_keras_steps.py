"""How `PruningCallback` drives a tf_keras model's `fit`: tfmot's wrapper counts its steps and
ranks single weights within a layer in its own call; the callback ranks the other masks
(`RankedSchedule`) before a call of the train function, and sets pruned weights back to zero
after it. The pruning-steps road of `_keras`; `keras3_steps` is Keras 3's."""

from keras_compress._keras import set_train_function
from keras_compress.pruning.wrapper import RankedSchedule

__all__ = ["ranking", "schedules_changed", "install", "after_custom_step", "uninstall"]


def ranking(wrapper):
    """`(schedule, granularity, scope)` of masks the callback ranks, or None where tfmot ranks them."""
    schedule = wrapper.pruning_schedule
    if isinstance(schedule, RankedSchedule):
        return schedule.schedule, schedule.granularity, schedule.scope
    return None


def schedules_changed(model):
    """tfmot reads the schedules inside the traced step: trace it again."""
    model.make_train_function(force=True)


def install(callback, model, original):
    """The train function to hook in place of `original`: ranks masks when due, runs `original`,
    then sets pruned weights back to zero."""
    remask = callback.remask_function()

    def hooked(iterator):
        callback.rank_due_masks()
        logs = original(iterator)
        remask()
        return logs

    return hooked


def after_custom_step(wrappers):
    """Nothing: tfmot's wrapper counts its steps in its own call."""


def uninstall(model, original):
    """Gives `model` back its own train function."""
    set_train_function(model, original)
