"""Memory stays flat over long runs: models taken through export and quantization-aware training
one after another, in one process, leave nothing of themselves behind once the caller drops them.

(TensorFlow's own `fit` keeps about a model's weights and optimizer slots per trained model in its
runtime, in plain Keras too, so this run trains nothing.)"""

import json
import subprocess
import sys

import pytest

_RUN = """
import gc, json, os, sys, tempfile
import numpy as np
import tf_keras as keras
import keras_compress as kc


def resident_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def model(seed):  # 6.4M parameters, 26 MB of weights: what a model left alive would cost
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(64, 3, activation="relu")(keras.layers.Conv2D(32, 3, activation="relu")(inputs))
    x = keras.layers.Dense(128, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=f"model_{seed}")


x = np.random.default_rng(0).random((32, 32, 32, 3), dtype="float32")
folder = tempfile.mkdtemp()
resident = []
for seed in range(int(sys.argv[1])):
    float_model = model(seed)
    kc.export(float_model, os.path.join(folder, "float.onnx"), sample_data=x, overwrite=True)
    qat = kc.quantization.quantize_aware(float_model)
    kc.export(qat, os.path.join(folder, "qat.tflite"), sample_data=x, overwrite=True)
    del float_model, qat
    gc.collect()
    resident.append(resident_mb())
print("RESIDENT " + json.dumps(resident))
"""


@pytest.mark.slow
def test_five_models_through_export_and_qat_leave_resident_memory_flat():
    done = subprocess.run([sys.executable, "-c", _RUN, "5"], capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESIDENT ")]
    assert lines, done.stderr[-3000:]
    resident = json.loads(lines[0][len("RESIDENT "):])
    # The first two models warm TensorFlow's and the converters' caches up; the three after them
    # add less than 100 MB: a model and its QAT copy kept alive each time would add 80 MB a model.
    assert resident[-1] - resident[1] < 100, resident
