"""`load(path)`: a `Runner` for any artifact, chosen by its suffix."""

import os

from keras_compress.errors import ModelFileError
from keras_compress.model_files import load_model
from keras_compress.runtime.keras_runner import KerasRunner
from keras_compress.runtime.onnx_runner import OnnxRunner
from keras_compress.runtime.saved_model_runner import SavedModelRunner
from keras_compress.runtime.tensorrt_runner import TensorRTRunner
from keras_compress.runtime.tflite_runner import TFLiteRunner

__all__ = ["load"]


def load(path, **options):
    """Opens an artifact in its own runtime and returns a `Runner`.

    `.onnx` runs in ONNX Runtime (options: `providers`, `threads`, `int8_kernels`),
    `.tflite` in LiteRT (option: `threads`), `.engine`/`.plan` in TensorRT (NVIDIA GPU),
    a SavedModel folder and `.keras`/`.h5` files in TensorFlow.

    Example:
        >>> import keras_compress as kc
        >>> kc.load("missing.onnx")
        Traceback (most recent call last):
        ...
        FileNotFoundError: No artifact at missing.onnx
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No artifact at {path}")
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        opener = SavedModelRunner
    elif suffix in (".keras", ".h5", ".hdf5"):
        return KerasRunner(load_model(path, **options))
    else:
        opener = {".onnx": OnnxRunner, ".tflite": TFLiteRunner, ".engine": TensorRTRunner,
                  ".plan": TensorRTRunner}.get(suffix)
    if opener is None:
        raise ModelFileError(f"{path}: unknown artifact type {suffix!r}; expected .onnx, .tflite, "
                             ".engine, .keras, .h5 or a SavedModel folder.")
    try:
        return opener(path, **options)
    except (TypeError, ImportError):
        raise
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(f"Cannot open {path} as {opener.format}: the file is truncated or corrupt "
                             f"({type(error).__name__}: {first_line[:300]})") from None
