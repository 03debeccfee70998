"""keras_compress: prune, quantize and distill Keras models inside `model.fit`, then ship them."""

from keras_compress import datasets
from keras_compress import distillation
from keras_compress import pruning
from keras_compress import quantization
from keras_compress import runtime
from keras_compress import tuning
from keras_compress._keras import keras
from keras_compress._version import __version__
from keras_compress.benchmark import Report
from keras_compress.benchmark import benchmark
from keras_compress.distillation import Distiller
from keras_compress.errors import BackendUnavailableError
from keras_compress.errors import ExportError
from keras_compress.errors import ExportVerificationError
from keras_compress.errors import KerasCompressError
from keras_compress.errors import ModelFileError
from keras_compress.errors import ShrinkError
from keras_compress.errors import UnsupportedModelError
from keras_compress.export import Artifact
from keras_compress.export import check_tensorrt
from keras_compress.export import export
from keras_compress.model_files import load_model
from keras_compress.runtime import load

__all__ = [
    "Artifact",
    "BackendUnavailableError",
    "Distiller",
    "ExportError",
    "ExportVerificationError",
    "KerasCompressError",
    "ModelFileError",
    "Report",
    "ShrinkError",
    "UnsupportedModelError",
    "__version__",
    "benchmark",
    "check_tensorrt",
    "datasets",
    "distillation",
    "export",
    "keras",
    "load",
    "load_model",
    "pruning",
    "quantization",
    "runtime",
    "tuning",
]
