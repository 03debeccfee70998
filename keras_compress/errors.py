"""The library's exception types."""


class KerasCompressError(Exception):
    """Base class of the errors raised by keras_compress."""


class UnsupportedModelError(KerasCompressError, TypeError):
    """The model is not one keras_compress can work on (e.g. a Keras 3 model)."""


class ShrinkError(KerasCompressError, ValueError):
    """`shrink` met a layer it cannot rebuild, or its result would be wrong."""


class ExportError(KerasCompressError, ValueError):
    """An export cannot be made: a format that cannot take a layer, a bad path or setting."""


class ExportVerificationError(KerasCompressError):
    """An exported artifact's outputs differ from its source model's beyond the tolerance."""


class ModelFileError(KerasCompressError, ValueError):
    """A model file is missing, corrupt, or holds code that was not allowed to run."""


class WrongFormatError(ModelFileError):
    """A file is not in the format its name or the call asks for (a renamed file, another kind
    of file); the message says what it holds where that can be told."""


class CorruptFileError(ModelFileError):
    """A file that should be in a format cannot be read as one: truncated or corrupt."""


class ModelStateError(KerasCompressError, ValueError):
    """The model is not at the stage a step needs: still wrapped for pruning or clustering,
    already quantization-aware or clustered, quantized after training by Keras, or without the
    zeros or clusters an option asks to keep."""


class QuantizationError(KerasCompressError, ValueError):
    """Quantization-aware training cannot quantize the model as asked. `layers` names the layers
    it would leave float (refused with `strict=True`); empty when it can quantize none."""

    def __init__(self, message, layers=()):
        super().__init__(message)
        self.layers = tuple(layers)


class BackendUnavailableError(KerasCompressError, ImportError):
    """An optional runtime (TensorRT) or the hardware it needs is not available here."""
