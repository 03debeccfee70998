"""TFLite's sparse tensor encoding for pruned models (`sparse_weights=True`): smaller files that
stay small uncompressed, with the same outputs, run by LiteRT with or without XNNPack.

The encoding is the TensorFlow converter's: these run on the TensorFlow backend only (a JAX model
reaches the same converter through its rebuild, which `test_jax_road.py` checks)."""

import importlib

import numpy as np
import pytest

import keras_compress as kc
from keras_compress.errors import ExportError
from keras_compress.formats import FORMATS

FLAVOURS = pytest.mark.parametrize("flavour", ["tf_keras", "keras"])


def _pruned(keras, sparsity=0.85):
    """A small convnet whose kernels have `sparsity` zeros, as magnitude pruning leaves them."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 8), name="image")
    x = keras.layers.Conv2D(32, 1, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x), name="pruned")
    for layer in model.layers:
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), sparsity)] = 0
            layer.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).random((32, 16, 16, 8), dtype="float32")


@FLAVOURS
def test_a_pruned_model_is_smaller_sparse_encoded_with_the_same_outputs(flavour, data, tmp_path):
    model = _pruned(importlib.import_module(flavour))
    dense = kc.export(model, str(tmp_path / "dense.tflite"), sample_data=data)
    sparse = kc.export(model, str(tmp_path / "sparse.tflite"), sample_data=data, sparse_weights=True)
    assert sparse.size_bytes < 0.5 * dense.size_bytes, (sparse.size_bytes, dense.size_bytes)
    assert sparse.settings["sparse_tensors"] == 3 and sparse.settings["xnnpack"] is True
    assert FORMATS["tflite"].op_counts(sparse.path)["DENSIFY"] == 3
    assert "DENSIFY" not in FORMATS["tflite"].op_counts(dense.path)
    np.testing.assert_allclose(kc.load(sparse.path).predict(data), kc.load(dense.path).predict(data),
                               atol=1e-5)


@FLAVOURS
def test_sparse_int8_runs_without_xnnpack_and_says_so(flavour, data, tmp_path):
    model = _pruned(importlib.import_module(flavour))
    dense = kc.export(model, str(tmp_path / "dense.tflite"), quantize="static", calibration_data=data,
                      compare_speed=False)
    with pytest.warns(UserWarning, match="BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
        sparse = kc.export(model, str(tmp_path / "sparse.tflite"), quantize="static", calibration_data=data,
                           sparse_weights=True, compare_speed=False)
    assert sparse.size_bytes < dense.size_bytes
    assert sparse.settings["xnnpack"] is False and sparse.settings["sparse_tensors"] > 0
    # The file's own runner falls back to TFLite's builtin kernels: export verified it, and it serves.
    assert sparse.parity["scores"]["mean_abs_diff"] < 0.05
    assert kc.load(sparse.path).predict(data[:3]).shape == (3, 10)


def test_a_slow_sparse_int8_file_names_the_cause(data, tmp_path, monkeypatch):
    import keras

    from keras_compress.export import speed

    # Per batch size, the quantized artifact is timed first: twice as slow as its float32 twin.
    times = iter([np.full(20, 2e-3), np.full(20, 1e-3)] * 2)
    monkeypatch.setattr(speed, "latencies", lambda runner, inputs: next(times))
    with pytest.warns(UserWarning, match="runs on TFLite's builtin kernels.*export without sparse_weights"):
        kc.export(_pruned(keras), str(tmp_path / "m.tflite"), quantize="static", calibration_data=data,
                  sparse_weights=True)


def test_a_model_without_zeros_warns_that_nothing_was_encoded(data, tmp_path):
    import keras

    with pytest.warns(UserWarning, match="encoded no weight"):
        artifact = kc.export(_pruned(keras, sparsity=0.0), str(tmp_path / "m.tflite"), sample_data=data,
                             sparse_weights=True)
    assert artifact.settings["sparse_tensors"] == 0


@pytest.mark.parametrize("path, value, message", [("m.onnx", True, "applies to TFLite"),
                                                  ("m.tflite", "yes", "must be True or False")])
def test_sparse_weights_is_checked_before_any_work(path, value, message, tmp_path):
    import keras

    with pytest.raises(ExportError, match=message):
        kc.export(_pruned(keras), str(tmp_path / path), sparse_weights=value)
    assert not list(tmp_path.iterdir())


def test_the_command_line_takes_sparse_weights(tmp_path, capsys):
    import keras

    from keras_compress import cli

    source = str(tmp_path / "pruned.keras")
    _pruned(keras).save(source)
    assert cli.main(["export", source, "-o", str(tmp_path / "m.tflite"), "--sparse-weights"]) == 0
    assert FORMATS["tflite"].op_counts(str(tmp_path / "m.tflite"))["DENSIFY"] == 3
    assert cli.main(["export", source, "-o", str(tmp_path / "m.onnx"), "--sparse-weights"]) == 2
    assert "sparse_weights applies to TFLite" in capsys.readouterr().err
