"""Keras 3 models on the JAX backend export to TFLite through a TensorFlow-backend rebuild: the
graph a TensorFlow-backend user gets, not jax2tf's (which ran 10x slower at batch 1 on a small
convnet, its int8 file 24x slower). These run in `make test`'s JAX pass."""

import numpy as np
import pytest

import keras_compress as kc
from keras_compress.formats import FORMATS


@pytest.fixture(autouse=True)
def _jax_backend(keras3):
    if keras3.backend.backend() != "jax":
        pytest.skip("needs the JAX backend: `make test` runs it in its KERAS_BACKEND=jax pass")


def _convnet(keras, first_layer):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((28, 28, 1)), first_layer,
                             keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


def test_a_jax_convnet_exports_to_the_tensorflow_graph(keras3, tmp_path):
    data = np.random.default_rng(0).random((32, 28, 28, 1), dtype="float32")
    model = _convnet(keras3, keras3.layers.Rescaling(2.0))
    artifact = kc.export(model, str(tmp_path / "m.tflite"), quantize="static", calibration_data=data,
                         compare_speed=False)
    counts = FORMATS["tflite"].op_counts(artifact.path)
    ops = {"CONV_2D": 1, "FULLY_CONNECTED": 1, "QUANTIZE": 1, "DEQUANTIZE": 1}
    assert {op: counts[op] for op in ops} == ops, counts
    # jax2tf lowers this convolution to a depthwise one with broadcasts and gathers around it.
    assert not {"DEPTHWISE_CONV_2D", "BROADCAST_TO", "GATHER"} & set(counts), counts


def test_a_model_that_does_not_load_on_tensorflow_goes_through_jax2tf_with_a_warning(keras3, tmp_path):
    class Doubled(keras3.layers.Layer):  # not registered: the TensorFlow-backend process cannot build it
        def call(self, x):
            return x * 2.0

    model = _convnet(keras3, Doubled())
    with pytest.warns(UserWarning, match="does not load on the TensorFlow backend.*through jax2tf instead"):
        artifact = kc.export(model, str(tmp_path / "m.tflite"))
    assert next(iter(artifact.parity.values()))["max_abs_diff"] < 1e-4
