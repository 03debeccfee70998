"""ONNX for Keras 3 models on the JAX backend, through a TensorFlow-backend rebuild.

tf2onnx reads TensorFlow graphs, and the graphs jax2tf makes of a JAX model are XLA
modules it cannot read. A `.keras` file does not depend on the backend, so the model
is saved to one and rebuilt on the TensorFlow backend in a child process, which
converts it with tf2onnx as for any TensorFlow-backend model. `export` then checks
the ONNX file against the JAX model itself, as always. Layers of your own must be
importable and registered (`keras.saving.register_keras_serializable`) when their
module is imported, since the child process loads the file anew.
"""

import os
import subprocess
import sys
import tempfile

from keras_compress.errors import ExportError

__all__ = ["onnx_from_tensorflow_rebuild"]

_TIMEOUT_S = 1800


def onnx_from_tensorflow_rebuild(model, opset):
    """The float ONNX proto of a Keras 3 (JAX backend) model, converted on the TensorFlow backend."""
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "model.keras"), os.path.join(folder, "model.onnx")
        model.save(source)
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        try:
            done = subprocess.run([sys.executable, "-m", __name__, source, target, str(opset)],
                                  env=environment, capture_output=True, text=True, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExportError(f"ONNX conversion of the JAX-backend model {model.name!r} through a TensorFlow-"
                              f"backend rebuild took over {_TIMEOUT_S} s and was stopped.") from None
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
            raise ExportError(f"ONNX conversion of the JAX-backend model {model.name!r} through a TensorFlow-"
                              f"backend rebuild failed: {detail}")
        return onnx.load(target)


def _main(source, target, opset):
    from keras_compress.export.onnx import convert_to_onnx
    from keras_compress.model_files import load_model

    import onnx

    # The parent process wrote this file from the model in its memory: no screening needed.
    onnx.save(convert_to_onnx(load_model(source, safe_mode=False), int(opset)), target)


if __name__ == "__main__":
    _main(*sys.argv[1:])
