import numpy as np
import pytest

import keras_compress as kc
from conftest import fit_pruned


@pytest.fixture(scope="module")
def pruned_models(trained_cnn, digits):
    """A filter-pruned model, wrapped, stripped and shrunk (filter wrappers mask most kinds)."""
    schedule = kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=1)
    pruned = kc.pruning.prune(trained_cnn, schedule, granularity="filter")
    fit_pruned(pruned, digits, epochs=1)
    plain = kc.pruning.strip(pruned)
    return {"pruned": pruned, "stripped": plain, "shrunk": kc.pruning.shrink(plain)}


@pytest.mark.parametrize("kind", ["pruned", "stripped", "shrunk"])
@pytest.mark.parametrize("suffix", [".keras", ""])
def test_models_save_and_load_as_keras_and_saved_model(pruned_models, digits, tmp_path, kind, suffix,
                                                       keras_flavour):
    """`.keras` files load with the plain Keras loader of their flavour (the wrapper is registered).
    Keras 3 writes SavedModels with `model.export`, read back with TensorFlow."""
    model = pruned_models[kind]
    x = digits[1][0][:16]
    if suffix == "" and keras_flavour.__name__ == "keras":
        import tensorflow as tf

        model.export(str(tmp_path / kind), verbose=False)
        loaded = tf.saved_model.load(str(tmp_path / kind))
        np.testing.assert_allclose(loaded.serve(x).numpy(), model.predict_on_batch(x), atol=1e-5)
        return
    path = str(tmp_path / f"{kind}{suffix}")
    model.save(path)
    loaded = keras_flavour.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
    if suffix == ".keras":
        assert kc.pruning.sparsity(loaded).to_dict() == kc.pruning.sparsity(model).to_dict()


def test_a_loaded_pruned_model_keeps_its_pruning_settings(pruned_models, tmp_path, keras_flavour):
    path = str(tmp_path / "pruned.keras")
    pruned_models["pruned"].save(path)
    loaded = keras_flavour.models.load_model(path, compile=False)
    wrapper = loaded.get_layer("prune_low_magnitude_conv_b")
    assert wrapper.channelwise
    schedule = wrapper.pruning_schedule
    if keras_flavour.__name__ == "keras":  # Keras 3: the wrapper holds the settings
        schedule, settings = schedule, (wrapper.granularity, wrapper.scope)
    else:  # tfmot's wrapper holds one schedule object: ours keeps the settings beside the timing
        schedule, settings = schedule.schedule, (schedule.granularity, schedule.scope)
    assert settings == ("filter", "layer")
    assert isinstance(schedule, kc.pruning.PolynomialDecay)
    assert schedule.end_epoch == 1
