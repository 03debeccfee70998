"""The tf_keras flavour: its Keras, and every private tf_keras attribute the package reads.

It implements `_flavour.Flavour`, as `_keras3` does for Keras 3; `_flavour.keras_for(model)`
picks one. Its other names serve the tf_keras roads (`_tfmot`, `tf_keras_qat`...).
"""

import os

import tensorflow as tf
import tf_keras as keras

__all__ = ["NAME", "ROADS", "FEATURES", "keras", "backend", "tensorflow_call", "quantized_layers",
           "call_count", "copy_model", "first_call", "forget_step_function", "is_masked",
           "graph_nodes", "op_calls", "inbound_layers", "input_names", "output_names", "output_tensors",
           "tensor_key", "rank",
           "is_graph_model", "is_saving", "layer_input_tensors", "registered_object", "set_train_function",
           "steps_per_execution", "train_function",
           "public_symbol", "output_mask",
           "saved_model_keras_metadata", "CODE_LAYER_NAMES", "OP_LAYER_NAMES"]

NAME = "tf_keras"
ROADS = {
    "qat": "keras_compress.quantization.tf_keras_qat",
    "distiller": "keras_compress.distillation.tf_keras_distiller:TfKerasDistiller",
    "pruning_wrap": "keras_compress.pruning.wrapper:pruning_wrap",
    "pruning_wrapper": "keras_compress._tfmot:TfmotPruneWrapper",
    "prunability": "keras_compress._tfmot:prunability",
    "prunable_weights": "keras_compress._tfmot:prunable_weights",
    "pruning_steps": "keras_compress.pruning.tf_keras_steps",
    "strip_pruning": "keras_compress._tfmot:strip_pruning",
}
FEATURES = frozenset({"clustering", "h5"})


def backend():
    """tf_keras runs on TensorFlow."""
    return "tensorflow"


def tensorflow_call(model, specs, call):
    """`(call, the tf.Module tracking what the call reads)`: a tf_keras call is TensorFlow's. The
    module holds the variables, and the preprocessing layers themselves (lookup tables are
    resources, not variables): tracking the whole model would have SavedModel (which the TFLite
    converter writes too) trace and serialize every layer, seconds per export of a real model."""
    trackable = tf.Module()
    trackable.variables_read = list(model.variables)
    trackable.preprocessing = [layer for layer in model.submodules
                               if ".preprocessing." in type(layer).__module__]
    return call, trackable


def quantized_layers(model):
    """tf_keras has no `model.quantize()`: no layer holds Keras' own int8 kernels."""
    return []


def copy_model(model):
    """A new model with the same layers and weights, sharing nothing (no optimizer)."""
    from keras_compress._layer_configs import check_rebuildable

    try:
        copy = keras.models.clone_model(model)
    except Exception:
        # Pruning, QAT and the scans work on copies: name the user's layer to blame, and the fix.
        check_rebuildable(model, "copy")
        raise
    copy.set_weights(model.get_weights())
    return copy


def is_graph_model(model):
    """Whether `model` is a Sequential or functional model (a graph of layers Keras records)."""
    return bool(getattr(model, "_is_graph_network", False))


def graph_nodes(model):
    """The calls of a graph model's layers, inputs first: `[(layer, input tensors, output tensors)]`."""
    import tensorflow as tf

    return [(node.layer, tf.nest.flatten(node.keras_inputs), tf.nest.flatten(node.outputs))
            for depth in sorted(model._nodes_by_depth, reverse=True)
            for node in model._nodes_by_depth[depth]]


def op_calls(model):
    """`{id(layer): (layer, args, kwargs)}`: how the TF-op layers of a graph model (`x + 3.0`,
    `tf.nn.relu6(x)`) were called in it (the last call, for one called more than once)."""
    return {id(node.layer): (node.layer, node.call_args, node.call_kwargs)
            for nodes in model._nodes_by_depth.values() for node in nodes
            if type(node.layer).__name__ == "TFOpLambda"}


def output_tensors(model):
    """The symbolic output tensors of a graph model."""
    import tensorflow as tf

    return tf.nest.flatten(model.outputs)


def input_names(model):
    return list(model.input_names)


def output_names(model):
    return list(model.output_names)


def tensor_key(tensor):
    """A hashable key for a symbolic tensor of a graph model."""
    return tensor.ref()


def rank(tensor):
    """The rank of a symbolic tensor, or None when unknown."""
    return tensor.shape.rank


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


def call_count(layer):
    """How many times `layer` is called in the graphs it belongs to."""
    return len(layer._inbound_nodes)


def first_call(layer):
    """`(input tensors, output tensors)` of the layer's first call in the model, flattened; None
    when it was never called."""
    nodes = layer._inbound_nodes
    if not nodes:
        return None
    return tf.nest.flatten(nodes[0].input_tensors), tf.nest.flatten(nodes[0].outputs)


def is_masked(tensor):
    """Whether a symbolic tensor carries a Keras mask (e.g. after an Embedding with mask_zero)."""
    return getattr(tensor, "_keras_mask", None) is not None


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


def output_mask(tensor):
    """The Keras mask a layer set on its output `tensor` (False at padding), or None."""
    return getattr(tensor, "_keras_mask", None)
