"""The Keras 3 flavour: its Keras, and every private Keras 3 attribute the package reads.

It implements `_flavour.Flavour`, as `_keras` does for tf_keras; `_flavour.keras_for(model)`
picks one. Its other names serve the Keras 3 roads (`keras3_qat`, `keras3_wrapper`...).
Keras 3 runs on the TensorFlow or the JAX backend; `backend()` says which.
"""

import os

import keras

__all__ = ["NAME", "ROADS", "FEATURES", "keras", "backend",
           "copy_model", "functional", "forget_step_function", "graph_nodes", "op_calls",
           "is_graph_model",
           "layer_input_tensors", "output_tensors", "rank", "set_train_function", "steps_per_execution",
           "tensor_key", "train_function", "input_names", "output_names", "public_name", "public_symbol",
           "registered_object", "data_classes", "quantized_layers", "call_takes_training", "call_takes_mask",
           "unwrapped", "call_with_values", "producer", "call_count", "sublayers",
           "child_layers", "add_variable", "saves_declared_variables_only", "load_without", "output_mask",
           "tensorflow_call", "attention_projections", "replace_child", "call_like"]

NAME = "keras3"
ROADS = {
    "qat": "keras_compress.quantization.keras3_qat",
    "distiller": "keras_compress.distillation.keras3_distiller:Keras3Distiller",
    "pruning_wrap": "keras_compress.pruning.keras3_wrapper:pruning_wrap",
    "pruning_wrapper": "keras_compress.pruning.keras3_wrapper:PruneLowMagnitude",
    "prunability": "keras_compress.pruning.keras3_wrapper:prunability",
    "prunable_weights": "keras_compress.pruning.keras3_wrapper:prunable_weights",
    "pruning_steps": "keras_compress.pruning.keras3_steps",
    "strip_pruning": "keras_compress.pruning.keras3_wrapper:strip_pruning",
}
FEATURES = frozenset({"depthwise_pruning", "sublayer_pruning"})


def backend():
    """"tensorflow" or "jax" (the backends keras_compress supports)."""
    return keras.backend.backend()


def copy_model(model):
    """A new model with the same layers and weights, sharing nothing (no optimizer: Keras 3's
    `clone_model` would compile the copy like the original). The model is in memory, trusted:
    its own Lambda layers are rebuilt outside Keras' safe mode, which guards files."""
    from keras.src.saving.serialization_lib import SafeModeScope

    from keras_compress._layer_configs import check_rebuildable, rebuilt

    compiled = getattr(model, "compiled", False)
    try:
        model.compiled = False  # clone_model compiles the copy of a compiled model
        with SafeModeScope(False):
            try:
                copy = keras.models.clone_model(model, clone_function=rebuilt)
            except Exception:
                # Pruning, QAT and the scans work on copies: name the user's layer to blame, and the fix.
                check_rebuildable(model, "copy")
                raise
    finally:
        model.compiled = compiled
    if len(copy.weights) >= len(model.weights):
        copy.set_weights(model.get_weights())  # Keras' own error where the copy holds more
    else:  # variables its layers do not save (pruning masks added inside custom layers): copy what they save
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.weights.h5")
            model.save_weights(path)
            copy.load_weights(path)
    return copy


def functional(model):
    """The functional graph of a Sequential or functional model (itself, or a Sequential's
    functional model, same layers), or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


def is_graph_model(model):
    """Whether `model` is a built Sequential or a functional model."""
    return functional(model) is not None


def graph_nodes(model):
    """The calls of a graph model's layers, inputs first: `[(layer, input tensors, output tensors)]`."""
    graph = functional(model)
    return [(node.operation, list(node.input_tensors), list(node.outputs))
            for depth in sorted(graph._nodes_by_depth, reverse=True)
            for node in graph._nodes_by_depth[depth]]


def op_calls(model):
    """`{id(operation): (operation, args, kwargs)}`: how the operations of a graph model that are
    not layers (`x + 3.0`, `keras.ops.relu6(x)`) were called in it (the last call, for one called
    more than once)."""
    return {id(node.operation): (node.operation, node.arguments.args, node.arguments.kwargs)
            for nodes in functional(model)._nodes_by_depth.values() for node in nodes
            if not isinstance(node.operation, keras.layers.Layer)}


def output_tensors(model):
    """The symbolic output tensors of a graph model."""
    return list(keras.tree.flatten(functional(model).outputs))


def input_names(model):
    """The names of a graph model's inputs (their InputLayers', stable through saving), in order."""
    return [tensor._keras_history[0].name for tensor in keras.tree.flatten(functional(model).inputs)]


def output_names(model):
    """The names of a graph model's outputs (the layers that make them), in order."""
    return [tensor._keras_history[0].name for tensor in output_tensors(model)]


def tensor_key(tensor):
    """A hashable key for a symbolic tensor of a graph model."""
    return id(tensor)


def rank(tensor):
    return len(tensor.shape)


def layer_input_tensors(layer):
    """Every symbolic tensor `layer` is called on, over all its calls."""
    return [tensor for node in layer._inbound_nodes for tensor in node.input_tensors]


def steps_per_execution(model):
    """How many training steps one call of the model's train function runs."""
    return int(getattr(model, "steps_per_execution", 1) or 1)


def train_function(model):
    """The function `fit` calls for every `steps_per_execution` steps: `f(iterator)` on
    TensorFlow, `f(state, iterator) -> (logs, state)` on JAX (None before `fit` makes it)."""
    return model.train_function


def set_train_function(model, function):
    model.train_function = function


def forget_step_function(model, kind):
    """Makes the next `fit` ("train") or `evaluate` ("test") trace a new step function."""
    setattr(model, f"{kind}_function", None)


def public_symbol(api_name):
    """The object Keras 3 exports under `api_name` ("keras.layers.Dense"), or None; how Keras 3
    resolves its own objects from a config."""
    from keras.src import api_export

    return api_export.get_symbol_from_name(api_name)


def public_name(obj):
    """The public Keras 3 name of `obj` ("keras.activations.relu"), or None."""
    from keras.src import api_export

    return api_export.get_name_from_symbol(obj)


def registered_object(name, custom_objects=None):
    """The class or function registered under `name` (custom objects, the global registry), or None."""
    return keras.saving.get_registered_object(name, custom_objects=custom_objects)


def data_classes():
    """The base classes of what Keras 3 saves and loads as data (layers, losses, dtype policies...)."""
    from keras.src.saving.keras_saveable import KerasSaveable

    return (KerasSaveable, keras.DTypePolicy, keras.InputSpec, keras.initializers.Initializer,
            keras.regularizers.Regularizer, keras.constraints.Constraint, keras.optimizers.Optimizer,
            keras.optimizers.schedules.LearningRateSchedule, keras.losses.Loss, keras.metrics.Metric,
            keras.quantizers.Quantizer, keras.quantizers.QuantizationConfig)


def quantized_layers(model):
    """The layers of `model` that `model.quantize()` quantized (post-training), by name."""
    return [layer.name for layer in sublayers(model)
            if getattr(layer, "quantization_mode", None)]


def call_takes_training(layer):
    """Whether the layer's `call` has a `training` argument."""
    return layer._call_has_training_arg


def unwrapped(model, wrapper_types):
    """`model` rebuilt with the layers inside its wrappers of `wrapper_types` in their place (the
    wrapped layers themselves, weights shared)."""
    def call(layer, *args, **kwargs):
        if "mask" in kwargs and not call_takes_mask(layer):  # a wrapper's call takes the mask
            kwargs.pop("mask")
        return layer(*args, **kwargs)

    def unwrap(layer):
        return layer.layer if isinstance(layer, wrapper_types) else layer

    if isinstance(model, keras.Sequential):  # layers are listed, not called: no mask arguments
        return keras.models.clone_model(model, clone_function=unwrap)
    return keras.models.clone_model(model, clone_function=unwrap, call_function=call)


def call_takes_mask(layer):
    """Whether the layer's `call` has a `mask` argument."""
    return layer._call_has_mask_arg


def tensorflow_call(model, specs, call):
    """`(a TensorFlow-callable version of call(*inputs), the tf.Module holding the variables it
    reads)` for a Keras 3 model: the call itself and the model's tf.Variables on the TensorFlow
    backend; on JAX, the call converted by Keras' ExportArchive (jax2tf)."""
    import tensorflow as tf

    if backend() == "tensorflow":
        trackable = tf.Module()
        trackable.variables_read = [variable.value for variable in model.variables]  # the tf.Variables
        return call, trackable
    from keras.export import ExportArchive

    archive = ExportArchive()
    archive.track(model)
    # Inference changes no state (no dropout seeds, no statistics): a static endpoint.
    function = archive.add_endpoint("call", call, input_signature=specs, is_static=True)
    return function, archive._tf_trackable


def call_with_values(wrapper, replaced, inputs, *args, **kwargs):
    """`wrapper.layer` called on its weights with `replaced` ({id(variable): value}) in place,
    adding what the layer's own `__call__` would (its losses and its activity regularization,
    divided by the batch) to `wrapper`; the layer's other state updates (BatchNormalization's
    moving statistics, e.g.) are written back."""
    layer = wrapper.layer
    trainable = [replaced.get(id(v), v.value) for v in layer.trainable_variables]
    non_trainable = [replaced.get(id(v), v.value) for v in layer.non_trainable_variables]
    outputs, updated, losses = layer.stateless_call(trainable, non_trainable, inputs, *args,
                                                    return_losses=True, **kwargs)
    # `losses` ends with the weights' regularization, which Keras adds for the wrapper anyway.
    regularized = sum(variable.regularizer is not None for variable in layer.trainable_weights)
    for loss in losses[:len(losses) - regularized]:
        wrapper.add_loss(loss)
    if layer.activity_regularizer is not None:
        for output in keras.tree.flatten(outputs):
            loss = layer.activity_regularizer(output)
            if len(output.shape) > 0:
                loss = loss / keras.ops.cast(keras.ops.shape(output)[0], loss.dtype)
            wrapper.add_loss(loss)
    for variable, value in zip(layer.non_trainable_variables, updated):
        if id(variable) not in replaced:
            variable.assign(value)
    return outputs


def producer(tensor):
    """The layer whose call made the symbolic `tensor`."""
    return tensor._keras_history[0]


def call_count(layer):
    """How many times `layer` is called in the graphs it belongs to."""
    return len(layer._inbound_nodes)


def sublayers(model):
    """Every layer inside `model`, nested ones included."""
    return list(model._flatten_layers(include_self=False))


def child_layers(layer):
    """The layers `layer` holds directly (not theirs), in the order it tracks them."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def add_variable(layer, name, shape, dtype, initializer, trainable=False):
    """A new variable of `layer`, added after it was built: it joins the layer's (and so its
    model's) variables, which `fit` and its JAX state carry; layers such as Dense save only the
    variables they declare, so files of the layer stay as they were."""
    tracker = layer._tracker
    locked = tracker.locked
    tracker.unlock()
    try:
        return layer.add_weight(name=name, shape=shape, dtype=dtype, initializer=initializer,
                                trainable=trainable)
    finally:
        tracker.locked = locked


def saves_declared_variables_only(layer):
    """Whether `layer` writes only the variables its class declares to files (Dense, EinsumDense,
    Embedding, the convolutions), so that variables added to it later stay out of them."""
    return type(layer).save_own_variables is not keras.layers.Layer.save_own_variables


def load_without(layer, unsaved, loaded):
    """Makes `layer` load its files, which do not hold its `unsaved` variables (added after it was
    built), and call `loaded()` after each load."""
    check, load = layer._check_load_own_variables, layer.load_own_variables
    left_out = {id(variable) for variable in unsaved}

    def check_saved(store):
        own = layer._trainable_variables + layer._non_trainable_variables
        saved = [variable for variable in own if id(variable) not in left_out]
        if len(store.keys()) != len(saved):
            check(store)  # Keras' own error

    def load_then_tell(store):
        load(store)
        loaded()

    object.__setattr__(layer, "_check_load_own_variables", check_saved)  # this layer only
    object.__setattr__(layer, "load_own_variables", load_then_tell)


def output_mask(tensor):
    """The Keras mask a layer set on its output `tensor` (False at padding), or None."""
    from keras.src.backend import get_keras_mask

    return get_keras_mask(tensor)


def attention_projections(layer):
    """`[(role, EinsumDense)]` of a built MultiHeadAttention: "query", "key", "value", "gate" (when it
    has one) and "output"."""
    names = [("query", "_query_dense"), ("key", "_key_dense"), ("value", "_value_dense"),
             ("gate", "_gate_dense"), ("output", "_output_dense")]
    return [(role, getattr(layer, name)) for role, name in names if getattr(layer, name, None) is not None]


def call_like(wrapper, layer):
    """Makes Keras read `wrapper`'s calls as `layer`'s, whose `call` it forwards to: keyword flags
    beside tensors (`use_causal_mask=True`) then bind to their own parameters."""
    for name in ("_call_signature", "call_signature_parameters", "_call_has_training_arg",
                 "_call_has_mask_arg", "_call_context_args", "_call_has_context_arg"):
        object.__setattr__(wrapper, name, getattr(layer, name))


def replace_child(parent, old, new):
    """Puts layer `new` where `parent` holds layer `old`: in the attribute that holds it and in its
    place among the layers `parent` tracks (so their variables keep their order)."""
    attribute = next((key for key, value in vars(parent).items() if value is old), None)
    if attribute is None:
        raise ValueError(f"layer {parent.name!r} holds layer {old.name!r} in a list or dict, not in an "
                         "attribute of its own")
    parent._layers[next(i for i, layer in enumerate(parent._layers) if layer is old)] = new
    ids = parent._tracker.stored_ids["layers"]
    ids.discard(id(old))
    ids.add(id(new))  # known to Keras' tracker in its place, so the assignment does not append it
    setattr(parent, attribute, new)  # and TensorFlow's checkpoint tracking follows the attribute
    return attribute
