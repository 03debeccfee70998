"""The one module that imports Keras.

keras_compress speaks tf_keras, the Keras 2 API that tensorflow-model-optimization
understands. Everything else in the package gets Keras from here, so a later
Keras flavour needs changes in this module only.
"""

import tf_keras as keras

from keras_compress.errors import UnsupportedModelError

__all__ = ["keras", "check_model", "check_graph_model", "copy_model"]

_HOW_TO_BUILD = "Build the model with `import tf_keras as keras` (the Keras 2 API), e.g. keras.Sequential([...])."


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
    if not getattr(model, "_is_graph_network", False):
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
