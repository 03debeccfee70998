"""How `PruningCallback` drives a Keras 3 model's `fit`, on the TensorFlow and the JAX backend.

Two pieces. The model's training step is wrapped so that, inside the compiled step itself,
every pruned weight is written back as zeros right after the optimizer moves it and each
wrapper's step counter advances by one: exact with `steps_per_execution`, and no extra
call per step. And the train function (one call runs `steps_per_execution` steps) is
wrapped so that, before a call whose steps include a pruning step, new masks are ranked.
On TensorFlow that reads and writes the variables. On JAX, `fit` keeps the weights in a
state it passes from call to call (the variables are empty meanwhile), so the ranking
reads and rewrites that state instead: nothing is copied to the host except on the calls
that rank masks. The pruning-steps road of `_keras3`; `tf_keras_steps` is tf_keras's.
"""

import numpy as np

from keras_compress._keras3 import backend, forget_step_function, train_function

__all__ = ["ranking", "schedules_changed", "install", "after_custom_step", "uninstall"]


def ranking(wrapper):
    """`(schedule, granularity, scope)`: the callback ranks every mask."""
    return wrapper.pruning_schedule, wrapper.granularity, wrapper.scope


def schedules_changed(model):
    """Nothing: `install` compiles the train function anew, with the schedules as they are."""


def after_custom_step(wrappers):
    """Advances each wrapper's step counter after a step of a custom training loop."""
    step = int(wrappers[0].pruning_step.numpy()) + 1
    for wrapper in wrappers:
        wrapper.pruning_step.assign(step)


def _zero_pruned_and_count(wrappers):
    """The in-step update on the variables: pruned weights to zero, counters + 1."""
    pairs = [(weight, mask) for wrapper in wrappers for weight, mask, _ in wrapper.pruning_vars]
    counters = [wrapper.pruning_step for wrapper in wrappers]

    def update():
        for weight, mask in pairs:
            weight.assign(weight * mask)
        for counter in counters:
            counter.assign(counter + 1)

    return update


class _StateIndex:
    """Where each variable sits in a JAX training state `(trainable, non_trainable, optimizer, metrics)`."""

    def __init__(self, model):
        self._where = {}
        for part, variables in enumerate((model.trainable_variables, model.non_trainable_variables)):
            for index, variable in enumerate(variables):
                self._where.setdefault(id(variable), (part, index))

    def __call__(self, variable):
        return self._where[id(variable)]


def _jax_pieces(callback, model):
    """`(state update after each step, ranking of masks into a state)` for JAX."""
    import jax.numpy as jnp

    where = _StateIndex(model)
    pairs = [(where(weight), where(mask)) for wrapper in callback.wrappers
             for weight, mask, _ in wrapper.pruning_vars]
    counters = [where(wrapper.pruning_step) for wrapper in callback.wrappers]

    def zero_pruned(parts):
        for (weight_part, weight), (mask_part, mask) in pairs:
            parts[weight_part][weight] = parts[weight_part][weight] * parts[mask_part][mask]

    def after_step(state):
        parts = [list(part) for part in state[:2]]
        zero_pruned(parts)
        for part, index in counters:
            parts[part][index] = parts[part][index] + 1
        return tuple(parts) + tuple(state[2:])

    def rank(state, sparsity):
        parts = [list(part) for part in state[:2]]

        def read(variable):
            part, index = where(variable)
            return np.asarray(parts[part][index])

        for mask, value in callback.new_masks(sparsity, read):
            part, index = where(mask)
            parts[part][index] = jnp.asarray(value)
        zero_pruned(parts)
        return tuple(parts) + tuple(state[2:])

    return after_step, rank


def install(callback, model, original):
    """Wraps `model`'s training step, recompiles it, and returns the train function to hook in
    place of `original`: it ranks masks when due, then calls the recompiled one."""
    step = model.train_step
    step = getattr(step, "_pruning_original_step", step)  # an interrupted fit left it wrapped
    if backend() == "jax":
        after_step, rank = _jax_pieces(callback, model)

        def jax_step(state, data):
            logs, state = step(state, data)
            return logs, after_step(state)
        train_step = jax_step
    else:
        update = _zero_pruned_and_count(callback.wrappers)

        def tensorflow_step(data):
            logs = step(data)
            update()
            return logs
        train_step = tensorflow_step

    train_step._pruning_original_step = step
    model.train_step = train_step
    model.make_train_function(force=True)
    compiled = train_function(model)

    if backend() == "jax":
        def jax_call(state, iterator):
            sparsity = callback.due_sparsity()
            if sparsity is not None:
                state = rank(state, sparsity)
            return compiled(state, iterator)
        hooked = jax_call
    else:
        def tensorflow_call(iterator):
            callback.rank_due_masks()
            return compiled(iterator)
        hooked = tensorflow_call

    return hooked


def uninstall(model, original):
    """Gives `model` back its own training step; its next `fit` compiles it anew."""
    if hasattr(model.train_step, "_pruning_original_step"):
        del model.train_step
    forget_step_function(model, "train")
