"""ONNX and TFLite for Keras 3 models on the JAX backend, through a TensorFlow-backend rebuild.

tf2onnx reads TensorFlow graphs, and the graphs jax2tf makes of a JAX model are XLA
modules it cannot read. The TFLite converter takes jax2tf's graphs, but makes slow files of
them (a small convnet ran 10x slower at batch 1 than from the TensorFlow backend, its int8
file 24x slower and 10x less faithful), and makes int8 kernels of TensorFlow's FakeQuant ops,
which a JAX model's fake quantization is not. A `.keras` file does not
depend on the backend, so the model is saved to one and rebuilt on the TensorFlow
backend in a child process, which converts it as for any TensorFlow-backend model.
`export` then checks the file against the JAX model itself, as always. Layers of your own must be
importable and registered (`keras.saving.register_keras_serializable`) when their
module is imported: the child process imports the modules the model's config names, with the
parent's `sys.path`, before it loads the file.
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile

from keras_compress.errors import ExportError

__all__ = ["onnx_from_tensorflow_rebuild", "tflite_from_tensorflow_rebuild", "RebuildUnavailable"]

_TIMEOUT_S = 1800
# The child's exit status when the model file does not load on the TensorFlow backend.
_NOT_LOADED = 3


class RebuildUnavailable(ExportError):
    """The model does not load on the TensorFlow backend (a layer of its own that is not
    registered, or that calls JAX itself)."""


def save_batches(batches, path):
    """Writes calibration `batches` (lists of arrays, one per input) to the `.npz` file `path`."""
    import numpy as np

    np.savez(path, **{f"{i}_{k}": array for i, batch in enumerate(batches or [])
                      for k, array in enumerate(batch)})


def load_batches(path):
    """The calibration batches `save_batches` wrote to `path`, in their order; None for none."""
    import numpy as np

    with np.load(path) as arrays:
        keys = sorted((tuple(map(int, key.split("_"))) for key in arrays.files))
        batches = {}
        for batch, position in keys:
            batches.setdefault(batch, []).append(arrays[f"{batch}_{position}"])
    return [batches[batch] for batch in sorted(batches)] or None


def _own_modules(model, what):
    """The modules of the objects of the user's own that `model`'s config names, for the child to
    import; RebuildUnavailable for a layer class defined in `__main__`, which it cannot import."""
    import keras

    from keras_compress._keras3 import sublayers

    in_main = sorted({type(layer).__name__ for layer in sublayers(model)
                      if type(layer).__module__ == "__main__"})
    if in_main:
        raise RebuildUnavailable(
            f"The JAX-backend model {model.name!r} cannot be rebuilt on the TensorFlow backend for {what} "
            f"conversion: its layer class(es) {', '.join(in_main)} are defined in __main__ (a notebook or "
            "the running script), which another process cannot import. Move them to a module of their "
            "own, registered with keras.saving.register_keras_serializable.")
    modules = set()

    def walk(config):
        if isinstance(config, dict):
            module = config.get("module")
            if isinstance(module, str) and module.split(".")[0] not in ("keras", "builtins"):
                modules.add(module)
            for value in config.values():
                walk(value)
        elif isinstance(config, list):
            for value in config:
                walk(value)
    walk(keras.saving.serialize_keras_object(model))
    return sorted(modules)


def _convert_in_child(model, what, options, calibration=None):
    """The bytes of `model` converted to `what` ("ONNX", "TFLite") by this module's `_main` in a
    TensorFlow-backend process, given `options` (JSON) and `calibration` batches."""
    modules = _own_modules(model, what)
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "model.keras"), os.path.join(folder, "converted")
        batches, error_file = os.path.join(folder, "calibration.npz"), os.path.join(folder, "error.txt")
        model.save(source)
        save_batches(calibration, batches)
        # Conversion needs no accelerator: the child leaves it to the parent. It imports the user's
        # modules as this process does.
        environment = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="",
                           PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
        try:
            done = subprocess.run([sys.executable, "-m", __name__, what, source, target, json.dumps(options),
                                   batches, error_file, json.dumps(modules)],
                                  env=environment, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExportError(f"{what} conversion of the JAX-backend model {model.name!r} through a "
                              f"TensorFlow-backend rebuild took over {_TIMEOUT_S} s; stopped.") from None
        if done.returncode != 0:
            if os.path.exists(error_file):  # the child's own words, line breaks kept
                with open(error_file) as file:
                    detail = file.read().strip()
            else:
                detail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            if done.returncode == _NOT_LOADED:
                raise RebuildUnavailable(f"The JAX-backend model {model.name!r} does not load on the "
                                         f"TensorFlow backend for {what} conversion ({detail}).")
            raise ExportError(f"{what} conversion of the JAX-backend model {model.name!r} through a "
                              f"TensorFlow-backend rebuild failed: {detail}")
        with open(target, "rb") as file:
            return file.read()


def onnx_from_tensorflow_rebuild(model, opset):
    """The float ONNX proto of a Keras 3 (JAX backend) model, converted on the TensorFlow backend."""
    import onnx

    return onnx.load_from_string(_convert_in_child(model, "ONNX", {"opset": opset}))


def tflite_from_tensorflow_rebuild(model, batch_size, quantize, calibration, io, sparse_weights):
    """The TFLite flatbuffer of a Keras 3 (JAX backend) model, converted on the TensorFlow
    backend; the arguments as `convert_to_tflite` takes them."""
    options = {"batch_size": batch_size, "quantize": quantize, "io": io, "sparse_weights": sparse_weights}
    return _convert_in_child(model, "TFLite", options, calibration)


def _main(what, source, target, options, batches, error_file, modules):
    from keras_compress.model_files import load_model

    def fail(error, status):
        with open(error_file, "w") as file:
            file.write(f"{type(error).__name__}: {str(error).strip()}")
        sys.exit(status)

    for module in json.loads(modules):  # the user's registered classes, registered here too
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - the parent says what it means
            fail(ImportError(f"module {module!r}, which the model's config names, does not import on the "
                             f"TensorFlow backend: {type(error).__name__}: {error}"), _NOT_LOADED)
    try:
        # The parent process wrote this file from the model in its memory: no screening needed.
        model = load_model(source, safe_mode=False)
    except Exception as error:  # noqa: BLE001 - the parent says what it means
        fail(error, _NOT_LOADED)
    options = json.loads(options)
    try:
        if what == "ONNX":
            from keras_compress.export.onnx import convert_to_onnx

            content = convert_to_onnx(model, options["opset"]).SerializeToString()
        else:
            from keras_compress.export.tflite import convert_to_tflite

            content = convert_to_tflite(model, options["batch_size"], options["quantize"],
                                        load_batches(batches), options["io"], options["sparse_weights"])
    except Exception as error:  # noqa: BLE001 - the parent reads the converter's words
        fail(error, 1)
    with open(target, "wb") as file:
        file.write(content)


if __name__ == "__main__":
    _main(*sys.argv[1:])
