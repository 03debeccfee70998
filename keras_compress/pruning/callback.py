"""`PruningCallback`: the one callback a pruned model's `fit` needs."""

import tensorflow as tf

from keras_compress._keras import keras, set_train_function, steps_per_execution, train_function
from keras_compress.pruning._channels import ChannelGraph, unwrap
from keras_compress.pruning.prune import apply_masks, find_pruned_model, pruning_wrappers
from keras_compress.pruning.ranking import channel_mask_values, filter_masks, global_weight_masks
from keras_compress.pruning.report import sparsity as sparsity_report
from keras_compress.pruning.wrapper import RankedSchedule

__all__ = ["PruningCallback"]


class PruningCallback(keras.callbacks.Callback):
    """Drives pruning during `fit`.

    It resolves schedules given in epochs (or without a frequency) from the real
    number of steps per epoch, advances the pruning step, ranks weights or filters
    across layers for `scope="global"` and `granularity="filter"`, and re-applies
    the masks right after every training step, so that any checkpoint written by
    `ModelCheckpoint` or `BackupAndRestore`, whatever their place in the callback
    list, is as sparse as its masks say. The step lives in the model's weights, so
    training resumed from a checkpoint continues the schedule where it stopped.

    Args:
        log_dir: if given, per-layer sparsity is written there for TensorBoard at
            the end of every epoch.

    Example:
        >>> import numpy as np, keras_compress as kc
        >>> keras = kc.keras
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        >>> pruned.compile("sgd", "mse")
        >>> x, y = np.ones((16, 8)), np.zeros((16, 4))
        >>> _ = pruned.fit(x, y, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
        >>> kc.pruning.sparsity(pruned).total_sparsity
        0.5
    """

    def __init__(self, log_dir=None):
        super().__init__()
        if log_dir is not None and (not isinstance(log_dir, str) or not log_dir):
            raise ValueError(f"log_dir must be None or a non-empty path, got {log_dir!r}")
        self.log_dir = log_dir
        self._writer = None
        self._original_train_function = None

    def on_train_begin(self, logs=None):
        self._pruned = find_pruned_model(self.model)
        if self._pruned is None:
            raise ValueError("PruningCallback found no pruning wrappers in the model: train the "
                             "model returned by keras_compress.pruning.prune().")
        self._wrappers = wrappers = pruning_wrappers(self._pruned)
        params = getattr(self, "params", None)  # unset when a custom training loop calls the hooks
        steps = params.get("steps") if params else None
        changed = False
        for wrapper in wrappers:
            schedule = wrapper.pruning_schedule
            timing = schedule.schedule if isinstance(schedule, RankedSchedule) else schedule
            changed |= timing.resolve(steps)
        first = wrappers[0].pruning_schedule
        self._ranked = first if isinstance(first, RankedSchedule) else None
        if self._ranked is not None:
            self._steps_per_call = steps_per_execution(self.model)
            if self._ranked.granularity == "filter":
                self._graph = ChannelGraph(self._pruned)
                self._layers = {unwrap(layer).name: layer for layer in self._pruned.layers}
        for wrapper in wrappers:
            if int(wrapper.pruning_step.numpy()) < 0:
                wrapper.pruning_step.assign(0)
            wrapper.driven_by_pruning_callback = True
        self._next_step = int(wrappers[0].pruning_step.numpy()) + 1
        # In `fit`, the train function is hooked; a custom training loop calls the batch hooks.
        self._in_fit = params is not None
        if not self._in_fit:
            self._steps_per_call = 1
            self._remask = self._remask_function()
            return
        if changed:
            self.model.make_train_function(force=True)
        self._install_step_hooks()
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def _remask_function(self):
        pairs = [(weight, mask) for wrapper in self._wrappers for weight, mask, _ in wrapper.pruning_vars]

        @tf.function
        def remask():
            for weight, mask in pairs:
                weight.assign(weight * mask)

        return remask

    def _install_step_hooks(self):
        original = train_function(self.model)
        # An interrupted fit leaves our hook installed; never stack two.
        original = getattr(original, "_pruning_original", original)
        remask = self._remask_function()

        def hooked(iterator):
            if self._ranked is not None:
                self._update_ranked_masks()
            logs = original(iterator)
            remask()
            return logs

        hooked._pruning_original = original
        self._original_train_function = original
        set_train_function(self.model, hooked)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._in_fit and self._ranked is not None:
            self._update_ranked_masks()

    def on_train_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._remask()

    def on_epoch_begin(self, epoch, logs=None):
        # Keras shortens the last call of an epoch to the steps left: count from the truth again.
        self._next_step = int(self._wrappers[0].pruning_step.numpy()) + 1

    def on_train_end(self, logs=None):
        if self._original_train_function is not None:
            set_train_function(self.model, self._original_train_function)
            self._original_train_function = None

    def _update_ranked_masks(self):
        # One call of the train function runs `steps_per_execution` steps; counting them
        # here saves reading the step variable back from the device at every call.
        first = self._next_step
        self._next_step += self._steps_per_call
        schedule = self._ranked.schedule
        due = [step for step in range(first, self._next_step) if schedule.prunes_at(step)]
        if not due:
            return
        target = float(schedule(due[-1])[1])
        if self._ranked.granularity == "weight":
            values = global_weight_masks(self._wrappers, target)
        else:
            keep = filter_masks(self._graph, self._layers, target, self._ranked.scope)
            values = [pair for wrapper in self._wrappers
                      for pair in channel_mask_values(self._graph, unwrap(wrapper).name, wrapper, keep)]
        for mask, value in values:
            mask.assign(value)
        apply_masks(self._pruned)

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # `batch`: tfmot's callback names this argument so, and its guide passes it by keyword.
        if not self._in_fit:
            self._remask()  # custom loops may call on_train_batch_begin only, as tfmot's guide does
        if self._writer is None:
            return
        report = sparsity_report(self._pruned)
        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default():
            for row in report.layers:
                tf.summary.scalar(f"sparsity/{row['layer']}", row["sparsity"], step=step)
            tf.summary.scalar("sparsity/total", report.total_sparsity, step=step)
        self._writer.flush()
