import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

import keras_compress as kc
from conftest import compile_classifier, fit_pruned
from keras_compress._flavour import KERAS3, flavour_of
from models import small_cnn, wrapped_dense

PolynomialDecay = kc.pruning.PolynomialDecay


def _schedule(target):
    return PolynomialDecay(0.0, target, begin_epoch=0, end_epoch=2)


def _kernels(model):
    return {layer.name: layer.get_weights()[0] for layer in model.layers if layer.get_weights()}


def test_prune_leaves_the_original_model_untouched(trained_cnn, digits):
    before = [w.copy() for w in trained_cnn.get_weights()]
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.5))
    fit_pruned(pruned, digits, epochs=1)
    for old, new in zip(before, trained_cnn.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_weight_layer_scope_gives_every_layer_the_target(trained_cnn, digits):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.7))
    fit_pruned(pruned, digits)
    report = kc.pruning.sparsity(pruned)
    assert [row["layer"] for row in report.layers] == ["conv_a", "conv_b", "dense_a", "logits"]
    for row in report.layers:
        assert row["sparsity"] == pytest.approx(0.7, abs=0.01)


def test_weight_global_scope_meets_the_target_in_total_with_uneven_layers(trained_cnn, digits):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.7), scope="global")
    fit_pruned(pruned, digits)
    report = kc.pruning.sparsity(pruned)
    assert report.total_sparsity == pytest.approx(0.7, abs=0.005)
    per_layer = [row["sparsity"] for row in report.layers]
    assert max(per_layer) - min(per_layer) > 0.1


def test_global_pruning_that_empties_a_layer_says_so(keras_flavour, digits):
    model = compile_classifier(small_cnn(keras=keras_flavour))
    small = model.get_layer("logits")
    small.set_weights([w * 1e-3 for w in small.get_weights()])  # the smallest weights of the model
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=0), scope="global")
    with pytest.warns(UserWarning, match="Global pruning removes every weight of layer.s. logits .*"
                                         'scope="layer"'):
        fit_pruned(pruned, digits, epochs=1)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_filter_pruning_zeroes_whole_filters_and_their_biases(trained_cnn, digits, scope):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.5), granularity="filter", scope=scope)
    fit_pruned(pruned, digits)
    plain = kc.pruning.strip(pruned)
    zero_filters = {}
    for name in ("conv_a", "conv_b", "dense_a"):
        kernel, bias = plain.get_layer(name).get_weights()
        dead = np.all(kernel.reshape(-1, kernel.shape[-1]) == 0, axis=0)
        partly_zero = np.any(kernel.reshape(-1, kernel.shape[-1]) == 0, axis=0) & ~dead
        assert not partly_zero.any()  # filters are pruned whole
        assert np.all(bias[dead] == 0)
        zero_filters[name] = dead.mean()
    gamma, beta = plain.get_layer("bn_a").get_weights()[:2]
    conv_a_dead = np.all(plain.get_layer("conv_a").get_weights()[0].reshape(-1, 8) == 0, axis=0)
    assert np.all(gamma[conv_a_dead] == 0) and np.all(beta[conv_a_dead] == 0)
    assert np.count_nonzero(plain.get_layer("logits").get_weights()[0] == 0) == 0  # an output stays
    if scope == "layer":
        assert all(v == pytest.approx(0.5) for v in zero_filters.values())
    else:
        assert kc.pruning.sparsity(plain).layers[2]["sparsity"] != zero_filters["conv_a"]


def test_m_by_n_pruning_holds_the_pattern(trained_cnn, digits):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.5), granularity="2:4", exclude=["conv_a"])
    fit_pruned(pruned, digits)
    plain = kc.pruning.strip(pruned)
    for name in ("conv_b", "dense_a", "logits"):
        kernel = tf.constant(plain.get_layer(name).get_weights()[0])
        assert bool(pruning_utils.is_pruned_m_by_n(kernel, (2, 4)))
    assert np.count_nonzero(plain.get_layer("conv_a").get_weights()[0] == 0) == 0


@pytest.mark.parametrize("exclude", [["dense_a"], lambda layer: layer.name == "dense_a"])
def test_excluded_layers_stay_dense(trained_cnn, digits, exclude):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.6), exclude=exclude)
    fit_pruned(pruned, digits, epochs=2)
    names = [row["layer"] for row in kc.pruning.sparsity(pruned).layers if row["sparsity"] > 0]
    assert names == ["conv_a", "conv_b", "logits"]


def _scale_layer(keras):
    class Scale(keras.layers.Layer):
        """A custom layer with weights: pruning does not know it."""

        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.scale

    return Scale


def test_layers_pruning_cannot_wrap_stay_dense_and_are_named_in_one_warning(digits, keras_flavour):
    keras = keras_flavour
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(2.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = _scale_layer(keras)(name="scale")(x)
    x = keras.layers.Flatten()(x * 0.5)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning) as record:
        pruned = kc.pruning.prune(model, _schedule(0.5))
    messages = [str(w.message) for w in record if "stay dense" in str(w.message)]
    assert len(messages) == 1
    assert "scale (Scale)" in messages[0]
    # Layers without weights (tfmot cannot wrap these either) have nothing to keep dense.
    assert "rescale" not in messages[0] and "TFOpLambda" not in messages[0]
    fit_pruned(pruned, digits, epochs=2)
    rows = {row["layer"]: row["sparsity"] for row in kc.pruning.sparsity(pruned).layers}
    assert rows["conv"] == pytest.approx(0.5, abs=0.01) and rows["logits"] == pytest.approx(0.5, abs=0.01)
    assert rows["scale"] == 0.0 if "scale" in rows else True


def test_the_warning_says_how_much_of_the_model_the_layers_left_dense_hold(keras_flavour):
    model = wrapped_dense(keras=keras_flavour)
    if keras_flavour is tf_keras:
        with pytest.warns(UserWarning, match=r"block \(Block\)\. They hold 94\.1% of the model's weights"):
            kc.pruning.prune(model, _schedule(0.8), scope="global")
        return
    with warnings.catch_warnings():  # Keras 3 masks the Dense inside the custom layer: none stays dense
        warnings.simplefilter("error", UserWarning)
        kc.pruning.prune(model, _schedule(0.8), scope="global")


def test_tf_keras_weight_pruning_names_the_depthwise_kernels_tfmot_leaves_dense(keras_flavour):
    keras, L = keras_flavour, keras_flavour.layers
    inputs = keras.Input((8, 8, 3))
    x = L.SeparableConv2D(4, 3, name="separable")(L.DepthwiseConv2D(3, name="depthwise")(inputs))
    model = keras.Model(inputs, L.Dense(2, name="logits")(L.Flatten()(x)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kc.pruning.prune(model, _schedule(0.5))
        kc.pruning.prune(model, _schedule(0.5), granularity="filter")  # removes depthwise channels
    messages = [str(w.message) for w in caught if "depthwise kernels" in str(w.message)]
    if keras is tf_keras:  # 27 + 27 of the 27 + 27 + 12 + 128 kernel weights
        assert messages == ["tfmot does not prune depthwise kernels: those of depthwise, separable stay "
                            "dense (27.8% of the model's kernels), so the model's total sparsity ends below "
                            "the schedule's target. Keras 3 models (`import keras`) have their depthwise "
                            "kernels pruned too."]
    else:
        assert messages == []


def _subclassed(keras):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, inputs):
            return self.dense(inputs)

    model = Net()
    model(np.zeros((1, 3), "float32"))
    return model


@pytest.mark.parametrize("make, kwargs, error, message", [
    (lambda keras: small_cnn(keras=keras), dict(granularity="block"), ValueError,
     'granularity must be "weight", "filter"'),
    (lambda keras: small_cnn(keras=keras), dict(granularity="4:2"), ValueError, "0 < m < n"),
    (lambda keras: small_cnn(keras=keras), dict(scope="model"), ValueError,
     'scope must be "layer" or "global"'),
    (lambda keras: small_cnn(keras=keras), dict(granularity="2:4"), ValueError,
     "input channels are not a multiple of 4"),
    (lambda keras: small_cnn(keras=keras), dict(granularity="2:4", scope="global"), ValueError,
     "no global ranking"),
    (lambda keras: small_cnn(keras=keras), dict(exclude=["nope"]), ValueError,
     r"exclude names layers the model does not have: \['nope'\]"),
    (lambda keras: keras.Sequential([keras.Input((4,)), keras.layers.ReLU()]), {}, ValueError,
     "nothing to prune"),
    (lambda keras: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")]),
     dict(exclude=["d"]), ValueError, "nothing to prune"),
    (_subclassed, {}, kc.UnsupportedModelError, "subclassed model"),
    (lambda keras: keras.Sequential([keras.layers.Dense(2)]), {}, ValueError, "not built yet"),
])
def test_prune_rejects_bad_input_before_any_work(make, kwargs, error, message, keras_flavour):
    with pytest.raises(error, match=message):
        kc.pruning.prune(make(keras_flavour), _schedule(0.5), **kwargs)


def test_an_unsupported_keras3_backend_is_refused_by_name(monkeypatch):
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    monkeypatch.setattr(keras3.backend, "backend", lambda: "torch")
    with pytest.raises(kc.UnsupportedModelError, match="'torch' backend.*KERAS_BACKEND"):
        kc.pruning.prune(model, _schedule(0.5))


def test_prune_rejects_a_model_that_is_already_pruned(trained_cnn):
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.5))
    with pytest.raises(ValueError, match="already wrapped"):
        kc.pruning.prune(pruned, _schedule(0.5))


def test_pruned_accuracy_stays_close_to_dense(trained_cnn, digits):
    _, (x_test, y_test) = digits
    dense_accuracy = trained_cnn.evaluate(x_test, y_test, verbose=0)[1]
    pruned = kc.pruning.prune(trained_cnn, _schedule(0.5), scope="global")
    fit_pruned(pruned, digits, epochs=3)
    plain = compile_classifier(kc.pruning.strip(pruned))
    assert plain.evaluate(x_test, y_test, verbose=0)[1] > dense_accuracy - 0.05


def _transformer_block(keras):
    """Embedding, self-attention, LayerNormalization and a feed-forward block, as keras.io builds one."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    h = L.Embedding(50, 16, name="embed")(tokens)
    h = L.LayerNormalization(name="norm_a")(L.Add()([h, L.MultiHeadAttention(2, 8, name="attention")(h, h)]))
    ffn = L.Dense(16, name="ffn_down")(L.Dense(32, activation="relu", name="ffn_up")(h))
    h = L.LayerNormalization(name="norm_b")(L.Add()([h, ffn]))
    return keras.Model(tokens, L.Dense(3, name="logits")(L.GlobalAveragePooling1D()(h)))


def test_a_transformer_block_prunes_weights_and_feed_forward_units(keras_flavour, tmp_path):
    model = _transformer_block(keras_flavour)
    rng = np.random.default_rng(0)
    data = ((rng.integers(0, 50, (128, 12)), rng.integers(0, 3, 128)), None)
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    fit_pruned(pruned, data, epochs=1)
    rows = {row["layer"]: row["sparsity"] for row in kc.pruning.sparsity(pruned).layers}
    assert all(rows[name] == pytest.approx(0.5, abs=0.01) for name in ("embed", "attention", "ffn_up"))
    keras3 = keras_flavour.__name__ == "keras"
    if keras3:  # Keras 3 removes heads; tf_keras leaves the attention whole, and says so
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    else:
        with pytest.warns(UserWarning, match=r"attention \(MultiHeadAttention: no filters to remove\)"):
            pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    fit_pruned(pruned, data, epochs=1)
    plain = kc.pruning.strip(pruned)
    small = kc.pruning.shrink(plain)  # checks its outputs against `plain`
    assert small.get_layer("ffn_up").units == 16
    assert small.get_layer("attention").get_config()["num_heads"] == (1 if keras3 else 2)
    artifact = kc.export(small, str(tmp_path / "block.onnx"))
    assert artifact.parity["logits"]["max_abs_diff"] < 1e-5


def test_the_keras3_wrapper_keeps_what_the_layer_call_adds(keras3, digits):
    """Activity and weight regularization and masks pass through a pruned layer: before any mask
    is set, the pruned model computes the same loss as the original."""
    L = keras3.layers
    keras3.utils.set_random_seed(0)
    tokens = keras3.Input((10,), dtype="int32")
    h = L.LSTM(8, return_sequences=True)(L.Embedding(20, 8, mask_zero=True)(tokens))
    outputs = L.Dense(3, activity_regularizer=keras3.regularizers.L2(0.5),
                      kernel_regularizer=keras3.regularizers.L2(0.5))(h)  # counted once
    model = keras3.Model(tokens, outputs)
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    x = np.random.default_rng(0).integers(0, 20, (16, 10))
    x[:, 6:] = 0  # padding the mask must hide
    y = np.random.default_rng(1).standard_normal((16, 10, 3)).astype("float32")
    losses = [m.compile(loss="mse") or m.evaluate(x, y, verbose=0) for m in (model, pruned)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_a_keras3_model_holding_a_lambda_prunes_in_memory(keras3, digits):
    inputs = keras3.Input((8, 8, 1))
    x = keras3.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = keras3.layers.Dense(10, name="logits")(keras3.layers.Flatten()(x))
    pruned = kc.pruning.prune(keras3.Model(inputs, x), _schedule(0.5))  # the Lambda holds no weights
    fit_pruned(pruned, digits)
    assert kc.pruning.sparsity(kc.pruning.strip(pruned)).total_sparsity == pytest.approx(0.5, abs=0.01)


def test_training_a_pruned_model_without_the_callback_is_refused(trained_cnn, digits):
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, _schedule(0.5)))
    with pytest.raises(RuntimeError, match="PruningCallback") as refused:
        pruned.fit(*digits[0], epochs=1, verbose=0)
    if flavour_of(pruned) == KERAS3:  # refused when fit starts, not inside its traced step
        assert "in user code" not in str(refused.value) and len(str(refused.value)) < 400


def test_filter_pruning_a_softmax_model_prints_nothing_of_its_probes(keras3):
    inputs = keras3.Input((8, 8, 1))
    x = keras3.layers.Flatten()(keras3.layers.Conv2D(8, 3, activation="relu")(inputs))
    x = keras3.layers.Dense(10, activation="softmax")(keras3.layers.Dense(16, activation="relu")(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kc.pruning.prune(keras3.Model(inputs, x), _schedule(0.5), granularity="filter")
    assert not [w for w in caught if "softmax over axis" in str(w.message)]
