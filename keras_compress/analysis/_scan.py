"""The rows of a one-layer-at-a-time scan: which weights each row changes, and to what."""

import dataclasses
from collections.abc import Callable

import numpy as np

from keras_compress._flavour import check_graph_model
from keras_compress.errors import ModelStateError
from keras_compress.layer_kinds import kind_of, rule_for
from keras_compress.pruning._channels import ChannelGraph
from keras_compress.pruning.prune import pruning_wrappers, weights_to_prune
from keras_compress.pruning.ranking import filter_masks, smallest
from keras_compress.pruning.report import kernels

__all__ = ["Unit", "UNITS", "FilterGroups", "filter_units", "global_weight_unit", "shrunk",
           "check_model_and_ratios", "INT8"]

INT8 = "int8"  # the one column of an int8 scan


@dataclasses.dataclass
class Unit:
    """One row: the weights it changes, and their value at each column."""

    name: str
    layers: list
    parameters: int
    compressed: Callable  # column -> [(variable, value)]


def weight_units(model, excluded):
    def unit(layer):
        variables = kernels(layer)
        originals = [np.asarray(v.numpy()) for v in variables]

        def compressed(ratio):
            return [(v, np.where(smallest(np.abs(value), ratio), value, 0).astype(value.dtype))
                    for v, value in zip(variables, originals)]
        return Unit(layer.name, [layer.name], sum(value.size for value in originals), compressed)
    return [unit(layer) for layer in model.layers if kernels(layer) and layer.name not in excluded]


def global_weight_unit(model, excluded, name):
    """One row for the whole model: the weights `prune` masks in every layer outside `excluded`
    lose the smallest of one ranking over all of them, as `prune(scope="global")` ranks them."""
    pruned = weights_to_prune(model, excluded)
    variables = [variable for layer_variables in pruned.values() for variable in layer_variables]
    originals = [np.asarray(v.numpy()) for v in variables]
    magnitudes = np.concatenate([np.abs(value).ravel() for value in originals]) if originals else np.zeros(0)
    ends = np.cumsum([value.size for value in originals])[:-1]

    def compressed(ratio):
        keeps = np.split(smallest(magnitudes, ratio), ends)
        return [(v, np.where(keep.reshape(value.shape), value, 0).astype(value.dtype))
                for v, value, keep in zip(variables, originals, keeps)]
    return Unit(name, list(pruned), int(magnitudes.size), compressed)


def _on_int8_grid(value, axis):
    """`value` rounded to symmetric int8 (per channel along `axis`, "depthwise" for a depthwise
    kernel's channels and multipliers, or one scale for None), as int8 kernels run it."""
    if axis is None:
        peak = np.abs(value).max()
    elif axis == "depthwise":
        peak = np.abs(value).max(axis=(0, 1), keepdims=True)
    else:
        axis = axis % value.ndim
        peak = np.abs(value).max(axis=tuple(i for i in range(value.ndim) if i != axis), keepdims=True)
    scale = np.maximum(peak, 1e-12) / 127.0
    return (np.clip(np.round(value / scale), -127, 127) * scale).astype(value.dtype)


def int8_units(model, excluded):
    units = []
    for layer in model.layers:
        kind = kind_of(layer)
        if layer.name in excluded or kind.int8 not in ("kernel", "split"):
            continue
        if kind.int8 == "split":  # SeparableConv2D: a depthwise kernel, then a 1x1 convolution's
            pairs = [(layer.depthwise_kernel, "depthwise"), (layer.pointwise_kernel, -1)]
        else:
            pairs = [(layer.kernel, kind.kernel_axis)]
        originals = [np.asarray(v.numpy()) for v, _ in pairs]

        def compressed(column, pairs=pairs, originals=originals):
            return [(v, _on_int8_grid(value, axis)) for (v, axis), value in zip(pairs, originals)]
        units.append(Unit(layer.name, [layer.name], sum(value.size for value in originals), compressed))
    return units


class FilterGroups:
    """The channel groups filter pruning can remove from `model` (one layer's filters, or the
    layers an `Add` ties together), named by their producers, and the weight values that zero
    each group's smallest filters, as `prune(granularity="filter")` ranks them."""

    def __init__(self, model, excluded):
        self.graph = ChannelGraph(model, frozen_layers=excluded)
        self.layers = {layer.name: layer for layer in model.layers}
        graph, layers = self.graph, self.layers
        # The layers whose weights hold a group's channels: the producers, and the members reading them.
        touched = [name for name in layers if rule_for(layers[name]) is not None and (
            name in graph.outputs or (name in graph.inputs and any(s.space in graph.groups
                                                                   for s in graph.inputs[name][0])))]
        self._originals = {name: [(v, axis, np.asarray(v.numpy())) for v, axis in
                                  rule_for(layers[name]).weights(layers[name], rule_for(layers[name]).masked)]
                           for name in touched}
        self._masks = {}
        self.spaces = {"+".join(group.producers): space for space, group in graph.groups.items()}

    def sizes(self) -> dict:
        """Filters (channels) per group, by group name."""
        return {name: self.graph.groups[space].size for name, space in self.spaces.items()}

    def _mask(self, name, ratio):
        if ratio not in self._masks:
            self._masks[ratio] = filter_masks(self.graph, self.layers, ratio, "layer")[0]
        return self._masks[ratio][self.spaces[name]]

    def kept(self, name, ratio) -> int:
        """How many of group `name`'s filters stay when `ratio` of them are removed."""
        return int(self._mask(name, ratio).sum())

    def changes(self, ratios):
        """`[(variable, value)]` removing `ratios[group name]` of each named group's filters."""
        keep = {}
        for name, ratio in ratios.items():
            if ratio > 0:
                keep[self.spaces[name]] = self._mask(name, ratio)
        changed = []
        for name, originals in self._originals.items():
            if name in self.graph.outputs:
                channels = self.graph.output_channels(name, keep)
            else:
                channels, _ = self.graph.layer_channels(name, keep)
            if channels.all():
                continue
            for variable, axis, value in originals:
                shape = [1] * value.ndim
                shape[axis % value.ndim] = -1
                changed.append((variable, (value * channels.reshape(shape)).astype(value.dtype)))
        return changed

    def units(self):
        def unit(name, group):
            parameters = sum(int(np.prod(rule_for(self.layers[p]).weights(self.layers[p])[0][0].shape))
                             for p in group.producers)
            return Unit(name, list(group.producers), parameters, lambda ratio: self.changes({name: ratio}))
        return [unit(name, self.graph.groups[space]) for name, space in self.spaces.items()]


def filter_units(model, excluded):
    return FilterGroups(model, excluded).units()


def shrunk(model, changes, verify=True):
    """A smaller copy of `model` with `changes` applied and the zeroed filters removed
    (`shrink`, checked against the changed model with `verify`); `model`'s weights are put back."""
    from keras_compress.pruning.shrink import shrink

    saved = [(variable, np.asarray(variable.numpy())) for variable, _ in changes]
    for variable, value in changes:
        variable.assign(value)
    try:
        return shrink(model, verify=verify)
    finally:
        for variable, value in saved:
            variable.assign(value)


# The rows of each granularity, as `units(model, excluded layer names) -> [Unit]`.
UNITS = {"filter": filter_units, "weight": weight_units, "int8": int8_units}


def check_model_and_ratios(model, ratios):
    """The model's flavour module, after refusing what no scan can take."""
    flavour = check_graph_model(model, action="analyze")
    if pruning_wrappers(model):
        raise ModelStateError(f"Model {model.name!r} still has pruning wrappers: analyze "
                              "kc.pruning.strip(model), or the model before pruning.")
    if isinstance(ratios, (int, float)) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in ratios):
        raise ValueError(f"ratios must be a non-empty sequence of shares between 0 and 1 (exclusive), "
                         f"e.g. (0.25, 0.5, 0.75), got {ratios!r}")
    return flavour
