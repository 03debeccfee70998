"""The calibration batches a JAX-backend export hands to its TensorFlow-backend process come back
in their order, inputs and types."""

import numpy as np

from keras_compress.export.tensorflow_rebuild import load_batches, save_batches


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
