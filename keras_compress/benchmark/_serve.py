"""Loads one artifact, runs it on a batch and prints its peak resident memory in KiB.

Run as a script (`python _serve.py PATH INPUTS.npz THREADS`), not as part of the package,
so the process imports only the runtime an ONNX or TFLite artifact needs (each format's
`serve`, from `keras_compress.formats`). The `.npz`
holds one array per model input, keyed by input name, in input order.
"""

import resource
import sys

import numpy as np


def _run_tensorflow(path, arrays, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras_compress  # its `load` registers the classes a model file may name

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
    from keras_compress.formats import for_path  # light: no TensorFlow, no runtime

    fmt = for_path(path)
    (fmt.serve if fmt is not None and fmt.serve else _run_tensorflow)(path, arrays, int(threads))
    print(_peak_resident_kib())


if __name__ == "__main__":
    main(*sys.argv[1:4])
