"""Which Keras a model is built with, decided in one place.

Two flavours are supported: tf_keras (Keras 2, `import tf_keras as keras`), worked on
through tensorflow-model-optimization, and Keras 3 (`import keras`), worked on natively
on the TensorFlow and the JAX backend. The flavour is read from the classes of the model
itself, without importing either package; `keras_for(model)` returns the module that
holds that flavour's Keras and every private attribute the package reads from it
(`_keras` or `_keras3`), which share one set of helper names.
"""

import importlib

from keras_compress.errors import UnsupportedModelError

__all__ = ["TF_KERAS", "KERAS3", "flavour_of", "flavour_module", "keras_for", "check_model",
           "check_graph_model", "numpy_dtype", "SUPPORTED_BACKENDS"]

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
SUPPORTED_BACKENDS = ("tensorflow", "jax")
_MODULES = {TF_KERAS: "keras_compress._keras", KERAS3: "keras_compress._keras3"}
_NAMES = {TF_KERAS: "tf_keras", KERAS3: "Keras 3"}


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
