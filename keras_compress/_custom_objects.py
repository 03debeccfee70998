"""The one place that registers keras_compress's serializable classes with Keras, for every
loader: importing the modules that define them registers them."""

import importlib

__all__ = ["register_custom_objects"]

# Modules whose classes a saved model may name: pruning wrapper and schedules, the QAT layers
# and tfmot's quantizers, the Distiller.
_MODULES = ("keras_compress.pruning.wrapper", "keras_compress.pruning.schedules", "keras_compress._tfmot",
            "keras_compress.distillation.distiller")


def register_custom_objects():
    """Registers every class a keras_compress model file may name."""
    for module in _MODULES:
        importlib.import_module(module)
