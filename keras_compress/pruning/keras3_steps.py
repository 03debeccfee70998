"""The train-function hook of `PruningCallback` for Keras 3 models, per backend.

Around every call of the model's train function (one call runs `steps_per_execution`
steps) the hook ranks new masks when a pruning step is due, then, after the steps, writes
the pruned weights back as zeros and sets each wrapper's step counter to the optimizer's
step count plus the offset they had when training started. On TensorFlow this works on
the variables in a compiled function. On JAX, `fit` keeps the weights in a state it passes
from step to step (the variables are empty meanwhile), so the hook reads and rewrites
that state in a jitted function instead: no state sync, nothing copied to the host
except on the steps that rank masks.
"""

import numpy as np

from keras_compress.pruning.prune import apply_masks

__all__ = ["hook"]


def _step_offset(callback, model):
    return callback._current_step() - int(model.optimizer.iterations.numpy())


def hook(callback, model, original):
    """`(hooked train function, resync)` for `model` (Keras 3): the function calls `original`
    for the steps; `resync()` re-reads the step offset (at the start of an epoch, after a
    checkpoint may have been restored)."""
    if callback._flavour.backend() == "jax":
        return _jax_hook(callback, model, original)
    return _tensorflow_hook(callback, model, original)


def _tensorflow_hook(callback, model, original):
    import tensorflow as tf

    pairs = [(weight, mask) for wrapper in callback._wrappers for weight, mask, _ in wrapper.pruning_vars]
    counters = [wrapper.pruning_step for wrapper in callback._wrappers]
    iterations = model.optimizer.iterations
    offset = tf.Variable(_step_offset(callback, model), dtype=tf.int64, trainable=False)

    @tf.function
    def after_steps():
        for weight, mask in pairs:
            weight.assign(weight * mask)
        for counter in counters:
            counter.assign(tf.cast(iterations.value + offset, counter.dtype))

    def hooked(iterator):
        sparsity = callback.due_sparsity()
        if sparsity is not None:
            for mask, value in callback.new_masks(sparsity):
                mask.assign(value)
            apply_masks(callback._pruned)
        logs = original(iterator)
        after_steps()
        return logs

    return hooked, lambda: offset.assign(_step_offset(callback, model))


class _StateIndex:
    """Where each variable sits in a JAX training state `(trainable, non_trainable, optimizer, metrics)`."""

    def __init__(self, model):
        self._where = {}
        for part, variables in enumerate((model.trainable_variables, model.non_trainable_variables,
                                          model.optimizer.variables)):
            for index, variable in enumerate(variables):
                self._where.setdefault(id(variable), (part, index))

    def __call__(self, variable):
        return self._where[id(variable)]


def _jax_hook(callback, model, original):
    import jax
    import jax.numpy as jnp

    where = _StateIndex(model)
    pairs = [(where(weight), where(mask)) for wrapper in callback._wrappers
             for weight, mask, _ in wrapper.pruning_vars]
    counters = [where(wrapper.pruning_step) for wrapper in callback._wrappers]
    iterations = where(model.optimizer.iterations)
    offset = [_step_offset(callback, model)]

    @jax.jit
    def after_steps(state, offset):
        parts = [list(part) for part in state[:3]]
        for (weight_part, weight), (mask_part, mask) in pairs:
            parts[weight_part][weight] = parts[weight_part][weight] * parts[mask_part][mask]
        step = parts[iterations[0]][iterations[1]] + offset
        for part, index in counters:
            parts[part][index] = step.astype(parts[part][index].dtype)
        return tuple(parts) + tuple(state[3:])

    def rank_masks(state, sparsity):
        parts = [list(part) for part in state[:3]]

        def read(variable):
            part, index = where(variable)
            return np.asarray(parts[part][index])

        for mask, value in callback.new_masks(sparsity, read):
            part, index = where(mask)
            parts[part][index] = jnp.asarray(value)
        for (weight_part, weight), (mask_part, mask) in pairs:
            parts[weight_part][weight] = parts[weight_part][weight] * parts[mask_part][mask]
        return tuple(parts) + tuple(state[3:])

    def hooked(state, iterator):
        sparsity = callback.due_sparsity()
        if sparsity is not None:
            state = rank_masks(state, sparsity)
        logs, state = original(state, iterator)
        return logs, after_steps(state, jnp.asarray(offset[0]))

    def resync():
        offset[0] = _step_offset(callback, model)

    return hooked, resync
