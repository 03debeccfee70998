"""`load_model`: open `.keras`, `.h5` and SavedModel files safely, with clear errors."""

import json
import os

from keras_compress._keras import keras
from keras_compress.errors import ModelFileError

__all__ = ["load_model"]


def _h5_layer_classes(path):
    import h5py

    with h5py.File(path, "r") as file:
        config = file.attrs.get("model_config")
    if config is None:
        raise ModelFileError(f"{path} holds no model configuration (only weights?): load it into a "
                             "model you build with model.load_weights(path).")
    classes = []

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node:
                classes.append(node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(config if isinstance(config, str) else config.decode()))
    return classes


def _code_refused(path, error=None):
    return ModelFileError(
        f"{path} contains code (a Lambda layer or another Python function) that loading would run. "
        "It was refused: pass safe_mode=False only if you trust where the file comes from."
        + (f" ({error})" if error else ""))


def load_model(path, *, safe_mode=True, compile=False, custom_objects=None):
    """Loads a Keras model from a `.keras` file, a legacy `.h5` file or a SavedModel folder.

    `.keras` files load with Keras' `safe_mode`; `.h5` files (where tf_keras ignores
    safe_mode) are checked for Lambda layers first. Pruned models load without tfmot
    scopes. Errors name the file and say what to do.

    Args:
        path: the file or folder.
        safe_mode: refuse files that hold code; pass False only for files you trust.
        compile: also restore the training configuration.
        custom_objects: classes and functions the file's config refers to.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path}")
    is_saved_model = os.path.isdir(path)
    if is_saved_model and not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ModelFileError(f"{path} is a folder but not a SavedModel (no saved_model.pb in it).")
    suffix = os.path.splitext(path)[1].lower()
    if not is_saved_model and suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelFileError(f"{path}: unknown model file type {suffix!r}; expected .keras, .h5 or "
                             "a SavedModel folder.")
    import keras_compress.pruning  # noqa: F401  (registers the pruning wrapper and schedules)
    import keras_compress.quantization  # noqa: F401  (registers the QAT layers and quantizers)

    try:
        if suffix in (".h5", ".hdf5") and safe_mode and "Lambda" in _h5_layer_classes(path):
            raise _code_refused(path)
        kwargs = {"safe_mode": safe_mode} if suffix == ".keras" else {}
        return keras.models.load_model(path, compile=compile, custom_objects=custom_objects, **kwargs)
    except ModelFileError:
        raise
    except Exception as error:
        message = str(error)
        if safe_mode and ("safe_mode" in message or "Lambda" in message):
            raise _code_refused(path, message.splitlines()[0]) from None
        first_line = message.strip().splitlines()[0] if message.strip() else type(error).__name__
        raise ModelFileError(f"Cannot load {path}: the file is truncated, corrupt or not a Keras model "
                             f"({type(error).__name__}: {first_line[:300]})") from None
