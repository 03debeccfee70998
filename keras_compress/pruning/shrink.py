"""`shrink`: remove zeroed filters and units for real, giving a smaller dense model."""

import numpy as np

from keras_compress._flavour import check_graph_model, model_inputs, supports
from keras_compress._layer_configs import rebuilt
from keras_compress._types import KerasModel
from keras_compress.errors import ShrinkError
from keras_compress.layer_kinds import rule_for
from keras_compress.pruning._channels import ChannelGraph
from keras_compress.pruning.prune import pruning_wrappers, strip

__all__ = ["shrink"]


def _channel_values(layer, masked_only=False):
    """`[(weight value with its channel axis last, variable)]` of the layer's channel weights."""
    rule = rule_for(layer)
    pairs = rule.weights(layer, rule.masked if masked_only else None)
    return [(np.moveaxis(variable.numpy(), axis, -1), variable) for variable, axis in pairs]


def _dead_channels(graph, layers):
    """`{space: keep-mask}`: a channel is dead when every weight that feeds it is zero."""
    keep = {}
    for space, group in graph.groups.items():
        alive = np.zeros(group.size, bool)
        for name in group.producers:
            for value, _ in _channel_values(layers[name], masked_only=True):
                alive |= np.any(value.reshape(-1, value.shape[-1]) != 0, axis=0)
        keep[space] = alive
    for name, (segments, _) in graph.inputs.items():
        if name in graph.outputs:
            continue
        offset = 0
        for segment in segments:
            if segment.space in keep:
                for value, _ in _channel_values(layers[name], masked_only=True):
                    part = value.reshape(-1, value.shape[-1])[:, offset:offset + segment.size]
                    keep[segment.space] |= np.any(part != 0, axis=0)
            offset += segment.size
    for mask in keep.values():
        if not mask.any():
            mask[0] = True  # a layer keeps at least one channel; a zero channel changes nothing
    return keep


def _indices(mask, repeat=1):
    """Indices of kept channels, tiled over `repeat` positions (Flatten is channels-last)."""
    return (np.arange(repeat)[:, None] * mask.size + np.flatnonzero(mask)[None, :]).ravel()


def _sliced_weights(graph, layer, keep):
    """The layer's weights, in `layer.weights` order, without the removed channels: a producer's
    input weights lose input channels on their rule's input axes, and every channel weight
    loses output channels on its channel axis."""
    name = layer.name
    if name not in graph.inputs:
        return [w.numpy() for w in layer.weights]
    rule = rule_for(layer)
    axes = {id(variable): axis for variable, axis in rule.weights(layer)}
    in_mask, repeat = graph.layer_channels(name, keep)
    in_index = _indices(in_mask, repeat)
    producer = name in graph.outputs
    out_index = np.flatnonzero(graph.output_channels(name, keep)) if producer else in_index
    inputs = {id(variable): axis for variable, axis in rule.input_weights(layer)} if producer else {}
    values = []
    for variable in layer.weights:
        value = variable.numpy()
        if id(variable) in axes:
            value = np.take(value, out_index, axis=axes[id(variable)])
        if id(variable) in inputs:
            value = np.take(value, in_index, axis=inputs[id(variable)])
        values.append(value)
    return values


def _sample_inputs(model, rng):
    samples = []
    for tensor in model.inputs:
        shape = [2] + [d or 8 for d in tensor.shape[1:]]
        dtype = np.dtype(getattr(tensor.dtype, "as_numpy_dtype", tensor.dtype))
        if np.issubdtype(dtype, np.floating):
            samples.append(rng.standard_normal(shape).astype(dtype))
        else:
            samples.append(np.zeros(shape, dtype))
    return samples


def _check_same_outputs(reference, small):
    inputs = _sample_inputs(reference, np.random.default_rng(0))
    inputs = model_inputs(reference, inputs)
    expected = reference.predict_on_batch(inputs)
    actual = small.predict_on_batch(inputs)
    for want, got in zip(_as_list(expected), _as_list(actual)):
        scale = max(1.0, float(np.max(np.abs(want))))
        if want.shape != got.shape or not np.allclose(want, got, rtol=1e-3, atol=1e-4 * scale):
            raise ShrinkError("The shrunk model's outputs differ from the original's; it was not "
                              "returned. This is a bug in shrink: please report the model.")


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def shrink(model: KerasModel, *, verify: bool = True) -> KerasModel:
    """Builds a physically smaller model without the zeroed filters, units and channels.

    After `granularity="filter"` pruning, whole output channels carry zeros. `shrink`
    removes them from the layers that make them (Conv1D, Conv2D, Dense), carry them
    (BatchNormalization, DepthwiseConv2D) and read them (the next Conv2D or Dense,
    through Flatten), and removes channels coupled by Add-like joins together.
    It follows them through activations, elementwise arithmetic with numbers and
    products (hard-swish, squeeze-excite gates), and through a Reshape that keeps
    the last axis. Removal stops at model inputs and outputs and at layers it does
    not know (custom layers, other TF-op layers...), which keep their channels.

    On Keras 3 it also removes attention heads that hold only zeros: a
    MultiHeadAttention gets fewer `num_heads`, and inside a custom layer (keras.io's
    `TransformerBlock`, keras-hub's encoders) the copy of your layer holds the smaller
    attention and the smaller models it nests (a feed-forward `Sequential`), wrapped in
    `Replaced`, whose config records them so that the saved model loads
    (`keras_compress.load_model`).

    Args:
        model: a filter-pruned model, wrapped or stripped.
        verify: compare the outputs of the result with the input model's on random
            data, raising `ShrinkError` on mismatch.

    Returns:
        A new, ordinary Keras model whose outputs equal `model`'s to float tolerance.

    Example:
        >>> import keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
        ...                           keras.layers.Dense(2)])
        >>> w, b = model.layers[0].get_weights()
        >>> w[:, 1] = 0; b[1] = 0
        >>> model.layers[0].set_weights([w, b])
        >>> kc.pruning.shrink(model).layers[0].units
        2
    """
    check_graph_model(model, action="shrink")
    plain = strip(model) if pruning_wrappers(model) else model
    small = _shrunk(plain)
    if verify:
        _check_same_outputs(plain, small)
    return small


def _smaller_units(model):
    """`{top-level layer name: {route: (layer, smaller layer with its weights)}}` for the
    attention heads and nested models' width that hold only zeros in `model` (Keras 3)."""
    if not supports(model, "sublayer_pruning"):
        return {}
    from keras_compress.pruning.keras3_structures import dead_heads, fewer_heads, find
    from keras_compress.replaced_layers import in_scope_of

    smaller = {}
    for units in find(model):
        if units.route in smaller.get(units.top, {}):
            continue  # a nested model with several spaces: shrunk once
        if units.kind == "heads":
            dead = dead_heads(units)
            if dead.any():
                smaller.setdefault(units.top, {})[units.route] = (units.layer, fewer_heads(units, ~dead))
            continue
        with in_scope_of(units.layer):
            small = _shrunk(units.layer)
        if small.count_params() < units.layer.count_params():
            smaller.setdefault(units.top, {})[units.route] = (units.layer, small)
    return smaller


def _shrunk(plain):
    flavour = check_graph_model(plain, action="shrink")
    graph = ChannelGraph(plain)
    layers = {layer.name: layer for layer in plain.layers}
    keep = _dead_channels(graph, layers)
    smaller = _smaller_units(plain)

    def rebuild(layer):
        try:
            if layer.name in smaller:
                return _with_smaller_units(layer, smaller[layer.name])
            if layer.name not in graph.outputs and layer.name not in graph.reshapes:
                return rebuilt(layer)  # as it was (a layer of yours without **kwargs too)
            config = layer.get_config()
            if layer.name in graph.outputs:
                config[rule_for(layer).size_key] = int(graph.output_channels(layer.name, keep).sum())
            if layer.name in graph.reshapes:
                config["target_shape"] = (*config["target_shape"][:-1],
                                          graph.reshaped_channels(layer.name, keep))
            return layer.__class__.from_config(config)
        except ShrinkError:
            raise
        except Exception as error:
            raise ShrinkError(f"Cannot rebuild layer {layer.name!r} ({type(layer).__name__}) "
                              f"from its config: {error}") from error

    small = flavour.keras.models.clone_model(plain, clone_function=rebuild)
    for layer in small.layers:
        if not layer.weights:  # Keras 3 may rename an unnamed input in the copy
            continue
        original = layers[layer.name]
        try:
            if layer.name in smaller:
                _move_weights_around_units(original, layer, smaller[layer.name])
            else:
                layer.set_weights(_sliced_weights(graph, original, keep))
        except ValueError as error:
            raise ShrinkError(f"Cannot move the weights of layer {layer.name!r} "
                              f"({type(layer).__name__}) into the shrunk model: {error}") from error
    return small


def _with_smaller_units(layer, replacements):
    """The copy of `layer` with the smaller layers of `replacements` in it (itself one when it is a
    MultiHeadAttention at the top level)."""
    from keras_compress.replaced_layers import replaced_copy

    if () in replacements:
        return replacements[()][1]
    try:
        return replaced_copy(layer, {route: new for route, (_, new) in replacements.items()})
    except (ValueError, IndexError) as error:
        raise ShrinkError(f"Cannot put smaller layers into a copy of layer {layer.name!r} "
                          f"({type(layer).__name__}): {error}. Its __init__ must make the layers it holds, "
                          "each in an attribute of its own.") from error


def _move_weights_around_units(original, copy, replacements):
    """Weights of the copy of a layer with smaller units: every weight of the original but those of the
    layers replaced (the smaller ones hold theirs), in order."""
    replaced_old, replaced_new = set(), set()
    for old, new in replacements.values():
        replaced_old |= {id(weight) for weight in old.weights}
        replaced_new |= {id(weight) for weight in new.weights}
    sources = [weight for weight in original.weights if id(weight) not in replaced_old]
    targets = [weight for weight in copy.weights if id(weight) not in replaced_new]
    if [tuple(w.shape) for w in sources] != [tuple(w.shape) for w in targets]:
        raise ValueError("its other weights do not match the original's")
    for source, target in zip(sources, targets):
        target.assign(source.numpy())
