"""Runners: one interface (`predict`, `inputs`, `outputs`) over every runtime."""

from keras_compress.runtime.keras_runner import KerasRunner
from keras_compress.runtime.load import load
from keras_compress.runtime.onnx_runner import OnnxRunner
from keras_compress.runtime.runner import Runner
from keras_compress.runtime.saved_model_runner import SavedModelRunner
from keras_compress.runtime.tensorrt_runner import TensorRTRunner
from keras_compress.runtime.tensors import TensorInfo
from keras_compress.runtime.tflite_runner import TFLiteRunner

__all__ = [
    "KerasRunner",
    "OnnxRunner",
    "Runner",
    "SavedModelRunner",
    "TFLiteRunner",
    "TensorRTRunner",
    "TensorInfo",
    "load",
]
