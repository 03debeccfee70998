"""Attention heads and feed-forward width inside a Keras 3 model: ranked with its filters, masked
in place, and removed by `shrink`.

`granularity="filter"` removes whole units. Beside the filters of the model's own graph
(`ChannelGraph`) it finds two kinds of units the graph cannot see:

- the heads of every `MultiHeadAttention`, at the top level or inside a custom layer: a head is its
  slices of the query, key, value (and gate) kernels and biases and of the output kernel, so a
  masked head adds exactly nothing to the output, and `shrink` rebuilds the layer with fewer
  `num_heads`;
- the hidden channels of a model nested in a custom layer (keras.io's `self.ffn =
  keras.Sequential([Dense(ff_dim), Dense(embed_dim)])`): the removable spaces of that model's own
  `ChannelGraph`, whose inputs and outputs stay, and `shrink` shrinks the nested model.

The masks live on the built-in layers that hold the weights (as `keras3_sublayers` does for single
weights). `shrink` puts the smaller layers into a copy of the custom layer
(`replaced_layers.replaced_copy`), so that a saved model loads with its smaller layers.
"""

import dataclasses

import keras
import numpy as np

from keras_compress._keras3 import (
    attention_projections,
    child_layers,
    is_graph_model,
    saves_declared_variables_only,
)
from keras_compress.layer_kinds import builtin_name, rule_for
from keras_compress.pruning._channels import ChannelGraph
from keras_compress.replaced_layers import Replaced, in_scope_of

__all__ = ["Units", "UnitMasks", "find", "hold", "unit_masks", "dead_heads", "fewer_heads"]

_UNITS = "_keras_compress_units"  # the attribute of a pruned model holding its UnitMasks


@dataclasses.dataclass
class Units:
    """The removable units of one layer in a model.

    Attributes:
        path: the layer's path by layer names (`"transformer_block/multi_head_attention"`).
        kind: "heads" (a MultiHeadAttention) or "width" (a space of a nested model's graph).
        layer: the MultiHeadAttention or the nested model.
        size: how many units there are.
        scored: `[(kernel, axis)]`: a unit's score is the L2 norm of its slices of these.
        sliced: `[(weight, axis, owner path, owner layer)]`: every weight a unit has a slice of.
        route: the indices of the child layers leading from the model's layer `top` to `layer`.
        top: the name of the model's own layer that is or holds `layer`.
    """

    path: str
    kind: str
    layer: object
    size: int
    scored: list
    sliced: list
    route: tuple
    top: str


def _is_attention(layer):
    """A built MultiHeadAttention, or a subclass that builds and holds the same weights (keras-hub's
    `CachedMultiHeadAttention`): its heads can be sliced."""
    mha = keras.layers.MultiHeadAttention
    if not (isinstance(layer, mha) and layer.built and type(layer).build is mha.build):
        return False
    projections = {id(w) for _, dense in attention_projections(layer) for w in dense.weights}
    return {id(w) for w in layer.weights} == projections


def _heads(layer, path, route, top):
    """The heads of a MultiHeadAttention, or None when its weights are not laid out by head."""
    heads = layer.num_heads
    sliced = []
    for role, dense in attention_projections(layer):
        axis = 0 if role == "output" else 1
        kernel = dense.kernel
        if len(kernel.shape) != 3 or kernel.shape[axis] != heads:
            return None
        sliced.append((kernel, axis, f"{path}/{dense.name}", dense))
        if role != "output" and dense.bias is not None:
            sliced.append((dense.bias, 0, f"{path}/{dense.name}", dense))
    scored = [(weight, axis) for weight, axis, _, _ in sliced if len(weight.shape) == 3]
    return Units(path, "heads", layer, heads, scored, sliced, route, top)


def _width(model, path, route, top):
    """The hidden spaces of a model nested in a custom layer whose channels only its producers,
    members and single-input readers touch, each a layer that saves only its declared variables
    (so that the masks added to it stay out of its files)."""
    graph = ChannelGraph(model)
    layers = {layer.name: layer for layer in model.layers}
    found = []
    for space, group in graph.groups.items():
        touching = {name: segments for name, (segments, repeat) in graph.inputs.items()
                    if any(s.space == space for s in segments)}
        names = set(group.producers) | set(touching)
        if any(len(segments) != 1 or graph.inputs[name][1] != 1 for name, segments in touching.items()) or \
                not all(saves_declared_variables_only(layers[name]) for name in names):
            continue  # concatenated, flattened or saving every variable: left whole
        sliced, scored = [], []
        for name in sorted(names, key=list(layers).index):
            layer, rule = layers[name], rule_for(layers[name])
            if name in graph.outputs and name in group.producers:
                pairs = rule.weights(layer, rule.masked)
                scored.append(pairs[0])
            elif name in graph.outputs:  # a producer of another space, reading this one
                pairs = rule.input_weights(layer)
            else:
                pairs = rule.weights(layer, rule.masked)
            sliced += [(weight, axis, f"{path}/{name}", layer) for weight, axis in pairs]
        found.append(Units(path, "width", model, group.size, scored, sliced, route, top))
    return found


def _in_custom_layer(layer, path, route, top):
    """Units inside a custom layer: its attention layers' heads, the width of the models it nests,
    and those of the custom layers it holds."""
    found = []
    for index, child in enumerate(child_layers(layer)):
        where = (f"{path}/{child.name}", route + (index,), top)
        if _is_attention(child):
            found += [units for units in [_heads(child, *where)] if units]
        elif is_graph_model(child):
            found += _width(child, *where)
        else:
            found += _in_custom_layer(child, *where)
    return found


def _in_graph_model(model, path, route, top):
    """Units inside the custom layers of a graph model nested in the model (a keras-hub backbone):
    its own layers are not attributes of anything, so only what its custom layers hold can change."""
    found = []
    for index, child in enumerate(child_layers(model)):
        where = (f"{path}/{child.name}", route + (index,), top)
        if is_graph_model(child):
            found += _in_graph_model(child, *where)
        elif builtin_name(child) is None:
            found += _in_custom_layer(child, *where)
    return found


def find(model):
    """`[Units]` of `model`: the heads of its MultiHeadAttention layers and, inside its custom layers
    (and the graph models it nests), those of theirs and the hidden width of the models they hold;
    a layer called or held twice, once."""
    found = []
    for layer in model.layers:
        inner, route = (layer.layer, (0,)) if isinstance(layer, Replaced) else (layer, ())
        if _is_attention(layer):
            found += [units for units in [_heads(layer, layer.name, (), layer.name)] if units]
        elif is_graph_model(inner):
            found += _in_graph_model(inner, layer.name, route, layer.name)
        elif builtin_name(inner) is None:
            found += _in_custom_layer(inner, layer.name, route, layer.name)
    seen, unique = set(), []
    for units in found:
        key = (id(units.layer), tuple(id(weight) for weight, _, _, _ in units.sliced))
        if key not in seen:
            seen.add(key)
            unique.append(units)
    return unique


class UnitMasks:
    """The masks of every `Units` of a pruned model, held by one `SublayerMasks` per layer that holds
    their weights.

    Attributes:
        units: the `[Units]`, in ranking order.
        holders: the `SublayerMasks`.
    """

    def __init__(self, units, schedule, scope):
        from keras_compress.pruning.keras3_sublayers import SublayerMasks

        self.units = units
        owners = {}
        for unit in units:
            for weight, _, path, owner in unit.sliced:
                weights = owners.setdefault(id(owner), (owner, path, []))[2]
                if not any(weight is known for known in weights):
                    weights.append(weight)
        self.holders = [SublayerMasks(owner, path, schedule, "filter", scope, (1, 1), None, weights=weights)
                        for owner, path, weights in owners.values()]

    def mask_values(self, keeps):
        """`[(mask variable, value)]` from one keep-mask per `Units`: a weight's mask keeps the slices
        of the units every one of its `Units` keeps."""
        values = {}
        for unit, keep in zip(self.units, keeps):
            for weight, axis, _, _ in unit.sliced:
                shape = [1] * len(weight.shape)
                shape[axis] = -1
                values[id(weight)] = values.get(id(weight), 1.0) * keep.reshape(shape)
        return [(mask, np.broadcast_to(values[id(weight)], tuple(weight.shape)).astype(mask.dtype))
                for holder in self.holders for weight, mask, _ in holder.pruning_vars]


def hold(model, unit_masks):
    """Lists `unit_masks` and their holders on the pruned `model` (plain attributes, as
    `keras3_sublayers` lists its masks)."""
    from keras_compress.pruning.keras3_sublayers import hold as hold_masks

    hold_masks(unit_masks.holders, model)
    object.__setattr__(model, _UNITS, unit_masks)


def unit_masks(model):
    """The `UnitMasks` `prune` put on `model`, or None."""
    return getattr(model, _UNITS, None)


def dead_heads(units):
    """Which heads of a `Units` of kind "heads" add nothing: their output kernel slice, or their
    value kernel and bias slices, hold only zeros. One head always stays."""
    layer = units.layer
    roles = dict(attention_projections(layer))
    output = roles["output"].kernel.numpy().reshape(units.size, -1)
    value = np.moveaxis(roles["value"].kernel.numpy(), 1, 0).reshape(units.size, -1)
    if roles["value"].bias is not None:
        value = np.concatenate([value, roles["value"].bias.numpy().reshape(units.size, -1)], axis=1)
    dead = ~np.any(output != 0, axis=1) | ~np.any(value != 0, axis=1)
    if dead.all():
        dead[0] = False
    return dead


def fewer_heads(units, keep):
    """A new MultiHeadAttention like that of `units` (of kind "heads"), built, holding only the heads
    in `keep`: each weight `units.sliced` names loses the others along its axis."""
    layer = units.layer
    config = layer.get_config()
    config["num_heads"] = int(keep.sum())
    new = type(layer).from_config(config)
    roles = dict(attention_projections(layer))
    with in_scope_of(layer):  # its variables' paths as the layer's were
        new.build(*[(None,) * (len(roles[role].equation.split(",")[0]) - 1) + (roles[role].kernel.shape[0],)
                    for role in ("query", "value", "key")])
    index = np.flatnonzero(keep)
    axes = {id(weight): axis for weight, axis, _, _ in units.sliced}
    for role, dense in attention_projections(new):
        dense.set_weights([np.take(weight.numpy(), index, axis=axes[id(weight)]) if id(weight) in axes
                           else weight.numpy() for weight in roles[role].weights])
    return new
