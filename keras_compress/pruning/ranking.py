"""Pruning masks, computed in numpy from weight values: magnitude within a layer (single
weights, blocks, m:n patterns), one magnitude ranking across layers, and filters by norm.

Every function reads weights through `read(variable) -> array` (by default the variable's
value), so the same code ranks tf_keras and Keras 3 weights, and the weights of a JAX
training state that the variables do not hold during `fit`.
"""

import warnings

import numpy as np

from keras_compress.layer_kinds import rule_for
from keras_compress.pruning._channels import unwrap

__all__ = ["global_weight_masks", "layer_weight_masks", "filter_masks", "channel_mask_values", "read_value",
           "smallest"]


def read_value(variable):
    """A variable's value as a numpy array."""
    return np.asarray(variable.numpy())


def _dtype(variable):
    return np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype))


def global_weight_masks(wrappers, sparsity, read=read_value):
    """One magnitude threshold over every wrapped weight: `[(mask variable, new mask)]`. Warns
    when the threshold removes every weight of a layer."""
    values = [[(read(weight), mask) for weight, mask, _ in wrapper.pruning_vars] for wrapper in wrappers]
    pairs = [pair for layer_pairs in values for pair in layer_pairs]
    magnitudes = np.concatenate([np.abs(w).ravel() for w, _ in pairs])
    count = int(round(sparsity * magnitudes.size))
    if count == 0:
        return [(mask, np.ones(w.shape, _dtype(mask))) for w, mask in pairs]
    threshold = np.partition(magnitudes, count - 1)[count - 1]
    emptied = [getattr(wrapper, "layer_path", None) or wrapper.layer.name  # masks inside custom layers
               for wrapper, layer_pairs in zip(wrappers, values)
               if all(np.all(np.abs(w) <= threshold) for w, _ in layer_pairs)]
    if emptied:
        warnings.warn(f"Global pruning removes every weight of layer(s) {', '.join(emptied)} (the smallest "
                      "weights of the model): their outputs become constant, and training can diverge. "
                      'Exclude them (exclude=[...]) or prune with scope="layer".', stacklevel=2)
    return [(mask, (np.abs(w) > threshold).astype(_dtype(mask))) for w, mask in pairs]


def smallest(scores, sparsity):
    """A keep-mask of `scores`' shape without its `sparsity` share of smallest entries."""
    flat = scores.ravel()
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:int(round(sparsity * flat.size))]] = False
    return keep.reshape(scores.shape)


def _block_mask(value, sparsity, block):
    """Magnitude pruning of `block`-shaped tiles of the last two axes, ranked by mean magnitude."""
    rows, cols = value.shape[-2:]
    height, width = block
    pad = [(0, 0)] * (value.ndim - 2) + [(0, -rows % height), (0, -cols % width)]
    tiles = np.pad(np.abs(value), pad)
    shape = tiles.shape[:-2] + (tiles.shape[-2] // height, height, tiles.shape[-1] // width, width)
    scores = tiles.reshape(shape).mean(axis=(-3, -1))
    keep = smallest(scores, sparsity)
    keep = np.repeat(np.repeat(keep, height, axis=-2), width, axis=-1)
    return keep[..., :rows, :cols]


def _m_by_n_mask(value, m, n):
    """Zeros the `m` smallest of every `n` consecutive input weights (axis -2)."""
    moved = np.moveaxis(np.abs(value), -2, -1)
    groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // n, n))
    order = np.argsort(groups, axis=-1, kind="stable")
    keep = np.ones(groups.shape, bool)
    np.put_along_axis(keep, order[..., :m], False, axis=-1)
    return np.moveaxis(keep.reshape(moved.shape), -1, -2)


def layer_weight_masks(wrapper, sparsity, read=read_value):
    """Masks of one wrapper's weights by their own magnitudes: `[(mask variable, new mask)]`
    (its block size or m:n pattern included)."""
    values = []
    for weight, mask, _ in wrapper.pruning_vars:
        value = read(weight)
        if wrapper.sparsity_m_by_n:
            keep = _m_by_n_mask(value, *wrapper.sparsity_m_by_n)
        elif tuple(wrapper.block_size) != (1, 1) and value.ndim >= 2:
            keep = _block_mask(value, sparsity, wrapper.block_size)
        else:
            keep = smallest(np.abs(value), sparsity)
        values.append((mask, keep.astype(_dtype(mask))))
    return values


def _filter_scores(graph, layers, read):
    """Per group: the sum over its producers of each output channel's kernel L2 norm,
    and the kernel parameters one channel holds."""
    scores = {}
    for space, group in graph.groups.items():
        kernels = []
        for name in group.producers:
            layer = unwrap(layers[name])
            kernel, axis = rule_for(layer).weights(layer)[0]
            kernels.append(np.moveaxis(read(kernel), axis, -1))
        norms = sum(np.sqrt(np.sum(k.reshape(-1, k.shape[-1]) ** 2, axis=0)) for k in kernels)
        per_channel = sum(int(np.prod(k.shape[:-1])) for k in kernels)
        scores[space] = (norms, per_channel)
    return scores


def _unit_scores(units, read):
    """`(norms, kernel parameters per unit)` of a `keras3_structures.Units`: each unit's L2 norm over
    its slices of the scored kernels."""
    squares, per_unit = 0.0, 0
    for kernel, axis in units.scored:
        value = np.moveaxis(read(kernel), axis % len(kernel.shape), 0).reshape(units.size, -1)
        squares = squares + np.sum(value ** 2, axis=1)
        per_unit += value.shape[1]
    return np.sqrt(squares), per_unit


def filter_masks(graph, layers, sparsity, scope, read=read_value, units=()):
    """Boolean keep-masks `{space: mask}` for every removable channel group, and `[mask]` for every
    `keras3_structures.Units` in `units` (attention heads, nested models' width).

    With scope "layer" each group loses `sparsity` of its channels; with "global"
    channels are ranked by their norm relative to their group's mean and removed
    until `sparsity` of all grouped kernel parameters is gone. A group always keeps
    at least one channel.
    """
    scores = _filter_scores(graph, layers, read)
    scores.update({("units", index): _unit_scores(found, read) for index, found in enumerate(units)})
    masks = {key: np.ones(len(norms), bool) for key, (norms, _) in scores.items()}
    order = {key: index for index, key in enumerate(scores)}
    if scope == "layer":
        for key, (norms, _) in scores.items():
            count = min(len(norms) - 1, int(round(sparsity * len(norms))))
            masks[key][np.argsort(norms, kind="stable")[:count]] = False
    else:
        total = sum(len(norms) * per_channel for norms, per_channel in scores.values())
        budget = sparsity * total
        ranked = []
        for key, (norms, per_channel) in scores.items():
            mean = norms.mean()
            relative = norms / mean if mean > 0 else np.zeros_like(norms)
            ranked.extend((score, order[key], channel, key, per_channel)
                          for channel, score in enumerate(relative))
        ranked.sort(key=lambda item: item[:3])
        removed = 0
        left = {key: len(norms) for key, (norms, _) in scores.items()}
        for _, _, channel, key, per_channel in ranked:
            if removed >= budget:
                break
            if left[key] > 1:
                masks[key][channel] = False
                left[key] -= 1
                removed += per_channel
    return ({key: mask for key, mask in masks.items() if not isinstance(key, tuple)},
            [masks[("units", index)] for index in range(len(units))])


def channel_mask_values(graph, name, wrapper, keep):
    """`[(mask variable, value)]` expanding channel keep-masks onto a wrapper's weights."""
    layer = unwrap(wrapper)
    if name in graph.outputs:
        channels = graph.output_channels(name, keep)
    else:
        channels, _ = graph.layer_channels(name, keep)
    axes = {id(variable): axis % len(variable.shape) for variable, axis in rule_for(layer).weights(layer)}
    values = []
    for weight, mask, _ in wrapper.pruning_vars:
        axis = axes[id(weight)]
        shape = [1] * len(weight.shape)
        shape[axis] = -1
        value = np.broadcast_to(channels.reshape(shape), tuple(weight.shape))
        values.append((mask, value.astype(_dtype(mask))))
    return values
