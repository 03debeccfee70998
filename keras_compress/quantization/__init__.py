"""Quantization-aware training; post-training quantization happens in `keras_compress.export`."""

from keras_compress.quantization.qat import is_quantize_aware
from keras_compress.quantization.qat import quantize_aware
from keras_compress.quantization.qat import quantized_weights

__all__ = [
    "is_quantize_aware",
    "quantize_aware",
    "quantized_weights",
]
