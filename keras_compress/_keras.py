"""The one module that imports Keras.

keras_compress speaks tf_keras, the Keras 2 API that tensorflow-model-optimization
understands. Everything else in the package gets Keras from here, so a later
Keras flavour needs changes in this module only.
"""

import os

import tf_keras as keras

from keras_compress.errors import UnsupportedModelError

__all__ = ["keras", "check_model", "check_graph_model", "copy_model", "forget_step_function",
           "graph_nodes", "inbound_layers",
           "is_graph_model", "is_saving", "layer_input_tensors", "registered_object", "set_train_function",
           "steps_per_execution", "train_function",
           "public_symbol",
           "saved_model_keras_metadata", "CODE_LAYER_NAMES", "OP_LAYER_NAMES"]

_HOW_TO_BUILD = ("Build the model with `import tf_keras as keras` (the Keras 2 API), "
                 "e.g. keras.Sequential([...]).")


def _describe(obj):
    cls = type(obj)
    module = cls.__module__ or ""
    if module.split(".")[0] == "keras":
        return f"a Keras 3 model ({module}.{cls.__name__})"
    return f"{module}.{cls.__name__}"


def check_model(model, argument="model"):
    """Returns `model` if it is a tf_keras model, else raises UnsupportedModelError."""
    if isinstance(model, keras.Model):
        return model
    raise UnsupportedModelError(
        f"`{argument}` must be a tf_keras model, got {_describe(model)}. {_HOW_TO_BUILD}"
    )


def check_graph_model(model, argument="model", action="prune"):
    """Like `check_model`, and also requires a built Sequential or functional model."""
    check_model(model, argument)
    if not is_graph_model(model):
        if isinstance(model, keras.Sequential):
            raise ValueError(
                f"`{argument}` is a Sequential model that is not built yet: give its first "
                "layer an input shape (keras.Input(shape=...)) or call model.build(input_shape)."
            )
        raise UnsupportedModelError(
            f"Cannot {action} subclassed model {model.name!r} ({type(model).__name__}): its layers "
            "are called from Python code that cannot be rewired. Rebuild it as a Sequential or "
            "functional model, or apply the wrapping to its layers inside the subclass."
        )
    return model


def copy_model(model):
    """A new model with the same layers and weights, sharing nothing (no optimizer)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def is_graph_model(model):
    """Whether `model` is a Sequential or functional model (a graph of layers Keras records)."""
    return bool(getattr(model, "_is_graph_network", False))


def graph_nodes(model):
    """The calls of a graph model's layers, inputs first: nodes with `layer`, `keras_inputs`
    and `outputs`."""
    return [node for depth in sorted(model._nodes_by_depth, reverse=True)
            for node in model._nodes_by_depth[depth]]


def layer_input_tensors(layer):
    """Every symbolic tensor `layer` is called on, over all its calls."""
    import tensorflow as tf

    return [tensor for node in layer._inbound_nodes for tensor in tf.nest.flatten(node.keras_inputs)]


def steps_per_execution(model):
    """How many training steps one call of the model's train function runs."""
    variable = getattr(model, "_steps_per_execution", None)
    return 1 if variable is None else int(variable.numpy())


def train_function(model):
    """The function `fit` calls for every `steps_per_execution` steps (None before `fit` makes it)."""
    return model.train_function


def set_train_function(model, function):
    """Makes `fit` call `function(iterator)` instead of the model's own train function."""
    model.train_function = function


def forget_step_function(model, kind):
    """Makes the next `fit` ("train") or `evaluate` ("test") trace a new step function."""
    setattr(model, f"{kind}_function", None)


def inbound_layers(layer):
    """The layers whose outputs `layer` is called on (its first call in the model)."""
    nodes = layer._inbound_nodes
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def is_saving():
    """Whether Keras is tracing layer calls to write a SavedModel (it traces `training=True` too)."""
    from tf_keras.src.engine import base_layer_utils

    return bool(base_layer_utils.call_context().saving)


def registered_object(name, custom_objects=None):
    """The class or function registered under `name` (custom objects, scopes, the global
    registry), or None."""
    return keras.saving.get_registered_object(name, custom_objects=custom_objects)


def public_symbol(api_name):
    """The object TensorFlow exports under `api_name` ("keras.layers.Dense", "math.add"),
    or None. This is how tf_keras resolves Keras modules and op layers from a config."""
    from tensorflow.python.util import tf_export

    return tf_export.get_symbol_from_name(api_name)


# Layers whose config names code that deserialization or the first call runs: Python
# bytecode (Lambda) or any public TensorFlow symbol (the op layers).
CODE_LAYER_NAMES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod",
                              "InstanceProperty"})
OP_LAYER_NAMES = frozenset({"TFOpLambda", "SlicingOpLambda"})


def saved_model_keras_metadata(folder):
    """The JSON metadata strings tf_keras rebuilds a SavedModel's Keras objects from: those of
    `keras_metadata.pb` and those stored in `saved_model.pb` (older files)."""
    import tensorflow as tf
    from tf_keras.protobuf import saved_metadata_pb2

    strings = []
    metadata_file = os.path.join(folder, "keras_metadata.pb")
    if os.path.exists(metadata_file):
        metadata = saved_metadata_pb2.SavedMetadata()
        with open(metadata_file, "rb") as file:
            metadata.ParseFromString(file.read())
        strings += [node.metadata for node in metadata.nodes]
    saved_model = tf.__internal__.saved_model.parse_saved_model(folder)
    for meta_graph in saved_model.meta_graphs:
        strings += [node.user_object.metadata for node in meta_graph.object_graph_def.nodes
                    if node.WhichOneof("kind") == "user_object" and node.user_object.metadata]
    return strings
