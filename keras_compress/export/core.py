"""`export`: one entry point for every format, atomic and verified."""

import importlib.metadata
import os
import shutil
import tempfile
import warnings

from keras_compress._keras import check_graph_model
from keras_compress.errors import ExportError, ExportVerificationError
from keras_compress.export.artifact import Artifact, path_size
from keras_compress.export.onnx import export_onnx
from keras_compress.export.saved_model import export_keras, export_saved_model
from keras_compress.export.signature import sample_inputs
from keras_compress.export.tflite import export_tflite
from keras_compress.export.verify import check_parity, parity
from keras_compress.pruning.prune import pruning_wrappers
from keras_compress.runtime.keras_runner import KerasRunner
from keras_compress.runtime.load import load
from keras_compress.runtime.metadata import artifact_metadata
from keras_compress.runtime.tensors import as_list, normalize_inputs

__all__ = ["export", "FORMATS"]

# format: (suffix, exporter, libraries whose versions are recorded)
FORMATS = {
    "onnx": (".onnx", export_onnx, ("tensorflow", "tf2onnx", "onnx", "onnxruntime")),
    "tflite": (".tflite", export_tflite, ("tensorflow", "ai-edge-litert")),
    "saved_model": ("", export_saved_model, ("tensorflow",)),
    "keras": (".keras", export_keras, ("tensorflow", "tf-keras")),
}
_BY_SUFFIX = {suffix: name for name, (suffix, _, _) in FORMATS.items() if suffix}


def _format_of(path, fmt):
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".engine", ".plan"):
        raise ExportError(f"{path}: TensorRT engines are not available in this version of keras_compress.")
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix:
        raise ExportError(f"{path}: unknown suffix {suffix!r}. Use .onnx, .tflite, .keras, a folder "
                          "name without suffix for a SavedModel, or pass format=.")
    return "saved_model"


def _versions(libraries):
    versions = {}
    for library in libraries:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return versions


def _move_into_place(partial, path):
    if os.path.isdir(path):  # a SavedModel folder being replaced
        old = partial + ".old"
        os.rename(path, old)
        os.rename(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, path)


def export(model, path, *, format=None, sample_data=None, verify=True, overwrite=False, opset=None):
    """Exports a tf_keras model and checks the result against it.

    The format comes from the suffix: `.onnx` (ONNX Runtime), `.tflite` (LiteRT),
    `.keras`, or no suffix for a SavedModel folder; `format=` overrides it. The
    artifact is written under a temporary name beside `path`, run in its own
    runtime against the model on `sample_data` (or random inputs of the right
    shape), and only then moved to `path`. On any failure nothing is left at
    `path`.

    Tolerance: float32 artifacts must match the model's outputs within 1e-4 of
    max(1, largest output magnitude); runtimes differ only by summation order.

    Args:
        model: a Sequential or functional tf_keras model (strip pruning wrappers first).
        path: where to write the artifact.
        format: "onnx", "tflite", "saved_model" or "keras"; None picks it from `path`.
        sample_data: inputs for verification (an array, a list, or a dict by input name).
        verify: True raises `ExportVerificationError` on mismatch, "warn" warns, False skips.
        overwrite: replace an existing artifact at `path`.
        opset: ONNX opset (default 17).

    Returns:
        An `Artifact`.

    Example:
        >>> import numpy as np, tempfile, os, keras_compress as kc
        >>> keras = kc.keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")], name="tiny")
        >>> artifact = kc.export(model, os.path.join(tempfile.mkdtemp(), "tiny.onnx"))
        >>> artifact.format, artifact.parity["scores"]["max_abs_diff"] < 1e-5
        ('onnx', True)
    """
    check_graph_model(model, action="export")
    path = os.fspath(path)
    path = path.rstrip(os.sep) or path
    fmt = _format_of(path, format)
    if verify not in (True, False, "warn"):
        raise ValueError(f'verify must be True, False or "warn", got {verify!r}')
    if opset is not None and (fmt != "onnx" or not isinstance(opset, int) or not 9 <= opset <= 21):
        raise ExportError(f"opset applies to ONNX exports and must be an int in [9, 21], got {opset!r}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists: pass overwrite=True (--overwrite) to replace it.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The folder {folder} does not exist: create it first.")
    if pruning_wrappers(model):
        raise ExportError("The model still has pruning wrappers: export keras_compress.pruning.strip(model).")
    source = KerasRunner(model)
    samples = sample_data if sample_data is not None else sample_inputs(model)
    samples = normalize_inputs(samples, source.inputs, source._input_dtypes)

    suffix, exporter, libraries = FORMATS[fmt]
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
    target = os.path.join(partial, "artifact" + suffix)
    try:
        options = {"opset": opset} if fmt == "onnx" else {}
        settings = exporter(model, target, artifact_metadata(model, fmt, {}), **options)
        result = None
        if verify:
            names = [info.name for info in source.outputs]
            result = parity(as_list(source.predict(samples)), as_list(load(target).predict(samples)), names)
            try:
                check_parity(result, "float32", f"{fmt} export of {model.name!r}")
            except ExportVerificationError as error:
                if verify is True:
                    raise
                warnings.warn(str(error), stacklevel=2)
        _move_into_place(target, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Artifact(path=path, format=fmt, size_bytes=path_size(path), precision="float32", source=model.name,
                    parity=result, versions=_versions(libraries), settings=settings)
