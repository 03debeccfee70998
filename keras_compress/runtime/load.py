"""`load(path)`: a `Runner` for any artifact, chosen by its format."""

import os

from keras_compress._private_copy import check_regular_tree
from keras_compress.errors import KerasCompressError, ModelFileError
from keras_compress.formats import FORMATS, for_path
from keras_compress.runtime.runner import check_providers, check_threads

__all__ = ["load"]


def load(path, **options):
    """Opens an artifact in its own runtime and returns a `Runner`.

    `.onnx` runs in ONNX Runtime (options: `providers`, `threads`, `int8_kernels`),
    `.tflite` in LiteRT (option: `threads`), `.engine`/`.plan` in TensorRT (NVIDIA GPU),
    a SavedModel folder and `.keras`/`.h5` files in TensorFlow (options: `safe_mode`,
    `custom_objects`). The format is read from `keras_compress.formats`.

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
    check_regular_tree(path)  # no pipe to block on, no symlink out of a SavedModel folder
    fmt = FORMATS["saved_model"] if os.path.isdir(path) else for_path(path)
    if fmt is None or fmt.is_folder != os.path.isdir(path):
        suffixes = ", ".join(suffix for f in FORMATS.values() for suffix in f.suffixes)
        raise ModelFileError(f"{path}: unknown artifact type {os.path.splitext(path)[1]!r}; "
                             f"expected {suffixes} "
                             "or a SavedModel folder.")
    # Bad options are the caller's, said as they are; errors once the file is open are the file's.
    check_threads(options.get("threads"))
    check_providers(options.get("providers"))
    try:
        return fmt.open(path, **options)
    except (TypeError, ImportError, KerasCompressError):
        raise
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(f"Cannot open {path} as {fmt.name}: the file is truncated or corrupt "
                             f"({type(error).__name__}: {first_line[:300]})") from None
