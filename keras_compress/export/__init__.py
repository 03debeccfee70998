"""Export to ONNX, TFLite, SavedModel and `.keras`, verified against the source model."""

from keras_compress.export.artifact import Artifact
from keras_compress.export.core import FORMATS
from keras_compress.export.core import export
from keras_compress.export.verify import TOLERANCES

__all__ = [
    "Artifact",
    "FORMATS",
    "TOLERANCES",
    "export",
]
