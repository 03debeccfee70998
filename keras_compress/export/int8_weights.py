"""How many weights an exported model holds in int8: what quantization actually did."""

import numpy as np

__all__ = ["onnx_int8_weights", "tflite_int8_weights"]


def _counts(shapes):
    shapes = list(shapes)
    return {"tensors": len(shapes), "parameters": int(sum(np.prod(shape) for shape in shapes))}


def onnx_int8_weights(proto):
    """`{"tensors", "parameters"}` of the 8-bit integer weight initializers (2-D and up:
    zero points and scales do not count) of an ONNX model."""
    import onnx

    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    return _counts(tuple(init.dims) for init in proto.graph.initializer
                   if init.data_type in eight_bit and len(init.dims) >= 2)


def tflite_int8_weights(content):
    """The same for the constant tensors of a TFLite flatbuffer."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    int8, uint8 = 9, 3  # TensorType enum values
    shapes, seen = [], set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer]
            if tensor.type in (int8, uint8) and buffer.data is not None and len(buffer.data) \
                    and tensor.shape is not None and len(tensor.shape) >= 2 and tensor.buffer not in seen:
                seen.add(tensor.buffer)
                shapes.append(tuple(tensor.shape))
    return _counts(shapes)
