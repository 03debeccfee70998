"""keras_compress: prune, quantize and distill Keras models inside `model.fit`, then ship them.

Names are imported on first use, so `import keras_compress` (and `keras-compress --help`)
loads neither TensorFlow nor Keras until something needs them.
"""

from keras_compress._lazy import lazy_exports
from keras_compress._version import __version__

__getattr__, __dir__ = lazy_exports(__name__, {
    "Artifact": "export:Artifact",
    "BackendUnavailableError": "errors:BackendUnavailableError",
    "CompressionResult": "compression:CompressionResult",
    "CorruptFileError": "errors:CorruptFileError",
    "Distiller": "distillation:Distiller",
    "ExportError": "errors:ExportError",
    "ExportVerificationError": "errors:ExportVerificationError",
    "KerasCompressError": "errors:KerasCompressError",
    "ModelFileError": "errors:ModelFileError",
    "ModelStateError": "errors:ModelStateError",
    "QuantizationError": "errors:QuantizationError",
    "Report": "benchmark:Report",
    "analysis": "analysis",
    "ShrinkError": "errors:ShrinkError",
    "Target": "compression:Target",
    "UnsupportedModelError": "errors:UnsupportedModelError",
    "WrongFormatError": "errors:WrongFormatError",
    "benchmark": "benchmark:benchmark",
    "check_tensorrt": "export:check_tensorrt",
    "clustering": "clustering",
    "compress": "compression:compress",
    "compression": "compression",
    "datasets": "datasets",
    "distillation": "distillation",
    "export": "export:export",
    "layer_kinds": "layer_kinds",
    "load": "runtime:load",
    "load_model": "model_files:load_model",
    "pruning": "pruning",
    "quantization": "quantization",
    "runtime": "runtime",
    "tuning": "tuning",
}, removed={
    "keras": "import Keras yourself (`import keras` for Keras 3, `import tf_keras as keras` for Keras 2); "
             "every keras_compress function takes either and returns the flavour it was given.",
})


__all__ = [
    "Artifact",
    "BackendUnavailableError",
    "CompressionResult",
    "CorruptFileError",
    "Distiller",
    "ExportError",
    "ExportVerificationError",
    "KerasCompressError",
    "ModelFileError",
    "ModelStateError",
    "QuantizationError",
    "Report",
    "ShrinkError",
    "Target",
    "UnsupportedModelError",
    "WrongFormatError",
    "__version__",
    "analysis",
    "benchmark",
    "check_tensorrt",
    "clustering",
    "compress",
    "compression",
    "datasets",
    "distillation",
    "export",
    "layer_kinds",
    "load",
    "load_model",
    "pruning",
    "quantization",
    "runtime",
    "tuning",
]
