"""What `export` refuses before any work: the request format hooks read, and the checks that
several formats share."""

import dataclasses

from keras_compress._flavour import keras_for
from keras_compress.errors import ExportError

__all__ = ["ExportRequest", "refuse_keras_int8_kernels"]


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """The options of one `export` call that a format's `check_export` hook reads."""

    quantize: str | None
    precision: str | None
    batch_sizes: tuple
    quantize_aware: bool


def refuse_keras_int8_kernels(model, title):
    """Refuses a Keras 3 model that Keras' `model.quantize()` gave int8 kernels, which the
    converter to `title` cannot take."""
    quantized = keras_for(model).quantized_layers(model)
    if quantized:
        raise ExportError(
            f"Model {model.name!r} was quantized with Keras' model.quantize() (layers "
            f"{', '.join(quantized)}): its int8 kernels cannot be converted to {title} (the converter "
            "takes no integer matmul inputs). Export the float model with quantize=\"dynamic\" or "
            "\"static\" instead, or export this one to ONNX or a SavedModel.")
