"""Rebuilding a model's own layers from their configs, as every copy does (`clone_model`,
tfmot's wrapping): leniently where a layer's `__init__` takes no `**kwargs`, and with an error
that names the layer and the fix where it cannot be done."""

import inspect

from keras_compress.errors import UnsupportedModelError
from keras_compress.layer_kinds import builtin_name

__all__ = ["check_rebuildable", "rebuilt"]

_FIX = ("Give {cls}.__init__ a **kwargs that it passes on (super().__init__(**kwargs)), and a get_config() "
        "that returns its own arguments on top of super().get_config().")


def rebuilt(layer):
    """A new layer like `layer`, from its config. A layer whose `__init__` takes neither `**kwargs`
    nor Keras' base arguments (keras.io writes its layers so) gets the config's arguments its
    `__init__` names, then its name, trainability and dtype policy set as the config says. A layer
    with a `rebuilt_copy()` (a `Replaced` around such a layer) makes its own."""
    if hasattr(layer, "rebuilt_copy"):
        return layer.rebuilt_copy()
    cls = type(layer)
    config = layer.get_config()
    try:
        return cls.from_config(config)
    except TypeError:
        parameters = inspect.signature(cls.__init__).parameters
        if (any(p.kind is p.VAR_KEYWORD for p in parameters.values())
                or (cls.__init__.__module__ or "").split(".")[0] in ("keras", "tf_keras")):
            raise
        new = cls(**{key: value for key, value in config.items() if key in parameters})
        try:
            new.name = layer.name  # Keras 3 (a tf_keras layer's name is read-only: its own error stands)
        except AttributeError:
            raise TypeError(f"{cls.__name__}.__init__ takes none of Keras' layer arguments") from None
        new.trainable = layer.trainable
        new.dtype_policy = layer.dtype_policy
        return new


def _problem(layer, need_name):
    """Why `layer` cannot be rebuilt from its config, or None."""
    try:
        config = layer.get_config()
    except NotImplementedError:
        return "it has no get_config()"
    if need_name and "name" not in config:
        return "its config has no name: its __init__ does not pass **kwargs to super().__init__"
    try:
        type(layer).from_config(config) if need_name else rebuilt(layer)
    except Exception as error:  # whatever the user's __init__ raises
        cause = str(error).split("Exception encountered:")[-1].strip()  # Keras 3 quotes the config first
        return f"from_config raised {type(error).__name__}: {cause[:200]}"
    return None


def check_rebuildable(model, action, need_name=False):
    """Raises `UnsupportedModelError` naming the first of `model`'s own (not built-in) layers that
    cannot be rebuilt from its config (`need_name`: nor keeps its name there)."""
    for layer in model.layers:
        if builtin_name(layer) is not None:
            continue
        problem = _problem(layer, need_name)
        if problem is not None:
            cls = type(layer).__name__
            raise UnsupportedModelError(
                f"Cannot {action} model {model.name!r}: Keras copies it layer by layer from each layer's "
                f"config, and layer {layer.name!r} ({cls}) cannot be rebuilt from its config ({problem}). "
                + _FIX.format(cls=cls))
