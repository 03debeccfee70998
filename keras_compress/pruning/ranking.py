"""Masks ranked across layers: global weight magnitude, and filters by norm."""

import numpy as np

from keras_compress.pruning._channels import unwrap
from keras_compress.pruning.layer_rules import rule_for

__all__ = ["global_weight_masks", "filter_masks", "channel_mask_values"]


def global_weight_masks(wrappers, sparsity):
    """One magnitude threshold over every wrapped weight: `[(mask variable, new mask)]`."""
    pairs = [(weight.numpy(), mask) for wrapper in wrappers for weight, mask, _ in wrapper.pruning_vars]
    magnitudes = np.concatenate([np.abs(w).ravel() for w, _ in pairs])
    count = int(round(sparsity * magnitudes.size))
    if count == 0:
        return [(mask, np.ones(w.shape, mask.dtype.as_numpy_dtype)) for w, mask in pairs]
    threshold = np.partition(magnitudes, count - 1)[count - 1]
    return [(mask, (np.abs(w) > threshold).astype(mask.dtype.as_numpy_dtype)) for w, mask in pairs]


def _filter_scores(graph, layers):
    """Per group: the sum over its producers of each output channel's kernel L2 norm,
    and the kernel parameters one channel holds."""
    scores = {}
    for space, group in graph.groups.items():
        kernels = []
        for name in group.producers:
            layer = unwrap(layers[name])
            kernel, axis = rule_for(layer).weights(layer)[0]
            kernels.append(np.moveaxis(kernel.numpy(), axis, -1))
        norms = sum(np.sqrt(np.sum(k.reshape(-1, k.shape[-1]) ** 2, axis=0)) for k in kernels)
        per_channel = sum(int(np.prod(k.shape[:-1])) for k in kernels)
        scores[space] = (norms, per_channel)
    return scores


def filter_masks(graph, layers, sparsity, scope):
    """Boolean keep-masks `{space: mask}` for every removable channel group.

    With scope "layer" each group loses `sparsity` of its channels; with "global"
    channels are ranked by their norm relative to their group's mean and removed
    until `sparsity` of all grouped kernel parameters is gone. A group always keeps
    at least one channel.
    """
    scores = _filter_scores(graph, layers)
    masks = {space: np.ones(group.size, bool) for space, group in graph.groups.items()}
    if scope == "layer":
        for space, (norms, _) in scores.items():
            count = min(len(norms) - 1, int(round(sparsity * len(norms))))
            masks[space][np.argsort(norms, kind="stable")[:count]] = False
        return masks
    total = sum(len(norms) * per_channel for norms, per_channel in scores.values())
    budget = sparsity * total
    ranked = []
    for space, (norms, per_channel) in scores.items():
        mean = norms.mean()
        relative = norms / mean if mean > 0 else np.zeros_like(norms)
        ranked.extend((score, space, channel, per_channel) for channel, score in enumerate(relative))
    ranked.sort(key=lambda item: (item[0], item[1], item[2]))
    removed = 0
    left = {space: len(norms) for space, (norms, _) in scores.items()}
    for _, space, channel, per_channel in ranked:
        if removed >= budget:
            break
        if left[space] > 1:
            masks[space][channel] = False
            left[space] -= 1
            removed += per_channel
    return masks


def channel_mask_values(graph, name, wrapper, keep):
    """`[(mask variable, value)]` expanding channel keep-masks onto a wrapper's weights."""
    layer = unwrap(wrapper)
    if name in graph.outputs:
        channels = graph.output_channels(name, keep)
    else:
        channels, _ = graph.layer_channels(name, keep)
    axes = {id(variable): axis % variable.shape.rank for variable, axis in rule_for(layer).weights(layer)}
    values = []
    for weight, mask, _ in wrapper.pruning_vars:
        axis = axes[id(weight)]
        shape = [1] * weight.shape.rank
        shape[axis] = -1
        value = np.broadcast_to(channels.reshape(shape), weight.shape)
        values.append((mask, value.astype(mask.dtype.as_numpy_dtype)))
    return values
