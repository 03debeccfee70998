"""Which output channels of a Keras graph can be removed, and what removing them touches.

Every tensor's last axis is described as a list of segments, each a run of
channels of one "space". A producer (Conv2D, Dense: see `layer_rules`) starts a
new space of `filters`/`units` channels; members (BatchNormalization,
DepthwiseConv2D) carry per-channel parameters through a space; activations with
f(0) == 0, dropout, pooling and padding pass it on; Add-like joins merge the
spaces of their inputs (coupled channels); Concatenate lays segments side by
side; Flatten repeats them once per spatial position for the Dense layer
that consumes them.

A space is frozen (its channels stay) when it reaches a model input or
output, a layer this module does not understand, or an excluded layer. The
channels of a space that is not frozen can be zeroed everywhere at once
(producers' kernels and biases, members' parameters) so that they carry
exact zeros, and then be removed from every layer that touches them.
"""

import dataclasses

import numpy as np

from keras_compress._flavour import keras_for
from keras_compress.pruning.layer_rules import builtin_name, rule_for

_ACTIVATIONS = {"Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU"}
_PASS_THROUGH = {
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "Cropping2D", "UpSampling2D",
}
_JOINS = {"Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"}


def unwrap(layer):
    """The layer inside a pruning wrapper, or the layer itself."""
    return layer.layer if hasattr(layer, "pruning_vars") and hasattr(layer, "layer") else layer


@dataclasses.dataclass(frozen=True)
class Segment:
    space: int
    size: int


@dataclasses.dataclass
class Group:
    """The channels of one space that is not frozen, and the layers that produce them."""

    space: int
    size: int
    producers: list  # names of the Conv2D/Dense layers whose outputs make up the space


def _is_zero_preserving(fn):
    try:
        value = fn(np.zeros((1, 2), "float32"))
        return bool(np.all(np.asarray(value) == 0.0))
    except Exception:  # an activation we cannot evaluate is not trusted
        return False


def _exact_class(layer, names):
    return builtin_name(layer) in names


class ChannelGraph:
    """Channel spaces of a Sequential or functional model.

    Args:
        model: a built Sequential or functional model (pruning wrappers allowed).
        frozen_layers: names of layers whose channels must stay (excluded layers).

    Attributes:
        groups: `{space: Group}` for every space whose channels may be removed.
        outputs: `{layer name: space}` of each producer's output channels.
        inputs: `{layer name: ([Segment], repeat)}` of each producer's or member's
            input channels (`repeat` > 1 after Flatten).
    """

    def __init__(self, model, frozen_layers=()):
        self._parent = []
        self._size = {}
        self._frozen = set()
        self.outputs = {}
        self.inputs = {}
        frozen_layers = set(frozen_layers)
        descriptors = {}
        flavour = self._flavour = keras_for(model)
        key = flavour.tensor_key
        nodes = flavour.graph_nodes(model)
        calls = {}
        for layer, _, _ in nodes:
            calls[id(layer)] = calls.get(id(layer), 0) + 1
        for layer, inputs, outs in nodes:
            ins = [descriptors[key(t)] for t in inputs]
            shared = calls[id(layer)] > 1
            out = self._visit(layer, ins, inputs, outs, shared, frozen_layers)
            for tensor in outs:
                descriptors[key(tensor)] = out if len(outs) == 1 else self._unknown(ins, tensor)
        for tensor in flavour.output_tensors(model):
            self._freeze(descriptors[key(tensor)])
        self.groups = {}
        for name, space in self.outputs.items():
            root = self._find(space)
            self.outputs[name] = root
            if root in self._frozen:
                continue
            group = self.groups.setdefault(root, Group(root, self._size[root], []))
            group.producers.append(name)
        self.inputs = {
            name: ([Segment(self._find(s.space), s.size) for s in segments], repeat)
            for name, (segments, repeat) in self.inputs.items()
        }

    # -- union-find over spaces ------------------------------------------------
    def _new_space(self, size, frozen=False):
        space = len(self._parent)
        self._parent.append(space)
        self._size[space] = size
        if frozen:
            self._frozen.add(space)
        return space

    def _find(self, space):
        while self._parent[space] != space:
            self._parent[space] = self._parent[self._parent[space]]
            space = self._parent[space]
        return space

    def _union(self, a, b):
        a, b = self._find(a), self._find(b)
        if a != b:
            self._parent[b] = a
            if b in self._frozen:
                self._frozen.add(a)

    def _freeze(self, descriptor):
        for segment in descriptor[0]:
            self._frozen.add(self._find(segment.space))

    def _unknown(self, ins, tensor):
        for descriptor in ins:
            self._freeze(descriptor)
        channels = tensor.shape[-1] if self._flavour.rank(tensor) else 1
        return ([Segment(self._new_space(channels or 1, frozen=True), channels or 1)], 1)

    # -- layer rules -------------------------------------------------------------
    def _visit(self, outer, ins, inputs, outs, shared, frozen_layers):
        layer = unwrap(outer)
        if builtin_name(layer) == "InputLayer":
            return self._unknown([], outs[0])
        if shared or len(outs) != 1 or not ins:
            return self._unknown(ins, outs[0])
        first = ins[0]
        flat = first[1] > 1
        rank = self._flavour.rank(outs[0])
        rule = rule_for(layer)
        if rule is not None and rule.role == "producer" and len(ins) == 1 and rule.accepts(layer, rank) \
                and not (flat and rank != 2):
            self.inputs[layer.name] = first
            activation = getattr(layer, "activation", None)
            frozen = (layer.name in frozen_layers
                      or (activation is not None and not _is_zero_preserving(activation)))
            channels = int(layer.get_config()[rule.size_key])
            space = self._new_space(channels, frozen=frozen)
            self.outputs[layer.name] = space
            return ([Segment(space, channels)], 1)
        if flat:
            if _exact_class(layer, {"Dropout"}):
                return first
            return self._unknown(ins, outs[0])
        if rule is not None and rule.role == "member" and rule.accepts(layer, rank):
            self.inputs[layer.name] = first
            if layer.name in frozen_layers:
                self._freeze(first)
            activation = getattr(layer, "activation", None)
            if activation is not None and not _is_zero_preserving(activation):
                self._freeze(first)
            return first
        if _exact_class(layer, _ACTIVATIONS):
            if not _is_zero_preserving(layer):
                self._freeze(first)
            return first
        if _exact_class(layer, _PASS_THROUGH) and self._channels_last(layer):
            return first
        if _exact_class(layer, _JOINS):
            if all(len(d[0]) == 1 and d[0][0].size == first[0][0].size for d in ins):
                for descriptor in ins[1:]:
                    self._union(first[0][0].space, descriptor[0][0].space)
                return first
        if _exact_class(layer, {"Concatenate"}) and layer.axis in (-1, rank - 1):
            return ([segment for d in ins for segment in d[0]], 1)
        if _exact_class(layer, {"Flatten"}) and self._channels_last(layer):
            shape = tuple(inputs[0].shape)
            positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            if len(shape) <= 2 or None not in shape[1:]:
                return (first[0], positions)
        return self._unknown(ins, outs[0])

    @staticmethod
    def _channels_last(layer):
        return getattr(layer, "data_format", "channels_last") in ("channels_last", None)

    # -- masks and kept channels ----------------------------------------------------
    def layer_channels(self, name, keep):
        """A layer's input keep-mask: `keep[space]` over its input segments (all True for spaces
        without an entry, e.g. frozen ones), and how often Flatten repeats it."""
        segments, repeat = self.inputs[name]
        parts = [keep[s.space] if s.space in keep else np.ones(s.size, bool) for s in segments]
        return np.concatenate(parts), repeat

    def output_channels(self, name, keep):
        """A producer's output keep-mask (all True when its space has no entry)."""
        space = self.outputs[name]
        return keep[space] if space in keep else np.ones(self._size[space], bool)
