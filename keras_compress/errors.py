"""The library's exception types."""


class KerasCompressError(Exception):
    """Base class of the errors raised by keras_compress."""


class UnsupportedModelError(KerasCompressError, TypeError):
    """The model is not one keras_compress can work on (e.g. a Keras 3 model)."""


class ShrinkError(KerasCompressError, ValueError):
    """`shrink` met a layer it cannot rebuild, or its result would be wrong."""
