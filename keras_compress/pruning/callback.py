"""`PruningCallback`: the one callback a pruned model's `fit` needs, in tf_keras or Keras 3."""

import keras

from keras_compress._flavour import keras_for, road
from keras_compress._retracing import one_trace_per_model
from keras_compress.pruning._channels import ChannelGraph, unwrap
from keras_compress.pruning.prune import apply_masks, find_pruned_model, pruning_wrappers, unit_masks
from keras_compress.pruning.ranking import (
    channel_mask_values,
    filter_masks,
    global_weight_masks,
    layer_weight_masks,
    read_value,
)
from keras_compress.pruning.report import sparsity as sparsity_report

__all__ = ["PruningCallback"]


class PruningCallback(keras.callbacks.Callback):
    """Drives pruning during `fit`, for tf_keras and Keras 3 models alike.

    It resolves schedules given in epochs (or without a frequency) from the real
    number of steps per epoch, advances the pruning step, ranks weights or filters
    (across layers for `scope="global"` and `granularity="filter"`), and re-applies
    the masks right after every training step, so that any checkpoint written by
    `ModelCheckpoint` or `BackupAndRestore`, whatever their place in the callback
    list, is as sparse as its masks say. The step lives in the model's weights, so
    training resumed from a checkpoint continues the schedule where it stopped.
    Custom training loops call `on_train_begin`, `on_train_batch_begin` and
    `on_train_batch_end` themselves.

    Args:
        log_dir: if given, per-layer sparsity is written there for TensorBoard at
            the end of every epoch.

    Example:
        >>> import numpy as np, keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        >>> pruned.compile("sgd", "mse")
        >>> x, y = np.ones((16, 8)), np.zeros((16, 4))
        >>> _ = pruned.fit(x, y, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
        >>> kc.pruning.sparsity(pruned).total_sparsity
        0.5
    """

    # tf_keras's CallbackList asks these of every callback.
    _supports_tf_logs = False
    # Keras 3's CallbackList may run `on_train_batch_end` on a worker thread: in `fit` ours
    # returns at once (the masks are applied inside the train step), so `fit` need not wait
    # for each step's logs on the host before starting the next step.
    async_safe = True

    def _implements_train_batch_hooks(self):
        return True

    def _implements_test_batch_hooks(self):
        return False

    def _implements_predict_batch_hooks(self):
        return False

    def __init__(self, log_dir: str | None = None):
        super().__init__()
        if log_dir is not None and (not isinstance(log_dir, str) or not log_dir):
            raise ValueError(f"log_dir must be None or a non-empty path, got {log_dir!r}")
        self.log_dir = log_dir
        self._writer = None
        self._original_train_function = None
        self._epoch_end = None
        self._trained_model = None

    def set_model(self, model):
        super().set_model(model)
        # Read from here: Keras 3's `model` property syncs the JAX training state at every read.
        self._trained_model = model

    def on_train_begin(self, logs=None):
        model = self._trained_model
        self._pruned = find_pruned_model(model)
        if self._pruned is None:
            raise ValueError("PruningCallback found no pruning wrappers in the model: train the "
                             "model returned by keras_compress.pruning.prune().")
        self._flavour = keras_for(model, action="prune")
        self._steps = road(self._pruned, "pruning_steps")
        self.wrappers = wrappers = pruning_wrappers(self._pruned)
        params = self.params  # None when a custom training loop calls the hooks
        steps = params.get("steps") if params else None
        changed = False
        for wrapper in wrappers:
            ranking = self._steps.ranking(wrapper)
            timing = ranking[0] if ranking else wrapper.pruning_schedule
            # tfmot's own schedules (a model pruned by tfmot directly) count in steps as they are.
            changed |= timing.resolve(steps) if hasattr(timing, "resolve") else False
        ranking = self._steps.ranking(wrappers[0])  # None where the wrapper ranks its masks itself
        self._ranked = ranking is not None
        if self._ranked:
            self._schedule, self._granularity, self._scope = ranking
        if self._ranked and self._granularity == "filter":
            self._graph = ChannelGraph(self._pruned)
            self._layers = {unwrap(layer).name: layer for layer in self._pruned.layers}
            self._units = unit_masks(self._pruned)
        for wrapper in wrappers:
            if int(wrapper.pruning_step.numpy()) < 0:
                wrapper.pruning_step.assign(0)
            wrapper.driven_by_pruning_callback = True
        self._next_step = self._current_step() + 1
        self._steps_per_call = self._flavour.steps_per_execution(model)
        self._steps_per_epoch = steps
        # In `fit`, the train function (made before the callbacks start) is hooked; a custom
        # training loop calls the batch hooks (Keras' CallbackList may give it params too).
        self._in_fit = params is not None and self._flavour.train_function(model) is not None
        if not self._in_fit:
            self._steps_per_call = 1
            self._remask = self.remask_function()
            return
        if changed:
            self._steps.schedules_changed(model)
        self._install_step_hooks()
        if self.log_dir is not None and self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def _current_step(self):
        return int(self.wrappers[0].pruning_step.numpy())

    def remask_function(self):
        """Sets pruned weights to zero on the variables (a compiled function on TensorFlow)."""
        pairs = [(weight, mask) for wrapper in self.wrappers for weight, mask, _ in wrapper.pruning_vars]

        def remask():
            for weight, mask in pairs:
                weight.assign(weight * mask)

        if self._flavour.backend() != "tensorflow":
            return remask
        import tensorflow as tf

        one_trace_per_model("remask_function.<locals>")  # one per pruned model, each traced once
        return tf.function(remask)

    def _install_step_hooks(self):
        model = self._trained_model
        original = self._flavour.train_function(model)
        # An interrupted fit leaves our hook installed; never stack two.
        original = getattr(original, "_pruning_original", original)
        hooked = self._steps.install(self, model, original)

        def restoring_on_error(*args):
            try:
                return hooked(*args)
            except BaseException as error:
                # `fit` ends an epoch whose length is unknown on these; on anything else it stops
                # without calling `on_train_end`: the model gets its own functions back here.
                if not isinstance(error, StopIteration) and type(error).__name__ != "OutOfRangeError":
                    self._restore_model_functions()
                raise

        restoring_on_error._pruning_original = original
        self._original_train_function = original
        self._flavour.set_train_function(model, restoring_on_error)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._in_fit:
            self.rank_due_masks()

    def on_train_batch_end(self, batch, logs=None):
        if self._in_fit:
            return
        self._remask()
        self._steps.after_custom_step(self.wrappers)

    def on_epoch_begin(self, epoch, logs=None):
        # Keras shortens the last call of an epoch to the steps left: count from the truth again.
        self._next_step = self._current_step() + 1
        self._epoch_end = self._next_step + self._steps_per_epoch if self._steps_per_epoch else None

    def on_train_end(self, logs=None):
        self._restore_model_functions()

    def _restore_model_functions(self):
        if self._original_train_function is not None:
            self._steps.uninstall(self._trained_model, self._original_train_function)
            self._original_train_function = None

    def due_sparsity(self):
        """The sparsity to rank for before the next call of the train function, or None when no
        step of that call is a pruning step."""
        first = self._next_step
        self._next_step += self._steps_per_call
        if self._epoch_end is not None:  # the epoch's last call runs only the steps left
            self._next_step = min(self._next_step, self._epoch_end)
        due = [step for step in range(first, self._next_step) if self._schedule.prunes_at(step)]
        return float(self._schedule.sparsity_at(due[-1])) if due else None

    def new_masks(self, sparsity, read=read_value):
        """`[(mask variable, value)]` for every wrapped weight at `sparsity`, weights read by `read`."""
        if self._granularity == "filter":
            units = self._units.units if self._units else []
            keep, unit_keeps = filter_masks(self._graph, self._layers, sparsity, self._scope, read, units)
            held = {id(holder) for holder in self._units.holders} if self._units else set()
            pairs = [pair for wrapper in self.wrappers if id(wrapper) not in held
                     for pair in channel_mask_values(self._graph, unwrap(wrapper).name, wrapper, keep)]
            return pairs + (self._units.mask_values(unit_keeps) if self._units else [])
        if self._scope == "global":
            return global_weight_masks(self.wrappers, sparsity, read)
        return [pair for wrapper in self.wrappers for pair in layer_weight_masks(wrapper, sparsity, read)]

    def rank_due_masks(self):
        """Ranks and applies new masks when the next call of the train function prunes (and the
        callback, not the wrappers, ranks them)."""
        if not self._ranked:
            return
        sparsity = self.due_sparsity()
        if sparsity is None:
            return
        for mask, value in self.new_masks(sparsity):
            mask.assign(value)
        apply_masks(self._pruned)

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        # `batch`: tfmot's callback names this argument so, and its guide passes it by keyword.
        if not self._in_fit:
            self._remask()  # custom loops may call on_train_batch_begin only, as tfmot's guide does
        if self._writer is None:
            return
        import tensorflow as tf

        report = sparsity_report(self._pruned)
        step = int(self._trained_model.optimizer.iterations.numpy())
        with self._writer.as_default():
            for row in report.layers:
                tf.summary.scalar(f"sparsity/{row['layer']}", row["sparsity"], step=step)
            tf.summary.scalar("sparsity/total", report.total_sparsity, step=step)
        self._writer.flush()
