"""Loads one artifact, runs it on a batch and prints its peak resident memory in KiB.

Run as a script (`python _serve.py PATH INPUTS.npz THREADS`), not as part of the package,
so the process imports only the runtime an ONNX or TFLite artifact needs. The `.npz`
holds one array per model input, keyed by input name, in input order.
"""

import os
import resource
import sys

import numpy as np


def _run_onnx(path, arrays, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    session.run(None, arrays)


def _run_tflite(path, arrays, threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=threads).get_signature_runner("serving_default")
    details = runner.get_input_details()
    feed = {}
    for name, value in arrays.items():
        if details[name]["shape_signature"][0] > 0:  # a fixed-batch (recurrent) model: one row at a time
            value = value[:details[name]["shape_signature"][0]]
        feed[name] = value.astype(details[name]["dtype"])
    runner(**feed)


def _run_tensorflow(path, arrays, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras_compress  # registers the pruning and quantization classes the file may use

    keras_compress.load(path).predict(arrays)


def _peak_resident_kib():
    """VmHWM, the high-water mark of this process image: unlike `ru_maxrss`, which Linux
    carries over from the (large) parent across fork and exec."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # other systems: the best there is


def main(path, inputs, threads):
    with np.load(inputs) as data:
        arrays = {name: data[name] for name in data.files}
    suffix = os.path.splitext(path)[1].lower()
    runner = {".onnx": _run_onnx, ".tflite": _run_tflite}.get(suffix, _run_tensorflow)
    runner(path, arrays, int(threads))
    print(_peak_resident_kib())


if __name__ == "__main__":
    main(*sys.argv[1:4])
