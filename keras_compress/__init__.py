"""keras_compress: prune, quantize and distill Keras models inside `model.fit`, then ship them.

Names are imported on first use, so `import keras_compress` (and `keras-compress --help`)
loads neither TensorFlow nor Keras until something needs them.
"""

import importlib
import sys
import types

from keras_compress._version import __version__

# Public name -> (module, attribute); attribute None: the module itself.
_PUBLIC = {
    "Artifact": ("keras_compress.export", "Artifact"),
    "BackendUnavailableError": ("keras_compress.errors", "BackendUnavailableError"),
    "Distiller": ("keras_compress.distillation", "Distiller"),
    "ExportError": ("keras_compress.errors", "ExportError"),
    "ExportVerificationError": ("keras_compress.errors", "ExportVerificationError"),
    "KerasCompressError": ("keras_compress.errors", "KerasCompressError"),
    "ModelFileError": ("keras_compress.errors", "ModelFileError"),
    "Report": ("keras_compress.benchmark", "Report"),
    "ShrinkError": ("keras_compress.errors", "ShrinkError"),
    "UnsupportedModelError": ("keras_compress.errors", "UnsupportedModelError"),
    "benchmark": ("keras_compress.benchmark", "benchmark"),
    "check_tensorrt": ("keras_compress.export", "check_tensorrt"),
    "datasets": ("keras_compress.datasets", None),
    "distillation": ("keras_compress.distillation", None),
    "export": ("keras_compress.export", "export"),
    "keras": ("keras_compress._keras", "keras"),
    "load": ("keras_compress.runtime", "load"),
    "load_model": ("keras_compress.model_files", "load_model"),
    "pruning": ("keras_compress.pruning", None),
    "quantization": ("keras_compress.quantization", None),
    "runtime": ("keras_compress.runtime", None),
    "tuning": ("keras_compress.tuning", None),
}


class _Package(types.ModuleType):
    """Keeps `keras_compress.export` and `keras_compress.benchmark` the functions: importing
    the subpackages of the same name would otherwise put the modules in their place."""

    def __setattr__(self, name, value):
        module, attribute = _PUBLIC.get(name, (None, None))
        if attribute is not None and isinstance(value, types.ModuleType) and value.__name__ == module:
            return
        super().__setattr__(name, value)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_compress' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Artifact",
    "BackendUnavailableError",
    "Distiller",
    "ExportError",
    "ExportVerificationError",
    "KerasCompressError",
    "ModelFileError",
    "Report",
    "ShrinkError",
    "UnsupportedModelError",
    "__version__",
    "benchmark",
    "check_tensorrt",
    "datasets",
    "distillation",
    "export",
    "keras",
    "load",
    "load_model",
    "pruning",
    "quantization",
    "runtime",
    "tuning",
]
