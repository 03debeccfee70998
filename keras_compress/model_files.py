"""`load_model`: open `.keras`, `.h5` and SavedModel files safely, with clear errors."""

import os
import zipfile

from keras_compress._custom_objects import register_custom_objects
from keras_compress._declared_sizes import check_declared_sizes, default_memory_budget, read_json_member
from keras_compress._keras import keras
from keras_compress._private_copy import private_copy
from keras_compress._screening import keras3_unsafe_reason, unsafe_reason
from keras_compress._types import KerasModel, PathLike
from keras_compress.errors import CorruptFileError, ModelFileError, WrongFormatError
from keras_compress.formats import FORMATS, identify

__all__ = ["load_model"]


def _kind(path, copy):
    """"saved_model", "keras" or "h5", from the folder's content or the file's bytes (not its
    suffix), read in the private copy `copy` of `path`."""
    if os.path.isdir(copy):
        if not os.path.exists(os.path.join(copy, "saved_model.pb")):
            raise WrongFormatError(f"{path} is a folder but not a SavedModel (no saved_model.pb in it).")
        return "saved_model"
    kind = next((name for name in ("keras", "h5") if FORMATS[name].holds(copy)), None)
    if kind is None:
        held = identify(copy)
        holds = f" (it holds a model in {held.title} format, which kc.load runs)" if held else ""
        raise WrongFormatError(f"{path} is not a Keras model file{holds}: expected a .keras archive, an HDF5 "
                               "(.h5) file or a SavedModel folder.")
    if kind == "keras" and not path.lower().endswith(".keras"):
        raise WrongFormatError(f"{path} is a .keras archive under another name: rename it to end in .keras.")
    return kind


def _keras_version(path):
    """The Keras version a .keras archive was saved with, or "" when it does not say."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(read_json_member(archive, "metadata.json").get("keras_version", ""))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return ""


def _first_line(error):
    message = str(error).strip()
    return message.splitlines()[0][:300] if message else type(error).__name__


# What TensorFlow and Keras raise when a file declares more than memory holds, or more than
# Keras' own bomb guards allow: not corruption, and said as it is.
_TOO_LARGE = ("ResourceExhaustedError", "MemoryError")


def _corrupt(path, error):
    if type(error).__name__ in _TOO_LARGE:
        return ModelFileError(f"Cannot load {path}: it declares more memory than this process can allocate "
                              f"({type(error).__name__}: {_first_line(error)})")
    if "Not allowed:" in str(error) and "declares" in str(error):
        return ModelFileError(f"{path} was refused: {_first_line(error)}")
    return CorruptFileError(f"Cannot load {path}: the file is truncated, corrupt or not a Keras model "
                          f"({type(error).__name__}: {_first_line(error)})")


def _refuse_unsafe(path, screen):
    try:
        reason = screen()
    except ModelFileError:
        raise
    except Exception as error:
        raise _corrupt(path, error) from None
    if reason:
        raise ModelFileError(f"{path} was refused under safe mode: {reason}. Files from elsewhere can run "
                             "code this way; pass safe_mode=False only if you trust where it comes from.")


def _load_keras3(path, copy, safe_mode, compile, custom_objects):
    """A Keras 3 `.keras` file, screened as tf_keras files are, then loaded by Keras 3 in its own
    safe mode (the objects keras_compress defines are registered with Keras 3 on import)."""
    from keras_compress import _keras3
    from keras_compress._custom_objects import register_keras3_objects

    register_keras3_objects()
    if safe_mode:
        _refuse_unsafe(path, lambda: keras3_unsafe_reason(copy, custom_objects))
    try:
        model = _keras3.keras.saving.load_model(copy, compile=compile, custom_objects=custom_objects,
                                                safe_mode=safe_mode)
    except Exception as error:
        raise _corrupt(path, error) from None
    if not isinstance(model, _keras3.keras.Model):
        raise WrongFormatError(f"{path} does not hold a Keras model (loading it gave "
                               f"{type(model).__name__}).")
    return model


def _load_copy(path, copy, kind, safe_mode, compile, custom_objects, budget):
    """Screens and loads the private copy `copy` of `path` (messages name `path`)."""
    _refuse_unsafe(path, lambda: check_declared_sizes(copy, kind, budget, name=path))
    if kind == "keras" and _keras_version(copy).startswith("3"):
        return _load_keras3(path, copy, safe_mode, compile, custom_objects)
    register_custom_objects()
    if safe_mode:
        _refuse_unsafe(path, lambda: unsafe_reason(copy, kind, custom_objects))
    try:
        kwargs = {"safe_mode": safe_mode} if kind == "keras" else {}
        model = keras.models.load_model(copy, compile=compile, custom_objects=custom_objects, **kwargs)
    except Exception as error:
        raise _corrupt(path, error) from None
    if not isinstance(model, keras.Model):
        raise WrongFormatError(f"{path} does not hold a Keras model (loading it gave "
                               f"{type(model).__name__}).")
    return model


def load_model(path: PathLike, *, safe_mode: bool = True, compile: bool = False,
               custom_objects: dict | None = None, memory_budget: int | None = None) -> KerasModel:
    """Loads a Keras model from a `.keras` file, a legacy `.h5` file or a SavedModel folder.

    `.keras` files saved by Keras 3 give Keras 3 models; the others give tf_keras models.

    Safe mode (the default) runs nothing from the file: before anything is deserialized,
    every class and function its configuration names must be a Keras, keras_compress or
    tfmot object that holds data (layers, initializers, quantizers, ...), a Keras
    activation, loss or metric, or a TensorFlow math op; Lambda layers and op layers that
    call anything but math are refused. The format is read from the file's bytes, not
    its suffix. Pruned and QAT models load without tfmot scopes. Errors name the file
    and say what to do.

    What is screened is what is loaded: a private copy of the file (a folder only this
    user can read), so that a file swapped during loading changes nothing. Before
    anything is allocated, the sizes the file declares (archive members, configs,
    weights) are checked against `memory_budget` and against the bytes it stores.

    Args:
        path: the file or folder.
        safe_mode: refuse files that name code; pass False only for files you trust.
        compile: also restore the training configuration.
        custom_objects: classes and functions the file's config refers to (trusted).
        memory_budget: bytes the file may declare; default `$KERAS_COMPRESS_MEMORY_BUDGET`,
            else half of this machine's memory.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"No model file at {path}")
    if memory_budget is None:
        memory_budget = default_memory_budget()
    elif isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"memory_budget must be a number of bytes >= 1, got {memory_budget!r}")
    if os.path.isdir(path):
        _kind(path, path)  # a folder that is no SavedModel is refused before it is copied
    with private_copy(path) as copy:
        kind = _kind(path, copy)
        return _load_copy(path, copy, kind, safe_mode, compile, custom_objects, memory_budget)
