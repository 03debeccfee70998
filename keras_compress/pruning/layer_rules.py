"""One rule per layer kind for structured (filter) pruning: how a layer carries channels.

The channel analysis, the filter ranking, the masks and `shrink` all read these rules,
so a layer kind is taught to structured pruning in one place. A rule says whether the
layer makes channels (a producer: Conv2D, Dense) or carries per-channel weights through
(a member: BatchNormalization, DepthwiseConv2D), which of its weights hold a channel
axis and where, which of them a pruning mask zeroes, and which config key sets the
number of channels a producer makes.

Register a rule for your own layer class with `register_channel_rule`.
"""

import dataclasses
import sys

from keras_compress._flavour import KERAS3, TF_KERAS, flavour_of

__all__ = ["ChannelRule", "register_channel_rule", "rule_for", "builtin_name", "CHANNEL_RULES"]


def _channels_last(layer, rank):
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


@dataclasses.dataclass(frozen=True)
class ChannelRule:
    """How a layer kind carries output channels.

    Args:
        role: "producer" (its outputs are new channels: it reads input channels along
            `input_axes` and makes `size_key` channels) or "member"
            (it carries its input channels through, one set of weights per channel).
        channel_axes: `{weight attribute: axis}` of every weight that holds one entry per
            channel (for a producer: per output channel).
        masked: the weights a filter mask zeroes, so that a pruned channel carries exact zeros.
        size_key: a producer's config key for its number of output channels.
        input_axis: a producer's input-channel axis in its first weight (the kernel).
        input_axes: `{weight attribute: axis}` of every weight of a producer that holds one entry
            per input channel, when that is not only the first weight (SeparableConv2D reads its
            inputs in its depthwise and its pointwise kernel); overrides `input_axis`.
        accepts: `accepts(layer, rank)`, whether this layer instance fits the rule (e.g.
            channels last, no groups); `rank` is the rank of its output.
    """

    role: str
    channel_axes: dict
    masked: tuple
    size_key: str = None
    input_axis: int = -2
    accepts: object = _channels_last
    input_axes: dict = None

    def __post_init__(self):
        if self.role not in ("producer", "member"):
            raise ValueError(f'role must be "producer" or "member", got {self.role!r}')
        if self.role == "producer" and not self.size_key:
            raise ValueError("a producer rule needs size_key, the config key of its number of channels")
        unknown = sorted(set(self.masked) - set(self.channel_axes))
        if unknown:
            raise ValueError(f"masked weights {unknown} are not in channel_axes {sorted(self.channel_axes)}")

    def weights(self, layer, names=None):
        """`[(variable, channel axis)]` of the layer's channel weights (those it has)."""
        names = self.channel_axes if names is None else names
        return [(getattr(layer, name), self.channel_axes[name]) for name in names
                if getattr(layer, name, None) is not None]

    def masked_weights(self, layer):
        return [variable for variable, _ in self.weights(layer, self.masked)]

    def input_weights(self, layer):
        """A producer's `[(variable, input-channel axis)]`."""
        if self.input_axes is None:
            return [(self.weights(layer)[0][0], self.input_axis)]
        return [(getattr(layer, name), axis) for name, axis in self.input_axes.items()
                if getattr(layer, name, None) is not None]


def _conv_accepts(layer, rank):
    return _channels_last(layer, rank) and getattr(layer, "groups", 1) == 1


def _depthwise_accepts(layer, rank):
    return layer.depth_multiplier == 1 and _channels_last(layer, rank)


def _separable_accepts(layer, rank):
    return layer.depth_multiplier == 1 and _channels_last(layer, rank)


def _batch_norm_accepts(layer, rank):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return list(axis) in ([-1], [rank - 1])


def _depthwise(kernel_name):
    return ChannelRule("member", {kernel_name: 2, "bias": -1}, (kernel_name, "bias"),
                       accepts=_depthwise_accepts)


_SHARED = {
    "Conv2D": ChannelRule("producer", {"kernel": -1, "bias": -1}, ("kernel", "bias"), size_key="filters",
                          accepts=_conv_accepts),
    "Dense": ChannelRule("producer", {"kernel": -1, "bias": -1}, ("kernel", "bias"), size_key="units",
                         accepts=lambda layer, rank: True),
    "BatchNormalization": ChannelRule(
        "member", {"gamma": -1, "beta": -1, "moving_mean": -1, "moving_variance": -1}, ("gamma", "beta"),
        accepts=_batch_norm_accepts),
    # Its pointwise kernel makes the filters; the inputs run through both kernels.
    "SeparableConv2D": ChannelRule(
        "producer", {"pointwise_kernel": -1, "bias": -1}, ("pointwise_kernel", "bias"), size_key="filters",
        input_axes={"depthwise_kernel": 2, "pointwise_kernel": -2}, accepts=_separable_accepts),
}
# The built-in rules, by flavour and class name (Keras 3 names the depthwise kernel `kernel`).
BUILTIN_RULES = {
    TF_KERAS: {**_SHARED, "DepthwiseConv2D": _depthwise("depthwise_kernel")},
    KERAS3: {**_SHARED, "DepthwiseConv2D": _depthwise("kernel")},
}
# Rules registered for other layer classes.
CHANNEL_RULES = {}
_PACKAGES = {TF_KERAS: "tf_keras", KERAS3: "keras"}


def builtin_name(layer):
    """The class name of `layer` if it is exactly a built-in Keras layer class, else None."""
    cls = type(layer)
    package = sys.modules.get(_PACKAGES.get(flavour_of(layer), ""))
    layers = getattr(package, "layers", None)
    return cls.__name__ if layers is not None and getattr(layers, cls.__name__, None) is cls else None


def register_channel_rule(layer_class, rule):
    """Teaches structured pruning and `shrink` a layer class (exactly that class, not its
    subclasses, whose `call` may differ).

    Example:
        >>> import keras
        >>> from keras_compress.pruning import ChannelRule, register_channel_rule
        >>> class MyDense(keras.layers.Dense):
        ...     pass
        >>> register_channel_rule(MyDense, ChannelRule("producer", {"kernel": -1, "bias": -1},
        ...                                            ("kernel", "bias"), size_key="units"))
    """
    if not isinstance(layer_class, type) or not any(
            cls.__name__ == "Layer" and cls.__module__.split(".")[0] in ("keras", "tf_keras")
            for cls in layer_class.__mro__):
        raise TypeError(f"layer_class must be a Keras layer class, got {layer_class!r}")
    if not isinstance(rule, ChannelRule):
        raise TypeError(f"rule must be a ChannelRule, got {type(rule).__name__}")
    CHANNEL_RULES[layer_class] = rule


def rule_for(layer):
    """The rule of this exact layer class, or None."""
    rule = CHANNEL_RULES.get(type(layer))
    if rule is None and builtin_name(layer):
        rule = BUILTIN_RULES[flavour_of(layer)].get(type(layer).__name__)
    return rule
