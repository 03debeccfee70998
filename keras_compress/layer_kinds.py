"""What keras_compress knows about each Keras layer kind, in one table.

Filter pruning's channel analysis, `shrink`, the m:n checks and both quantization-aware
training lanes read a layer's `LayerKind` from here, found by one rule: the layer's exact
class, registered with `register_layer_kind` or built into Keras (a subclass, whose `call`
may differ, is a kind of its own). A kind says:

- `channels`, how the layer carries output channels for structured pruning: a
  `ChannelRule` (it makes channels, as Conv2D and Dense, or carries per-channel weights, as
  BatchNormalization), or one of `CHANNEL_ROLES`.
- `m_by_n`, whether m:n weight pruning applies to its kernel.
- `int8`, its role in Keras 3 quantization-aware training (one of `INT8_ROLES`), with
  `kernel_axis` and `folds_batch_norm` for layers with a kernel; `tfmot`, where tfmot's own
  registry needs help on tf_keras.

Teaching keras_compress a layer kind is one entry here (or one `register_layer_kind` call).
"""

import dataclasses
import sys
from collections.abc import Callable, Iterable
from typing import Any

from keras_compress._types import KerasLayer

__all__ = ["ChannelRule", "LayerKind", "register_layer_kind", "register_channel_rule", "kind_of",
           "rule_for", "builtin_name", "BUILTIN_KINDS", "LAYER_KINDS", "SPARSE_WEIGHTS"]

# How a layer without a ChannelRule carries channels:
# - "activation": the same channels, each holding the activation of its input;
# - "elementwise": the same channels, whatever the tensor's shape (Dropout);
# - "pass_through": the same channels along a channels-last axis (pooling, padding);
# - "join": merges its inputs' channels one to one (Add, Multiply: coupled channels);
# - "concatenate", "flatten", "reshape": lays out, repeats or keeps them as the layer does.
CHANNEL_ROLES = ("activation", "elementwise", "pass_through", "join", "concatenate", "flatten", "reshape")
# A layer's role in Keras 3 quantization-aware training:
# - "kernel": its kernel is fake-quantized to int8 and its output quantized;
# - "split": it runs as two such convolutions (SeparableConv2D: depthwise, then 1x1);
# - "output": it computes new values in int8, so its output is quantized;
# - "input_scale": it passes values through on its input's grid.
INT8_ROLES = ("kernel", "split", "output", "input_scale")
# Weights that weight pruning makes sparse, by attribute name, in any layer (biases and
# normalization parameters are not counted).
SPARSE_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")


def _channels_last(layer: KerasLayer, rank: int | None) -> bool:
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
    size_key: str | None = None
    input_axis: int = -2
    accepts: Callable = _channels_last
    input_axes: dict | None = None

    def __post_init__(self):
        if self.role not in ("producer", "member"):
            raise ValueError(f'role must be "producer" or "member", got {self.role!r}')
        if self.role == "producer" and not self.size_key:
            raise ValueError("a producer rule needs size_key, the config key of its number of channels")
        unknown = sorted(set(self.masked) - set(self.channel_axes))
        if unknown:
            raise ValueError(f"masked weights {unknown} are not in channel_axes {sorted(self.channel_axes)}")

    def weights(self, layer: KerasLayer, names: Iterable[str] | None = None) -> list[tuple[Any, int]]:
        """`[(variable, channel axis)]` of the layer's channel weights (those it has)."""
        names = self.channel_axes if names is None else names
        return [(getattr(layer, name), self.channel_axes[name]) for name in names
                if getattr(layer, name, None) is not None]

    def masked_weights(self, layer: KerasLayer) -> list:
        return [variable for variable, _ in self.weights(layer, self.masked)]

    def input_weights(self, layer: KerasLayer) -> list[tuple[Any, int]]:
        """A producer's `[(variable, input-channel axis)]`."""
        if self.input_axes is None:
            return [(self.weights(layer)[0][0], self.input_axis)]
        return [(getattr(layer, name), axis) for name, axis in self.input_axes.items()
                if getattr(layer, name, None) is not None]


def _conv_accepts(layer, rank):
    return _channels_last(layer, rank) and getattr(layer, "groups", 1) == 1


def _one_per_channel(layer, rank):
    return layer.depth_multiplier == 1 and _channels_last(layer, rank)


def _batch_norm_accepts(layer, rank):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return list(axis) in ([-1], [rank - 1])


@dataclasses.dataclass(frozen=True)
class LayerKind:
    """What keras_compress knows about one layer class (see the module's docstring).

    Args:
        channels: a `ChannelRule`, one of `CHANNEL_ROLES`, or None (its channels stay).
        m_by_n: m:n weight pruning applies to its kernel (input channels on axis -2).
        int8: one of `INT8_ROLES`, or None (Keras 3 QAT leaves it float, and says so).
        kernel_axis: for `int8="kernel"`, the kernel's output-channel axis for per-channel
            int8 weights, "depthwise" for a depthwise kernel, or None for one scale.
        folds_batch_norm: a BatchNormalization right after it folds into it for QAT.
        tfmot: where tfmot's registry does not do what TFLite runs, on tf_keras: "output"
            (tfmot does not know it, but TFLite computes it in int8: its output is quantized)
            or "input_scale" (TFLite runs it on its input's scale).
    """

    channels: ChannelRule | str | None = None
    m_by_n: bool = False
    int8: str | None = None
    kernel_axis: int | str | None = None
    folds_batch_norm: bool = False
    tfmot: str | None = None

    def __post_init__(self):
        if not (self.channels is None or isinstance(self.channels, ChannelRule)
                or self.channels in CHANNEL_ROLES):
            raise ValueError(f"channels must be a ChannelRule, one of {CHANNEL_ROLES} or None, "
                             f"got {self.channels!r}")
        if self.int8 not in (None, *INT8_ROLES):
            raise ValueError(f"int8 must be one of {INT8_ROLES} or None, got {self.int8!r}")
        if self.tfmot not in (None, "output", "input_scale"):
            raise ValueError(f'tfmot must be "output", "input_scale" or None, got {self.tfmot!r}')

    @property
    def rule(self):
        """Its `ChannelRule`, or None."""
        return self.channels if isinstance(self.channels, ChannelRule) else None


_CONV = ChannelRule("producer", {"kernel": -1, "bias": -1}, ("kernel", "bias"), size_key="filters",
                    accepts=_conv_accepts)
# tf_keras names a depthwise kernel `depthwise_kernel`, Keras 3 `kernel`: a layer has one of them.
_DEPTHWISE = ChannelRule("member", {"depthwise_kernel": 2, "kernel": 2, "bias": -1},
                         ("depthwise_kernel", "kernel", "bias"), accepts=_one_per_channel)
_ACTIVATION = LayerKind(channels="activation")
_KEPT_SCALE = LayerKind(channels="pass_through", int8="input_scale")
_JOIN = LayerKind(channels="join")

# The built-in layer kinds, by class name (the same in tf_keras and Keras 3).
BUILTIN_KINDS = {
    "InputLayer": LayerKind(int8="input_scale"),
    "Conv1D": LayerKind(channels=_CONV, int8="kernel", kernel_axis=-1, folds_batch_norm=True),
    "Conv2D": LayerKind(channels=_CONV, m_by_n=True, int8="kernel", kernel_axis=-1, folds_batch_norm=True),
    "DepthwiseConv2D": LayerKind(channels=_DEPTHWISE, int8="kernel", kernel_axis="depthwise",
                                 folds_batch_norm=True),
    # Its pointwise kernel makes the filters; the inputs run through both kernels.
    "SeparableConv2D": LayerKind(
        channels=ChannelRule("producer", {"pointwise_kernel": -1, "bias": -1}, ("pointwise_kernel", "bias"),
                             size_key="filters", input_axes={"depthwise_kernel": 2, "pointwise_kernel": -2},
                             accepts=_one_per_channel),
        int8="split", folds_batch_norm=True),
    "Dense": LayerKind(channels=ChannelRule("producer", {"kernel": -1, "bias": -1}, ("kernel", "bias"),
                                            size_key="units", accepts=lambda layer, rank: True),
                       m_by_n=True, int8="kernel"),
    # Attention's projections: int8 fully-connected kernels, one scale each.
    "EinsumDense": LayerKind(int8="kernel"),
    "BatchNormalization": LayerKind(channels=ChannelRule(
        "member", {"gamma": -1, "beta": -1, "moving_mean": -1, "moving_variance": -1}, ("gamma", "beta"),
        accepts=_batch_norm_accepts)),
    "Activation": LayerKind(channels="activation", int8="output"),
    "ReLU": LayerKind(channels="activation", int8="output"),
    "LeakyReLU": _ACTIVATION,
    "ELU": _ACTIVATION,
    "ThresholdedReLU": _ACTIVATION,
    "Dropout": LayerKind(channels="elementwise", int8="input_scale"),
    "SpatialDropout2D": _KEPT_SCALE,
    "GaussianNoise": _KEPT_SCALE,
    "GaussianDropout": LayerKind(channels="pass_through"),
    "ActivityRegularization": LayerKind(int8="input_scale"),
    "MaxPooling1D": _KEPT_SCALE,
    "MaxPooling2D": _KEPT_SCALE,
    # TFLite's int8 average pool requires one scale on both sides.
    "AveragePooling1D": LayerKind(channels="pass_through", int8="input_scale", tfmot="input_scale"),
    "AveragePooling2D": LayerKind(channels="pass_through", int8="input_scale", tfmot="input_scale"),
    "GlobalMaxPooling1D": _KEPT_SCALE,
    "GlobalMaxPooling2D": _KEPT_SCALE,
    "GlobalAveragePooling1D": LayerKind(channels="pass_through", int8="output"),
    "GlobalAveragePooling2D": LayerKind(channels="pass_through", int8="output"),
    "ZeroPadding1D": _KEPT_SCALE,
    "Cropping1D": LayerKind(channels="pass_through"),
    "UpSampling1D": LayerKind(channels="pass_through"),
    "SpatialDropout1D": LayerKind(channels="pass_through"),
    "ZeroPadding2D": _KEPT_SCALE,
    "Cropping2D": _KEPT_SCALE,
    "UpSampling2D": LayerKind(channels="pass_through"),
    "Flatten": LayerKind(channels="flatten", int8="input_scale"),
    "Reshape": LayerKind(channels="reshape", int8="input_scale"),
    "Concatenate": LayerKind(channels="concatenate", int8="output"),
    "Add": LayerKind(channels="join", int8="output"),
    "Subtract": _JOIN,
    "Average": _JOIN,
    "Maximum": _JOIN,
    "Minimum": _JOIN,
    # Squeeze-excite and hard-swish products.
    "Multiply": LayerKind(channels="join", tfmot="output"),
    "Rescaling": LayerKind(tfmot="output"),
}
# Kinds registered for other layer classes, by class.
LAYER_KINDS: dict[type, LayerKind] = {}
_UNKNOWN = LayerKind()


def _builtin_class_name(cls):
    """The name of `cls` if it is exactly a built-in class of a Keras already imported, else None."""
    package = sys.modules.get((cls.__module__ or "").split(".")[0])
    layers = getattr(package, "layers", None) if package is not None and package.__name__ in (
        "keras", "tf_keras") else None
    return cls.__name__ if layers is not None and getattr(layers, cls.__name__, None) is cls else None


def builtin_name(layer: KerasLayer) -> str | None:
    """The class name of `layer` if it is exactly a built-in Keras layer class, else None."""
    return _builtin_class_name(type(layer))


def kind_of(layer: KerasLayer) -> LayerKind:
    """The `LayerKind` of this exact layer class (an empty one for a class nothing is known of)."""
    kind = LAYER_KINDS.get(type(layer))
    if kind is None:
        kind = BUILTIN_KINDS.get(builtin_name(layer) or "", _UNKNOWN)
    return kind


def rule_for(layer: KerasLayer) -> ChannelRule | None:
    """The `ChannelRule` of this exact layer class, or None."""
    return kind_of(layer).rule


def channel_masked_weights(layer: KerasLayer) -> list:
    """The weights filter pruning masks in `layer` by its channel rule ([] without one)."""
    rule = rule_for(layer)
    return rule.masked_weights(layer) if rule is not None else []


def _check_layer_class(layer_class):
    if not isinstance(layer_class, type) or not any(
            cls.__name__ == "Layer" and cls.__module__.split(".")[0] in ("keras", "tf_keras")
            for cls in layer_class.__mro__):
        raise TypeError(f"layer_class must be a Keras layer class, got {layer_class!r}")


def register_layer_kind(layer_class: type, kind: LayerKind) -> None:
    """Teaches keras_compress a layer class (exactly that class, not its subclasses).

    Example:
        >>> import keras
        >>> from keras_compress.layer_kinds import BUILTIN_KINDS, register_layer_kind
        >>> class MyDense(keras.layers.Dense):
        ...     pass
        >>> register_layer_kind(MyDense, BUILTIN_KINDS["Dense"])
    """
    _check_layer_class(layer_class)
    if not isinstance(kind, LayerKind):
        raise TypeError(f"kind must be a LayerKind, got {type(kind).__name__}")
    LAYER_KINDS[layer_class] = kind


def register_channel_rule(layer_class: type, rule: ChannelRule) -> None:
    """Teaches structured pruning and `shrink` a layer class (exactly that class, not its
    subclasses, whose `call` may differ), keeping what else is registered for it.

    Example:
        >>> import keras
        >>> from keras_compress.pruning import ChannelRule, register_channel_rule
        >>> class MyDense(keras.layers.Dense):
        ...     pass
        >>> register_channel_rule(MyDense, ChannelRule("producer", {"kernel": -1, "bias": -1},
        ...                                            ("kernel", "bias"), size_key="units"))
    """
    _check_layer_class(layer_class)
    if not isinstance(rule, ChannelRule):
        raise TypeError(f"rule must be a ChannelRule, got {type(rule).__name__}")
    known = LAYER_KINDS.get(layer_class) or BUILTIN_KINDS.get(_builtin_class_name(layer_class) or "",
                                                              _UNKNOWN)
    LAYER_KINDS[layer_class] = dataclasses.replace(known, channels=rule)
