"""Which output channels of a Keras graph can be removed, and what removing them touches.

Every tensor's last axis is described as a list of segments, each a run of
channels of one "space", and the value a removed channel holds there. A
producer (Conv1D, Conv2D, Dense: see `layer_kinds`) starts a new space of
`filters`/`units` channels; members (BatchNormalization, DepthwiseConv2D) carry
per-channel parameters through a space; activations and elementwise operations
with numbers (`x + 3.0`) carry it and compute the removed channels' value;
dropout, pooling, padding and a Reshape that keeps the last axis pass it on;
Add-like joins merge the spaces of their inputs (coupled channels) and combine
their values, so that a product with a zero factor holds zero again
(hard-swish, `x * hard_sigmoid(x)`); Concatenate lays segments side by side;
Flatten repeats them once per spatial position for the Dense layer that
consumes them. A layer that reads a space's channels (producer, member,
pooling...) needs them to hold zero there.

A space is frozen (its channels stay) when it reaches a model input or
output, a layer this module does not understand, or an excluded layer. The
channels of a space that is not frozen can be zeroed everywhere at once
(producers' kernels and biases, members' parameters) so that they carry
exact zeros, and then be removed from every layer that touches them.
"""

import dataclasses
import warnings

import numpy as np

from keras_compress._flavour import keras_for
from keras_compress.layer_kinds import builtin_name, kind_of


def unwrap(layer):
    """The layer inside a pruning wrapper, or the layer itself."""
    return layer.layer if hasattr(layer, "pruning_vars") and hasattr(layer, "layer") else layer


@dataclasses.dataclass(frozen=True)
class Segment:
    space: int
    size: int


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A tensor's channels: its last axis as segments (repeated `repeat` times after Flatten), and
    the value its removed channels hold."""

    segments: list
    repeat: int = 1
    value: float = 0.0


@dataclasses.dataclass
class Group:
    """The channels of one space that is not frozen, and the layers that produce them."""

    space: int
    size: int
    producers: list  # names of the layers (Conv1D, Conv2D, Dense...) whose outputs make up the space


def _value_at(fn, value):
    """`fn(value)` for an elementwise `fn`, or None when it is not one finite number."""
    try:
        with warnings.catch_warnings():  # a probe: Keras' advice about it (softmax over 1 value) is noise
            warnings.simplefilter("ignore")
            result = np.asarray(fn(np.full((1, 2), value, "float32")))
    except Exception:  # a function we cannot evaluate is not trusted
        return None
    if result.size == 0 or not np.all(result == result.flat[0]) or not np.isfinite(result.flat[0]):
        return None
    return float(result.flat[0])


def _elementwise(fn, rank):
    """Whether `fn` maps each element on its own, for tensors of `rank`: on a block of random
    numbers (uneven sizes, channels not sorted), it gives what it gives for each number alone."""
    block = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)[:rank - 1] + (7,)).astype("float32")
    alone = block.reshape((-1,) + (1,) * (rank - 1))
    try:
        with warnings.catch_warnings():  # probes, as above
            warnings.simplefilter("ignore")
            together, apart = np.asarray(fn(block)), np.asarray(fn(alone))
    except Exception:
        return False
    return together.shape == block.shape and apart.shape == alone.shape and np.allclose(
        together.ravel(), apart.ravel(), rtol=1e-5, atol=1e-6, equal_nan=True)


def _op_function(call, tensor):
    """`array -> the op's result on array` for an op called on `tensor` and otherwise on numbers, or None."""
    function, args, kwargs = call
    arguments = list(args) + list(kwargs.values())
    if not any(a is tensor for a in arguments) or not all(
            a is tensor or a is None or isinstance(a, (bool, int, float, str)) for a in arguments):
        return None

    def apply(array):
        return function(*[array if a is tensor else a for a in args],
                        **{k: array if a is tensor else a for k, a in kwargs.items()})
    return apply


def _kept(segments, keep):
    return np.concatenate([keep[s.space] if s.space in keep else np.ones(s.size, bool) for s in segments])


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
        reshapes: `{layer name: [Segment]}` of each Reshape the channels pass through (its
            target shape ends with their number).
    """

    def __init__(self, model, frozen_layers=()):
        self._parent = []
        self._size = {}
        self._frozen = set()
        self.outputs = {}
        self.inputs = {}
        self.reshapes = {}
        frozen_layers = set(frozen_layers)
        descriptors = {}
        flavour = self._flavour = keras_for(model)
        key = flavour.tensor_key
        self._op_calls = flavour.op_calls(model)
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
        self.reshapes = {name: [Segment(self._find(s.space), s.size) for s in segments]
                         for name, segments in self.reshapes.items()}

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
        for segment in descriptor.segments:
            self._frozen.add(self._find(segment.space))

    def _zeroed(self, descriptor):
        """The descriptor of a tensor whose removed channels are read: they must hold zero."""
        if descriptor.value != 0.0:
            self._freeze(descriptor)
        return dataclasses.replace(descriptor, value=0.0)

    def _unknown(self, ins, tensor):
        for descriptor in ins:
            self._freeze(descriptor)
        channels = tensor.shape[-1] if self._flavour.rank(tensor) else 1
        return _Tensor([Segment(self._new_space(channels or 1, frozen=True), channels or 1)])

    def _mapped(self, descriptor, fn, rank):
        """A function's output: for an elementwise one, the same channels, holding `fn(value)` where
        removed; otherwise (softmax...) channels that must stay."""
        value = _value_at(fn, descriptor.value) if _elementwise(fn, max(rank or 2, 2)) else None
        if value is None:
            self._freeze(descriptor)
            return dataclasses.replace(descriptor, value=0.0)
        return dataclasses.replace(descriptor, value=value)

    # -- layer rules -------------------------------------------------------------
    def _visit(self, outer, ins, inputs, outs, shared, frozen_layers):
        layer = unwrap(outer)
        if builtin_name(layer) == "InputLayer":
            return self._unknown([], outs[0])
        if shared or len(outs) != 1 or not ins:
            return self._unknown(ins, outs[0])
        first = ins[0]
        flat = first.repeat > 1
        rank = self._flavour.rank(outs[0])
        kind = kind_of(layer)
        rule, role = kind.rule, kind.channels
        activation = getattr(layer, "activation", None)
        if rule is not None and rule.role == "producer" and len(ins) == 1 and rule.accepts(layer, rank) \
                and not (flat and rank != 2):
            first = self._zeroed(first)
            self.inputs[layer.name] = (first.segments, first.repeat)
            channels = int(layer.get_config()[rule.size_key])
            space = self._new_space(channels, frozen=layer.name in frozen_layers)
            self.outputs[layer.name] = space
            made = _Tensor([Segment(space, channels)])
            return made if activation is None else self._mapped(made, activation, rank)
        if flat:
            if role == "elementwise":
                return first
            return self._unknown(ins, outs[0])
        if rule is not None and rule.role == "member" and rule.accepts(layer, rank):
            first = self._zeroed(first)
            self.inputs[layer.name] = (first.segments, first.repeat)
            if layer.name in frozen_layers:
                self._freeze(first)
            return first if activation is None else self._mapped(first, activation, rank)
        if role == "activation":
            return self._mapped(first, layer, rank)
        call = self._op_calls.get(id(layer))
        operation = call and len(ins) == 1 and (rank or 0) > 1 and _op_function(call, inputs[0])
        if operation:
            return self._mapped(first, operation, rank)
        if role in ("pass_through", "elementwise") and self._channels_last(layer):
            return self._zeroed(first)
        if role == "reshape" and inputs[0].shape[-1] == outs[0].shape[-1] is not None \
                and layer.target_shape[-1] != -1:
            self.reshapes[layer.name] = first.segments
            return first  # row-major: with the same last axis, every element keeps its channel
        if role == "join":
            if all(len(d.segments) == 1 and d.segments[0].size == first.segments[0].size for d in ins):
                for descriptor in ins[1:]:
                    self._union(first.segments[0].space, descriptor.segments[0].space)
                value = _value_at(lambda x: layer([x * 0 + d.value for d in ins]), 0.0)
                if value is None:
                    self._freeze(first)
                return _Tensor(first.segments, 1, value or 0.0)
        if role == "concatenate" and layer.axis in (-1, rank - 1):
            return _Tensor([segment for d in ins for segment in self._zeroed(d).segments])
        if role == "flatten" and self._channels_last(layer):
            shape = tuple(inputs[0].shape)
            positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            if len(shape) <= 2 or None not in shape[1:]:
                return _Tensor(self._zeroed(first).segments, positions)
        return self._unknown(ins, outs[0])

    @staticmethod
    def _channels_last(layer):
        return getattr(layer, "data_format", "channels_last") in ("channels_last", None)

    # -- masks and kept channels ----------------------------------------------------
    def layer_channels(self, name, keep):
        """A layer's input keep-mask: `keep[space]` over its input segments (all True for spaces
        without an entry, e.g. frozen ones), and how often Flatten repeats it."""
        segments, repeat = self.inputs[name]
        return _kept(segments, keep), repeat

    def reshaped_channels(self, name, keep):
        """How many channels a Reshape in `reshapes` carries once the removed ones are gone."""
        return int(_kept(self.reshapes[name], keep).sum())

    def output_channels(self, name, keep):
        """A producer's output keep-mask (all True when its space has no entry)."""
        space = self.outputs[name]
        return keep[space] if space in keep else np.ones(self._size[space], bool)
