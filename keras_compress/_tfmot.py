"""The one module for tensorflow-model-optimization internals the package needs."""

__all__ = ["data_classes"]


def data_classes():
    """tfmot's base classes whose configs hold settings only (no code): quantize configs,
    quantizers, activation wrappers and pruning schedules."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
        NoOpActivation, QuantizeAwareActivation)

    return (tfmot.quantization.keras.QuantizeConfig, tfmot.quantization.keras.quantizers.Quantizer,
            tfmot.sparsity.keras.PruningSchedule, QuantizeAwareActivation, NoOpActivation)
