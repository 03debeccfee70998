"""ONNX and quantization-aware TFLite for Keras 3 models on the JAX backend, through a
TensorFlow-backend rebuild.

tf2onnx reads TensorFlow graphs, and the graphs jax2tf makes of a JAX model are XLA
modules it cannot read; and the TFLite converter makes int8 kernels of TensorFlow's
FakeQuant ops, which a JAX model's fake quantization is not. A `.keras` file does not
depend on the backend, so the model is saved to one and rebuilt on the TensorFlow
backend in a child process, which converts it as for any TensorFlow-backend model.
`export` then checks the file against the JAX model itself, as always. Layers of your own must be
importable and registered (`keras.saving.register_keras_serializable`) when their
module is imported, since the child process loads the file anew.
"""

import os
import subprocess
import sys
import tempfile

from keras_compress.errors import ExportError

__all__ = ["onnx_from_tensorflow_rebuild", "tflite_from_tensorflow_rebuild"]

_TIMEOUT_S = 1800


def _convert_in_child(model, what, arguments):
    """The bytes of `model` converted to `what` ("ONNX", "TFLite") by this module's `_main` in a
    TensorFlow-backend process, given `arguments` (strings)."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "model.keras"), os.path.join(folder, "converted")
        model.save(source)
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        try:
            done = subprocess.run([sys.executable, "-m", __name__, what, source, target, *arguments],
                                  env=environment, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExportError(f"{what} conversion of the JAX-backend model {model.name!r} through a "
                              f"TensorFlow-backend rebuild took over {_TIMEOUT_S} s; stopped.") from None
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            raise ExportError(f"{what} conversion of the JAX-backend model {model.name!r} through a "
                              f"TensorFlow-backend rebuild failed: {detail}")
        with open(target, "rb") as file:
            return file.read()


def onnx_from_tensorflow_rebuild(model, opset):
    """The float ONNX proto of a Keras 3 (JAX backend) model, converted on the TensorFlow backend."""
    import onnx

    return onnx.load_from_string(_convert_in_child(model, "ONNX", [str(opset)]))


def tflite_from_tensorflow_rebuild(model, batch_size, io):
    """The TFLite flatbuffer of a quantization-aware Keras 3 (JAX backend) model, converted on the
    TensorFlow backend (`batch_size` None for a dynamic batch; `io` as `export` takes it)."""
    return _convert_in_child(model, "TFLite", [str(batch_size or 0), io])


def _main(what, source, target, *arguments):
    from keras_compress.model_files import load_model

    # The parent process wrote this file from the model in its memory: no screening needed.
    model = load_model(source, safe_mode=False)
    if what == "ONNX":
        import onnx

        from keras_compress.export.onnx import convert_to_onnx

        onnx.save(convert_to_onnx(model, int(arguments[0])), target)
    else:
        from keras_compress.export.tflite import convert_to_tflite

        batch_size, io = arguments
        with open(target, "wb") as file:
            file.write(convert_to_tflite(model, int(batch_size) or None, None, None, io))


if __name__ == "__main__":
    _main(*sys.argv[1:])
