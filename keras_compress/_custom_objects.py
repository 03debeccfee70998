"""The one place that registers keras_compress's serializable classes with Keras, for every
loader: importing the modules that define them registers them."""

import importlib

__all__ = ["register_custom_objects", "register_keras3_objects"]

# Modules whose classes a saved model may name: pruning wrapper and schedules, the QAT layers
# and tfmot's quantizers, the Distiller.
_MODULES = ("keras_compress.pruning.wrapper", "keras_compress.pruning.schedules", "keras_compress._tfmot",
            "keras_compress.distillation.tf_keras_distiller")
# The same for Keras 3 files: pruning wrapper, QAT layers, Distiller, a layer with replaced layers.
_KERAS3_MODULES = ("keras_compress.pruning.keras3_wrapper", "keras_compress.quantization.keras3_qat",
                   "keras_compress.distillation.keras3_distiller", "keras_compress.replaced_layers")


def register_custom_objects():
    """Registers every class a keras_compress model file may name."""
    for module in _MODULES:
        importlib.import_module(module)


def register_keras3_objects():
    """Registers with Keras 3 every class a keras_compress Keras 3 model file may name."""
    for module in _KERAS3_MODULES:
        importlib.import_module(module)
