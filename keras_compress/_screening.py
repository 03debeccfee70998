"""Screening of model files before anything in them is deserialized.

A Keras config names classes and functions by module and name, and tf_keras imports
what it names: a file from elsewhere could make loading import any module, return any
function, or run a TensorFlow op with side effects (`io.write_file`) through an op
layer, or Python bytecode through a Lambda. Under safe mode every object a config
names must resolve, without importing anything, to a Keras, keras_compress or tfmot
class of a kind that only holds data (layers, initializers, quantizers, ...), or to a
function from Keras' activations, losses and metrics or TensorFlow's math ops; op
layers may call pure math only; Lambda layers are refused.
"""

import json
import re
import sys
import zipfile

from keras_compress._declared_sizes import read_json_member
from keras_compress._keras import (
    CODE_LAYER_NAMES,
    OP_LAYER_NAMES,
    keras,
    public_symbol,
    registered_object,
    saved_model_keras_metadata,
)
from keras_compress._tfmot import data_classes
from keras_compress.pruning.schedules import ConstantSparsity, PolynomialDecay

__all__ = ["unsafe_reason", "keras3_unsafe_reason", "model_configs", "named_nodes"]

# Objects that hold plain data; deserializing them calls nothing named by the file.
_DATA_CLASSES = frozenset({"__tensor__", "__numpy__", "__bytes__"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(>[A-Za-z_][A-Za-z0-9_]*)?$")  # "Name" or "package>Name"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODULE_ROOTS = ("keras", "tf_keras", "keras_compress", "tensorflow_model_optimization", "tensorflow")
_FUNCTION_MODULES = ("tf_keras.src.activations", "tf_keras.src.losses", "tf_keras.src.metrics",
                     "tensorflow.python.ops.math_ops", "tensorflow.python.ops.gen_math_ops",
                     "tensorflow.python.ops.nn_ops", "tensorflow.python.ops.gen_nn_ops",
                     "tensorflow.python.ops.nn_impl", "tensorflow.python.ops.array_ops",
                     "tensorflow.python.ops.gen_array_ops", "tensorflow.python.ops.clip_ops",
                     "tensorflow.python.ops.special_math_ops")
# TensorFlow functions an op layer (`x * 2`, `tf.reshape(x, ...)` in a functional model) may call:
# pure functions of their inputs (an op layer called on constants runs while the model loads).
_OP_PREFIXES = ("math.", "nn.", "linalg.", "__operators__.", "signal.")
_OPS = frozenset({
    "abs", "add", "argsort", "boolean_mask", "broadcast_to", "cast", "clip_by_norm", "clip_by_value",
    "concat",
    "cumsum", "einsum", "exp", "expand_dims", "fill", "gather", "gather_nd", "identity", "matmul", "maximum",
    "meshgrid", "minimum", "multiply", "norm", "one_hot", "ones", "ones_like", "pad", "range", "rank",
    "repeat", "reshape", "reverse", "roll", "sequence_mask", "shape", "sigmoid", "size", "slice", "sort",
    "split", "sqrt", "square", "squeeze", "stack", "stop_gradient", "strided_slice", "subtract", "tanh",
    "tensordot", "tile", "transpose", "unstack", "where", "zeros", "zeros_like"})


def model_configs(path, kind):
    """The JSON configs tf_keras would deserialize from the file or folder."""
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            return [read_json_member(archive, "config.json")]
    if kind == "h5":
        import h5py

        with h5py.File(path, "r") as file:
            texts = [file.attrs.get(key) for key in ("model_config", "training_config")]
        if texts[0] is None:
            return []
        return [json.loads(text if isinstance(text, str) else text.decode())
                for text in texts if text is not None]
    return [json.loads(text) for text in saved_model_keras_metadata(path)]


# Config keys whose string value Keras reads as a path (lookup and text layers' vocabularies).
_PATH_KEYS = ("vocabulary", "idf_weights")
_PATH_READERS = frozenset({"StringLookup", "IntegerLookup", "IndexLookup", "TextVectorization"})


def _path_reason(node):
    """Why the node reads a file outside the model file, or None."""
    config = node.get("config")
    if node.get("class_name") not in _PATH_READERS:
        return None
    for key in _PATH_KEYS:
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, str):
            return (f"a {node['class_name']} whose {key} is the path {value!r}: safe mode reads no file "
                    f"outside the model file. Save the layer with its {key} as a list (it is then "
                    "stored in the file)")
    return None


def named_nodes(config):
    """Every dict in `config` that names a class or function."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from named_nodes(value)
    elif isinstance(config, list):
        for value in config:
            yield from named_nodes(value)


def _safe_bases():
    import tensorflow as tf

    return (keras.layers.Layer, keras.initializers.Initializer, keras.regularizers.Regularizer,
            keras.constraints.Constraint, keras.optimizers.Optimizer, keras.optimizers.legacy.Optimizer,
            keras.optimizers.schedules.LearningRateSchedule, keras.losses.Loss, keras.metrics.Metric,
            keras.mixed_precision.Policy, keras.layers.InputSpec, tf.TypeSpec, *data_classes(),
            PolynomialDecay, ConstantSparsity)  # keras_compress's schedules: settings only


def _resolve(node, name, is_function, custom_objects):
    """What tf_keras's current deserializer makes of `node` (`serialization_lib`), found
    without importing anything; None when it would need an import or names nothing."""
    key = name if is_function else node.get("registered_name", node["class_name"])
    registered = registered_object(key, custom_objects) if key else None
    module = node.get("module")
    if registered is not None or module is None:
        return registered
    if module.split(".")[0] in ("keras", "tf_keras"):
        found = public_symbol(f"{module}.{name}")
        if found is not None:
            return found
    if is_function and module == "builtins":
        kinds = ("activations", "constraints", "initializers", "losses", "metrics", "optimizers",
                 "regularizers")
        return next(filter(None, (public_symbol(f"keras.{kind}.{name}") for kind in kinds)), None)
    loaded = sys.modules.get("tf_" + module if module.startswith("keras") else module)
    if loaded is None:
        return None
    return vars(loaded).get(name) or vars(loaded).get(node.get("registered_name") or "")


def _resolve_legacy(class_name, custom_objects):
    """What tf_keras's legacy deserializer (HDF5 files, SavedModel metadata) makes of a node:
    it reads `class_name` alone, from the registry and Keras' own modules."""
    return (registered_object(class_name, custom_objects) or public_symbol(f"keras.layers.{class_name}")
            or public_symbol(f"keras.models.{class_name}"))


def _op_layer_reason(node):
    function = (node.get("config") or {}).get("function") if isinstance(node.get("config"), dict) else None
    if isinstance(function, str) and _MODULE.match(function.replace("__operators__", "operators")) \
            and (function in _OPS or function.startswith(_OP_PREFIXES)):
        return None
    return f"an op layer calling TensorFlow's {function!r}, which is not a pure math op"


def _class_reason(found, node, where, top_level):
    code_layers = {base.__name__ for base in found.__mro__} & CODE_LAYER_NAMES
    if code_layers - OP_LAYER_NAMES:
        return f"a {found.__name__} layer (it holds Python code)"
    if code_layers:
        return _op_layer_reason(node)
    if top_level and not issubclass(found, keras.Model):
        return f"{where!r} at the top, which is not a Keras model"
    if not issubclass(found, _safe_bases()):
        return f"{where!r}, which is not a Keras layer, model or other Keras object"
    return None


def _legacy_reason(class_name, custom_objects, node, top_level):
    found = _resolve_legacy(class_name, custom_objects)
    if isinstance(found, type):
        return _class_reason(found, node, class_name, top_level)
    # A name the legacy loader cannot find fails there, running nothing.
    return _op_layer_reason(node) if class_name in OP_LAYER_NAMES else None


def _current_reason(node, name, is_function, custom_objects, top_level):
    module = node.get("module")
    where = f"{module}.{name}" if module else name
    found = _resolve(node, name, is_function, custom_objects)
    if isinstance(found, type):
        return _class_reason(found, node, where, top_level)
    if found is None:
        # Without a module, tf_keras finds nothing it would import: it fails, running nothing.
        return None if module is None else f"{where!r}, which is not a registered or built-in Keras object"
    if top_level:
        return f"{where!r} at the top, which is not a Keras model"
    if callable(found) and (getattr(found, "__module__", "") or "").startswith(_FUNCTION_MODULES):
        return None
    if registered_object(name, custom_objects) is found:
        return None  # registered by the caller's own code
    return f"the function {where!r}, which is not a Keras activation, loss, metric or TensorFlow math op"


def _check_node(node, custom_objects, top_level):
    """Why `node` may not be deserialized under safe mode, or None. Keras reads a node in
    two ways (its current and its legacy deserializer, which a file can pick); both must be
    safe."""
    class_name = node["class_name"]
    if class_name in _DATA_CLASSES:
        return None
    if class_name == "__lambda__":
        return "a Python lambda"
    is_function = class_name == "function"
    name = node.get("config") if is_function else \
        node.get("spec_name") if class_name == "__typespec__" else class_name
    module = node.get("module")
    if not isinstance(name, str) or not _NAME.match(name) or not _NAME.match(class_name):
        return f"the object name {name!r}"
    if module is not None and (not isinstance(module, str) or not _MODULE.match(module)
                               or module.split(".")[0] not in _MODULE_ROOTS + ("builtins",)):
        return f"{name!r} from module {module!r}, which is neither Keras, keras_compress nor tfmot"
    if class_name in CODE_LAYER_NAMES - OP_LAYER_NAMES:
        return f"a {class_name} layer (it holds Python code)"
    return (_current_reason(node, name, is_function, custom_objects, top_level)
            or (None if is_function else _legacy_reason(class_name, custom_objects, node, top_level)))


def unsafe_reason(path, kind, custom_objects=None):
    """Why the model at `path` (a file of `kind` "keras"/"h5", or "saved_model") may not be
    loaded under safe mode, or None when every object its config names is allowed."""
    configs = model_configs(path, kind)
    if not configs:
        return "it holds no Keras model configuration"
    if not isinstance(configs[0], dict) or "class_name" not in configs[0]:
        return "its model configuration is not a Keras object"
    for index, config in enumerate(configs):
        for node in named_nodes(config):
            reason = _check_node(node, custom_objects, top_level=index == 0 and node is config)
            # A SavedModel rebuilds each layer from its own entry, whose vocabulary is the folder's
            # asset; the model's entry keeps the path it was saved from, which is never read.
            if not reason and (kind != "saved_model" or node is config):
                reason = _path_reason(node)
            if reason:
                return f"it names {reason}"
    return None


# Keras 3 functions a config may name: activations, losses, metrics and the pure ops.
_KERAS3_FUNCTION_APIS = ("keras.activations.", "keras.losses.", "keras.metrics.", "keras.ops.")


def _keras3_resolve(node, name, is_function, custom_objects):
    """What Keras 3's deserializer makes of `node`, found without importing anything."""
    from keras_compress import _keras3

    key = name if is_function else node.get("registered_name") or node["class_name"]
    registered = _keras3.registered_object(key, custom_objects)
    module = node.get("module")
    if registered is not None or module is None:
        return registered
    if module == "keras" or module.startswith("keras."):
        found = _keras3.public_symbol(f"{module}.{name}")
        if found is not None:
            return found
    if is_function and module == "builtins":
        kinds = ("activations", "constraints", "initializers", "losses", "metrics", "optimizers",
                 "regularizers")
        return next(filter(None, (_keras3.public_symbol(f"keras.{kind}.{name}") for kind in kinds)), None)
    loaded = sys.modules.get(module) if module.split(".")[0] == "keras" else None
    return vars(loaded).get(name) if loaded is not None else None


def _keras3_node_reason(node, custom_objects, top_level):
    from keras_compress import _keras3

    class_name = node["class_name"]
    if class_name in _DATA_CLASSES or class_name == "__keras_tensor__":
        return None
    if class_name == "__lambda__":
        return "a Python lambda"
    is_function = class_name == "function"
    name = node.get("config") if is_function else class_name
    module = node.get("module")
    if not isinstance(name, str) or not _NAME.match(name) or not _NAME.match(class_name):
        return f"the object name {name!r}"
    if module is not None and (not isinstance(module, str) or not _MODULE.match(module)
                               or module.split(".")[0] not in ("keras", "keras_compress", "builtins")):
        return f"{name!r} from module {module!r}, which is neither Keras nor keras_compress"
    where = f"{module}.{name}" if module else name
    reason = _path_reason(node)
    if reason:
        return reason
    found = _keras3_resolve(node, name, is_function, custom_objects)
    if found is None:
        return None if module is None else f"{where!r}, which is not a registered or built-in Keras object"
    if isinstance(found, type):
        if any(base.__name__ == "Lambda" for base in found.__mro__):
            return f"a {found.__name__} layer (it holds Python code)"
        if top_level and not issubclass(found, _keras3.keras.Model):
            return f"{where!r} at the top, which is not a Keras model"
        if not issubclass(found, _keras3.data_classes()):
            return f"{where!r}, which is not a Keras layer, model or other Keras object"
        return None
    if top_level:
        return f"{where!r} at the top, which is not a Keras model"
    if (_keras3.public_name(found) or "").startswith(_KERAS3_FUNCTION_APIS):
        return None
    if _keras3.registered_object(name, custom_objects) is found:
        return None  # registered by the caller's own code
    return f"the function {where!r}, which is not a Keras activation, loss, metric or op"


def keras3_unsafe_reason(path, custom_objects=None):
    """Why the Keras 3 `.keras` file at `path` may not be loaded under safe mode, or None."""
    config = model_configs(path, "keras")[0]
    if not isinstance(config, dict) or "class_name" not in config:
        return "its model configuration is not a Keras object"
    for node in named_nodes(config):
        reason = _keras3_node_reason(node, custom_objects, top_level=node is config)
        if reason:
            return f"it names {reason}"
    return None
