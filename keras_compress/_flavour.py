"""Which Keras a model is built with, decided in one place.

Two flavours are supported: tf_keras (Keras 2, `import tf_keras as keras`), worked on
through tensorflow-model-optimization, and Keras 3 (`import keras`), worked on natively
on the TensorFlow and the JAX backend. The flavour is read from the classes of the model
itself, without importing either package; `keras_for(model)` returns the module that
holds that flavour's Keras and every private attribute the package reads from it
(`_keras` or `_keras3`). Both modules implement `Flavour`, the one contract the rest of the
package reads a flavour through: helpers over its graphs, training functions and files, and
`ROADS`, where each piece of work whose code differs by flavour (pruning wrapper, QAT,
Distiller...) lives for it (`road(model, name)`). Other names in a flavour module serve only
that flavour's own roads.
"""

import importlib
import types
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from keras_compress.errors import UnsupportedModelError

__all__ = ["TF_KERAS", "KERAS3", "FLAVOURS", "Flavour", "flavour_of", "flavour_module", "keras_for", "road",
           "flavour_road", "flavour_title", "supports", "check_model", "check_graph_model", "numpy_dtype",
           "model_inputs", "SUPPORTED_BACKENDS"]

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
SUPPORTED_BACKENDS = ("tensorflow", "jax")
_MODULES = {TF_KERAS: "keras_compress._keras", KERAS3: "keras_compress._keras3"}
FLAVOURS = tuple(_MODULES)
_NAMES = {TF_KERAS: "tf_keras", KERAS3: "Keras 3"}
_IMPORTS = {TF_KERAS: "import tf_keras as keras", KERAS3: "import keras"}


class Flavour(Protocol):
    """What a flavour module provides (`_keras`, `_keras3`); a conformance test holds both to it."""

    NAME: str  # TF_KERAS or KERAS3
    keras: types.ModuleType  # its Keras package
    # Where each piece of work whose code differs by flavour lives, as "module" or "module:attribute":
    # "qat" (the quantization-aware training road), "distiller" (the Distiller class),
    # "pruning_wrap" (wrapping for `prune`), "pruning_wrapper" (the wrapper class),
    # "prunability" (layer -> "weights", "none" or None), "prunable_weights" (layer -> the weights
    # weight pruning masks in it), "strip_pruning" (model -> the model
    # without its wrappers), "pruning_steps" (how `PruningCallback` drives `fit`).
    ROADS: Mapping[str, str]
    FEATURES: frozenset  # work only some flavours can do: "clustering", "h5", "depthwise_pruning"
    backend: Callable[[], str]  # "tensorflow" or "jax"
    copy_model: Callable[[Any], Any]
    is_graph_model: Callable[[Any], bool]
    graph_nodes: Callable[[Any], list]
    op_calls: Callable[[Any], dict]
    call_count: Callable[[Any], int]
    layer_input_tensors: Callable[[Any], list]
    output_tensors: Callable[[Any], list]
    input_names: Callable[[Any], list]
    output_names: Callable[[Any], list]
    tensor_key: Callable[[Any], Any]
    rank: Callable[[Any], int]
    train_function: Callable[[Any], Any]
    set_train_function: Callable[[Any, Any], None]
    forget_step_function: Callable[[Any], None]
    steps_per_execution: Callable[[Any], int]
    tensorflow_call: Callable[[Any, list, Callable], tuple]
    quantized_layers: Callable[[Any], list]
    registered_object: Callable[..., Any]
    public_symbol: Callable[[str], Any]


def flavour_of(obj):
    """`TF_KERAS` or `KERAS3` for a Keras object (model, layer, optimizer, callback...), else None."""
    for cls in type(obj).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        if root == "tf_keras":
            return TF_KERAS
        if root == "keras":
            return KERAS3
    return None


def flavour_module(obj):
    """The flavour module (`_keras` or `_keras3`) of any Keras object, without `keras_for`'s model
    checks; None for an object of neither flavour."""
    flavour = flavour_of(obj)
    return importlib.import_module(_MODULES[flavour]) if flavour else None


def flavour_title(flavour):
    """`(its name for people, the import that gives it)`: ("Keras 3", "import keras")."""
    return _NAMES[flavour], _IMPORTS[flavour]


def flavour_road(flavour, name):
    """The module (or `module:attribute`) that flavour `flavour` (`TF_KERAS` or `KERAS3`) names for
    `name` in its `ROADS`, or None where it has none."""
    where = importlib.import_module(_MODULES[flavour]).ROADS.get(name)
    if where is None:
        return None
    path, _, attribute = where.partition(":")
    found = importlib.import_module(path)
    return getattr(found, attribute) if attribute else found


def road(obj, name, fallback=None):
    """`flavour_road` for the flavour of `obj` (`fallback`'s for an object of neither flavour, whose
    road then names the problem); UnsupportedModelError where there is none."""
    flavour = flavour_of(obj) or fallback
    found = flavour_road(flavour, name) if flavour else None
    if found is None:
        raise UnsupportedModelError(f"keras_compress has no {name} road for {_describe(obj)}: it works on "
                                    "Keras models (`import keras`, or `import tf_keras as keras`).")
    return found


def supports(obj, feature):
    """Whether the flavour of `obj` can do `feature` (one of `Flavour.FEATURES`' names)."""
    module = flavour_module(obj)
    return module is not None and feature in module.FEATURES


def model_inputs(model, inputs):
    """`inputs` (one per tensor of `model.inputs`, in that order) as the model takes them: the one
    tensor, a list, or a dict by input name (keras-hub's models)."""
    try:
        structure = model.input
    except AttributeError:  # a Keras 3 Sequential never called: one input
        structure = None
    if isinstance(structure, dict):
        import tensorflow as tf

        return tf.nest.pack_sequence_as(structure, list(inputs))
    return list(inputs) if len(inputs) > 1 else inputs[0]


def numpy_dtype(dtype):
    """The NumPy dtype of a TensorFlow dtype or a Keras 3 dtype name."""
    import numpy as np

    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def _describe(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__name__}"


def _check_backend():
    import keras

    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise UnsupportedModelError(
            f"Keras 3 runs on the {backend!r} backend here, which keras_compress does not support: "
            f"set KERAS_BACKEND to one of {', '.join(SUPPORTED_BACKENDS)} before importing keras.")


def keras_for(model, argument="model", flavours=(TF_KERAS, KERAS3), action=None):
    """The flavour module of a Keras model, after checking it is a model of a supported flavour
    whose layers all share that flavour (and, for Keras 3, a supported backend)."""
    flavour = flavour_of(model)
    module = importlib.import_module(_MODULES[flavour]) if flavour else None
    if module is None or not isinstance(model, module.keras.Model):
        raise UnsupportedModelError(
            f"`{argument}` must be a Keras model (`import keras` for Keras 3, or `import tf_keras as "
            f"keras`), got {_describe(model)}.")
    if flavour not in flavours:
        wanted = " or ".join(_NAMES[f] for f in flavours)
        raise UnsupportedModelError(
            f"Cannot {action or 'work on'} `{argument}`: it is a {_NAMES[flavour]} model, and this "
            f"works on {wanted} models only.")
    mixed = [layer.name for layer in getattr(model, "layers", [])
             if flavour_of(layer) not in (flavour, None)]
    if mixed:
        raise UnsupportedModelError(
            f"`{argument}` is a {_NAMES[flavour]} model holding layers of the other Keras flavour "
            f"({', '.join(mixed)}): build every layer with the same Keras.")
    if flavour == KERAS3:
        _check_backend()
    return module


def check_model(model, argument="model", flavours=(TF_KERAS, KERAS3), action=None):
    """Returns `model` if it is a Keras model of one of `flavours`, else raises UnsupportedModelError."""
    keras_for(model, argument, flavours, action)
    return model


def check_graph_model(model, argument="model", action="prune", flavours=(TF_KERAS, KERAS3)):
    """Like `check_model`, and also requires a built Sequential or functional model. Returns the
    model's flavour module."""
    module = keras_for(model, argument, flavours, action)
    if not module.is_graph_model(model):
        if isinstance(model, module.keras.Sequential):
            raise ValueError(
                f"`{argument}` is a Sequential model that is not built yet: give its first "
                "layer an input shape (keras.Input(shape=...)) or call model.build(input_shape).")
        raise UnsupportedModelError(
            f"Cannot {action} subclassed model {model.name!r} ({type(model).__name__}): its layers "
            "are called from Python code that cannot be rewired. Rebuild it as a Sequential or "
            "functional model, or apply the wrapping to its layers inside the subclass.")
    return module
