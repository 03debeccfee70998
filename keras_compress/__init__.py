"""keras_compress: prune, quantize and distill Keras models inside `model.fit`, then ship them."""

from keras_compress import datasets
from keras_compress import distillation
from keras_compress import pruning
from keras_compress._keras import keras
from keras_compress._version import __version__
from keras_compress.distillation import Distiller
from keras_compress.errors import KerasCompressError
from keras_compress.errors import ShrinkError
from keras_compress.errors import UnsupportedModelError

__all__ = [
    "Distiller",
    "KerasCompressError",
    "ShrinkError",
    "UnsupportedModelError",
    "__version__",
    "datasets",
    "distillation",
    "keras",
    "pruning",
]
