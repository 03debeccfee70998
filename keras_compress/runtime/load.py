"""`load(path)`: a `Runner` for any artifact, chosen by its format."""

import os
from typing import Any

from keras_compress._private_copy import check_regular_tree
from keras_compress._types import PathLike
from keras_compress.errors import CorruptFileError, KerasCompressError, WrongFormatError
from keras_compress.formats import FORMATS, for_path, identify
from keras_compress.runtime.runner import Runner, check_providers, check_threads

__all__ = ["load"]


def load(path: PathLike, **options: Any) -> Runner:
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
        raise WrongFormatError(f"{path}: unknown artifact type {os.path.splitext(path)[1]!r}; "
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
        # Only now, on the way out, is the file read to tell what it is instead.
        held = identify(path, besides=fmt)
        if held is not None and held.runner != fmt.runner:
            raise WrongFormatError(f"{path} holds a model in {held.title} format, not {fmt.title}: rename it "
                                   f"to end in {held.suffixes[0]}.") from None
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CorruptFileError(f"Cannot open {path} as {fmt.name}: the file is truncated, corrupt or not in "
                               f"{fmt.title} format ({type(error).__name__}: {first_line[:300]})") from None
