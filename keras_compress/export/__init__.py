"""Export to ONNX, TFLite, SavedModel, `.keras` and TensorRT, verified against the source model."""

from keras_compress.export.artifact import Artifact
from keras_compress.export.core import FORMATS, QUANTIZE_MODES, export
from keras_compress.export.tensorrt import TensorRTCheck, check_tensorrt
from keras_compress.export.verify import TOLERANCES

__all__ = [
    "Artifact",
    "FORMATS",
    "QUANTIZE_MODES",
    "TOLERANCES",
    "TensorRTCheck",
    "check_tensorrt",
    "export",
]
