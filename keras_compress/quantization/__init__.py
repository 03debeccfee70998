"""Quantization-aware training; post-training quantization happens in `keras_compress.export`.

Names load on first use.
"""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "is_quantize_aware": "qat:is_quantize_aware",
    "quantize_aware": "qat:quantize_aware",
    "quantized_weights": "qat:quantized_weights",
})

__all__ = [
    "is_quantize_aware",
    "quantize_aware",
    "quantized_weights",
]
