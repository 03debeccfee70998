"""Reads and writes the keras_compress metadata entry of a TFLite flatbuffer."""

import numpy as np

from keras_compress.runtime.metadata import KEY, decode, encode


def add_metadata(tflite_bytes, metadata):
    """`tflite_bytes` with a metadata entry named "keras_compress" holding `metadata` as JSON."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(encode(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def has_variable_tensors(tflite_bytes):
    """Whether the model keeps state between calls in variable tensors (recurrent kernels)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    return any(model.Subgraphs(g).Tensors(t).IsVariable()
               for g in range(model.SubgraphsLength()) for t in range(model.Subgraphs(g).TensorsLength()))


def read_metadata(tflite_bytes):
    """The keras_compress metadata of a TFLite flatbuffer, or {} when it has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == KEY:
            return decode(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    return {}
