"""Parameters and zeros stored in a model or artifact, read from the file itself."""

import gzip
import os

import numpy as np

__all__ = ["weight_counts", "gzipped_bytes"]

_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8,
                  7: np.int16, 10: np.float64}


def _keras_counts(model):
    values = [w.numpy() for w in model.weights if w.trainable or "moving" in w.name]
    return sum(v.size for v in values), sum(int(np.count_nonzero(v == 0)) for v in values)


def _onnx_counts(path):
    import onnx
    from onnx import numpy_helper

    params = zeros = 0
    for init in onnx.load(path).graph.initializer:
        if len(init.dims) >= 1 and init.data_type != onnx.TensorProto.INT64:  # skip shapes and indices
            value = numpy_helper.to_array(init)
            params += value.size
            zeros += int(np.count_nonzero(value == 0))
    return params, zeros


def _tflite_counts(path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    params = zeros = 0
    seen = set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer]
            dtype = _TFLITE_DTYPES.get(tensor.type)
            if buffer.data is None or not len(buffer.data) or dtype is None or tensor.buffer in seen:
                continue
            if dtype in (np.int32, np.int64) and len(tensor.shape) <= 1:
                continue  # shapes, axes and int32 biases of int8 kernels count with their kernel
            seen.add(tensor.buffer)
            value = np.frombuffer(bytes(buffer.data), dtype=dtype)
            params += value.size
            zeros += int(np.count_nonzero(value == 0))
    return params, zeros


def weight_counts(source):
    """`(parameters, zeros)`: a Keras model's weights, an ONNX file's initializers or a TFLite
    file's constant tensors. None for formats whose weights are not read here."""
    if not isinstance(source, str):
        return _keras_counts(source)
    suffix = os.path.splitext(source)[1].lower()
    if suffix == ".onnx":
        return _onnx_counts(source)
    if suffix == ".tflite":
        return _tflite_counts(source)
    return None


def gzipped_bytes(path):
    """Bytes of a file, or of every file of a folder, each gzipped at level 9."""
    files = [path] if not os.path.isdir(path) else [
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    total = 0
    for name in files:
        with open(name, "rb") as file:
            total += len(gzip.compress(file.read(), compresslevel=9))
    return total
