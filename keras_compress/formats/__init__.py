"""Artifact formats: one module each, one `Format` declaration in it, read by export, load,
inspect, benchmark and the command line. Adding a format is adding a module here.

Importing this package is light: no TensorFlow, no runtime.
"""

import importlib
import os
import pkgutil

from keras_compress.formats.format import Format

__all__ = ["Format", "FORMATS", "by_name", "for_path", "identify", "CALIBRATION_METHODS", "IO_TYPES",
           "QUANTIZE_MODES", "TENSORRT_PRECISIONS"]

# Export options shared by several formats (and offered by the command line).
QUANTIZE_MODES = ("dynamic", "static", "float16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Input and output types of full-integer TFLite models (uint8: many camera and microcontroller pipelines).
IO_TYPES = ("float", "int8", "uint8")
TENSORRT_PRECISIONS = ("fp32", "fp16")


def _declarations():
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name != "format":
            declaration = importlib.import_module(f"{__name__}.{module.name}").FORMAT
            found[declaration.name] = declaration
    return dict(sorted(found.items()))


FORMATS = _declarations()


def by_name(name):
    """The `Format` called `name`; ValueError naming the choices otherwise."""
    if name not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {name!r}")
    return FORMATS[name]


def identify(path, besides=None):
    """The `Format` other than `besides` whose content `path` holds, told by its bytes (not its
    name), or None."""
    return next((fmt for fmt in FORMATS.values() if fmt is not besides and fmt.identified_in(path)), None)


def for_path(path):
    """The `Format` of `path` from its suffix (a path without one is a SavedModel folder), or None."""
    suffix = os.path.splitext(os.fspath(path).rstrip(os.sep))[1].lower()
    if not suffix:
        return FORMATS["saved_model"]
    return next((fmt for fmt in FORMATS.values() if suffix in fmt.suffixes), None)
