"""The TensorFlow-backend process of a JAX-backend export: calibration batches come back in their
order, inputs and types; the user's registered layers load there; layers it cannot import are named."""

import numpy as np
import pytest

import keras_compress as kc
from keras_compress.export.tensorflow_rebuild import RebuildUnavailable, load_batches, save_batches


def test_calibration_batches_round_trip_in_order(tmp_path):
    rng = np.random.default_rng(0)
    batches = [[rng.random((2, 3), dtype="float32") for _ in range(10)] + [np.arange(2, dtype="int64") + b]
               for b in range(12)]  # more than ten batches and inputs: keys that sort wrongly as text
    save_batches(batches, tmp_path / "b.npz")
    loaded = load_batches(tmp_path / "b.npz")
    assert len(loaded) == 12 and all(len(batch) == 11 for batch in loaded)
    for saved, back in zip(batches, loaded):
        for array, loaded_array in zip(saved, back):
            assert loaded_array.dtype == array.dtype
            np.testing.assert_array_equal(loaded_array, array)


def test_no_calibration_comes_back_as_none(tmp_path):
    save_batches(None, tmp_path / "none.npz")
    assert load_batches(tmp_path / "none.npz") is None


LAYERS_MODULE = '''
import keras


@keras.saving.register_keras_serializable("user_layers_for_rebuild")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return dict(super().get_config(), factor=self.factor)
'''


def _scaled_model(keras3, scale_class):
    inputs = keras3.Input((4,))
    return keras3.Model(inputs, keras3.layers.Dense(3, name="logits")(scale_class()(inputs)))


def test_a_registered_layer_of_an_importable_module_reaches_onnx(keras3, tmp_path, monkeypatch):
    # On JAX the file is converted by a TensorFlow-backend process, which imports the module too.
    import importlib

    (tmp_path / "user_layers_for_rebuild.py").write_text(LAYERS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("user_layers_for_rebuild")
    model = _scaled_model(keras3, module.Scale)
    artifact = kc.export(model, str(tmp_path / "scaled.onnx"), compare_speed=False)
    x = np.random.default_rng(0).random((5, 4), dtype="float32")
    np.testing.assert_allclose(artifact.load().predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_a_layer_defined_in_main_is_named_before_any_process_starts(keras3, tmp_path):
    class Scale(keras3.layers.Layer):
        def call(self, x):
            return x * 2.0

    Scale.__module__ = "__main__"  # as in a notebook or the running script
    model = _scaled_model(keras3, Scale)
    if keras3.backend.backend() != "jax":  # converted in this process: nothing to import
        kc.export(model, str(tmp_path / "scaled.onnx"), compare_speed=False)
        return
    with pytest.raises(RebuildUnavailable, match=r"Scale are defined in __main__[\s\S]*module of their own"):
        kc.export(model, str(tmp_path / "scaled.onnx"), compare_speed=False)
