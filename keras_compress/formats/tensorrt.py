"""Serialized TensorRT engines, built from the ONNX export; NVIDIA GPU only."""

import os

from keras_compress.formats.format import Format


def _holds(path):
    return os.path.isfile(path) and os.path.getsize(path) > 0  # only TensorRT itself can tell more


FORMAT = Format(
    name="tensorrt", title="TensorRT", suffixes=(".engine", ".plan"),
    exporter="keras_compress.export.tensorrt:export_tensorrt",
    runner="keras_compress.runtime.tensorrt_runner:TensorRTRunner",
    libraries=("tensorflow", "tf2onnx", "onnx", "tensorrt"),
    export_options=("opset", "quantize", "calibration_data", "precision", "batch_sizes"), holds=_holds,
    identifies=False,
    check_export="keras_compress.export.tensorrt:check_export", timed_against_float=False)
