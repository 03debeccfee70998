"""Parameters and zeros stored in a model or artifact, read from the file itself."""

import gzip
import os

import numpy as np

from keras_compress.formats import for_path

__all__ = ["weight_counts", "gzipped_bytes"]


def _keras_counts(model):
    values = [w.numpy() for w in model.weights if w.trainable or "moving" in w.name]
    return sum(v.size for v in values), sum(int(np.count_nonzero(v == 0)) for v in values)


def weight_counts(source):
    """`(parameters, zeros)`: a Keras model's weights, or what its format reads from an artifact
    file (ONNX initializers, TFLite constant tensors). None for formats that read none."""
    if not isinstance(source, str):
        return _keras_counts(source)
    fmt = for_path(source)
    return fmt.weight_counts(source) if fmt is not None and fmt.weight_counts else None


def gzipped_bytes(path):
    """Bytes of a file, or of every file of a folder, each gzipped at level 9."""
    files = [path] if not os.path.isdir(path) else [
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    total = 0
    for name in files:
        with open(name, "rb") as file:
            total += len(gzip.compress(file.read(), compresslevel=9))
    return total
