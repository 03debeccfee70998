"""Pruning the built-in layers inside a Keras 3 model's custom layers, in place.

A custom layer (keras.io's `TransformerBlock`, a keras-hub encoder) is code that calls its own
`Dense`, `EinsumDense` (MultiHeadAttention's projections) or `Embedding` layers: no wrapper can
stand between it and them. So the masks live on those layers themselves, as variables added
after they were built, and a `SublayerMasks` beside each offers the pruning wrapper's protocol
(`pruning_vars`, `pruning_step`, the schedule). `PruningCallback` ranks them with the model's
wrappers, and the train step sets their pruned weights to zero after every step, so the layer's
own call reads the pruned weights. Only layers that save just the variables they declare are
masked so (Dense, EinsumDense, Embedding, the convolutions): a saved pruned model holds its zeros,
not its masks, and loads as a plain model; `strip` copies it so. Loading a file into the pruned
model (`load_weights`, `BackupAndRestore`) takes the masks from the zeros it holds.
"""

import keras
import numpy as np

from keras_compress._keras3 import (
    add_variable,
    child_layers,
    load_without,
    saves_declared_variables_only,
    sublayers,
)
from keras_compress.layer_kinds import builtin_name
from keras_compress.pruning.report import kernels

__all__ = ["SublayerMasks", "own_kernels", "targets", "inside", "paired", "mask_in_place", "hold", "holders"]

_HOLDERS = "_keras_compress_masks_inside"  # the attribute of a pruned model listing its SublayerMasks


def own_kernels(layer):
    """The kernels and embeddings `layer` itself holds (not those of the layers inside it)."""
    inner = {id(variable) for sublayer in sublayers(layer) for variable in kernels(sublayer)}
    return [variable for variable in kernels(layer) if id(variable) not in inner]


def targets(layer):
    """`[(path, built-in layer)]`: the layers inside the custom `layer` that hold kernels or
    embeddings of their own, found through the layers each holds (custom ones included), named by
    their path of layer names (`"transformer_block/multi_head_attention/query"`)."""
    found = []

    def walk(outer, prefix):
        for inner in child_layers(outer):
            path = f"{prefix}/{inner.name}"
            if builtin_name(inner) and saves_declared_variables_only(inner) and own_kernels(inner):
                found.append((path, inner))
            walk(inner, path)

    walk(layer, layer.name)
    return found


def inside(model, prunability):
    """`{custom layer name: [(path, built-in layer)]}`: the `targets` of each of `model`'s layers that
    pruning does not know (`prunability(layer) is None`), each layer once (one held by two custom
    layers, or twice in one, by its first path)."""
    seen, found = set(), {}
    for layer in model.layers:
        if prunability(layer) is not None:
            continue
        pairs = []
        for path, inner in targets(layer):
            if id(inner) not in seen:
                seen.add(id(inner))
                pairs.append((path, inner))
        if pairs:
            found[layer.name] = pairs
    return found


def paired(original, copied):
    """`{name: [(path, layer, its copy)]}` from `inside` of a model and of its copy, which rebuilds
    the same layers in the same order (under new names)."""
    triples = {}
    for name, pairs in original.items():
        twins = copied.get(name, [])
        if len(twins) != len(pairs) or any(type(a) is not type(b) or [w.shape for w in a.weights]
                                           != [w.shape for w in b.weights]
                                           for (_, a), (_, b) in zip(pairs, twins)):
            raise RuntimeError(f"The copy of layer {name!r} holds other layers than the layer: its "
                               "config does not rebuild what its __init__ built.")
        triples[name] = [(path, layer, twin) for (path, layer), (_, twin) in zip(pairs, twins)]
    return triples


class SublayerMasks:
    """The pruning masks of a built-in layer inside a custom layer, held on that layer.

    Attributes:
        layer: the masked layer.
        layer_path: its path in the model, by the names of the layers around it.
        pruning_vars: `[(weight, mask, None)]`, as the pruning wrappers have them.
        pruning_step: the step counter `PruningCallback` advances.
        pruning_schedule, granularity, scope, block_size, sparsity_m_by_n: as the wrapper's.
    """

    def __init__(self, layer, path, pruning_schedule, granularity, scope, block_size, sparsity_m_by_n,
                 weights=None):
        self.layer = layer
        self.layer_path = path
        self.pruning_schedule = pruning_schedule
        self.granularity = granularity
        self.scope = scope
        self.block_size = tuple(block_size)
        self.sparsity_m_by_n = tuple(sparsity_m_by_n) if sparsity_m_by_n else None
        self.driven_by_pruning_callback = False
        weights = own_kernels(layer) if weights is None else weights  # whole units mask biases too
        masks = [add_variable(layer, "mask", tuple(weight.shape), weight.dtype, "ones") for weight in weights]
        self.pruning_step = add_variable(layer, "pruning_step", (), "int32", keras.initializers.Constant(-1))
        self.pruning_vars = [(weight, mask, None) for weight, mask in zip(weights, masks)]
        load_without(layer, [*masks, self.pruning_step], self._masks_from_zeros)

    def _masks_from_zeros(self):
        """After a file is loaded into the layer: its pruned weights are the zeros it holds."""
        for weight, mask, _ in self.pruning_vars:
            mask.assign((np.asarray(weight.numpy()) != 0).astype(mask.dtype))


def mask_in_place(model, targets, schedule, granularity, scope, block_size, m_by_n):
    """Adds pruning masks to `targets` (`[(path, built-in layer inside a custom one)]`) of the pruned
    `model`, which lists them (a plain attribute: Keras neither tracks nor saves it)."""
    hold([SublayerMasks(layer, path, schedule, granularity, scope, block_size, m_by_n)
          for path, layer in targets], model)


def hold(masks, model):
    """Lists the `SublayerMasks` `masks` on the pruned `model`."""
    object.__setattr__(model, _HOLDERS, masks)


def holders(model):
    """The `SublayerMasks` that `prune` added inside `model`'s custom layers, in order."""
    return list(getattr(model, _HOLDERS, []))
