"""Keras 3 filter pruning removes whole attention heads and the feed-forward width inside custom
layers (keras.io's transformer, as published): ranked with the model's filters, masked in place,
removed by `shrink` into a smaller copy of the user's layer that saves and loads. Runs on
TensorFlow and JAX."""

import warnings

import numpy as np
import pytest

import keras_compress as kc
from models import keras_io_transformer, two_blocks


def _fit(pruned, learning_rate=1e-3):
    import keras

    ids = np.random.default_rng(0).integers(0, 50, (64, 8)).astype("float32")
    labels = (ids[:, 0] >= 25).astype("int32")
    pruned.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
    pruned.fit(ids, labels, epochs=1, batch_size=32, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    return ids


def _zero_heads(attention):
    """Per head, whether all its query, key, value and output weights are zero."""
    kernels = [attention.query_dense.kernel, attention.key_dense.kernel, attention.value_dense.kernel]
    zero = [np.all(np.asarray(k.numpy()) == 0, axis=(0, 2)) for k in kernels]
    zero.append(np.all(np.asarray(attention.output_dense.kernel.numpy()) == 0, axis=(1, 2)))
    return np.logical_and.reduce(zero)


def test_heads_and_feed_forward_width_of_keras_ios_transformer_are_removed(keras3):
    model = keras_io_transformer(num_heads=4, ff_dim=16)
    with pytest.warns(UserWarning, match=r"stay dense: token_and_position_embedding\w* \(TokenAndPosition"):
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    ids = _fit(pruned)
    stripped = kc.pruning.strip(pruned)
    block = stripped.layers[2]
    assert _zero_heads(block.att).tolist().count(True) == 2
    assert np.mean(np.asarray(block.ffn.layers[0].kernel.numpy()) == 0) == pytest.approx(0.5)

    small = kc.pruning.shrink(stripped)
    replaced = small.layers[2]
    assert type(replaced).__name__ == "Replaced" and type(replaced.layer).__name__ == "TransformerBlock"
    assert replaced.layer.att.num_heads == 2
    assert [layer.units for layer in replaced.layer.ffn.layers] == [8, 8]
    assert small.count_params() < stripped.count_params()
    np.testing.assert_allclose(small.predict(ids, verbose=0), stripped.predict(ids, verbose=0), atol=1e-6)
    assert model.layers[2].att.num_heads == 4  # the user's model is left as it was


def _weaken(attention, heads):
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
        kernel = np.asarray(dense.kernel.numpy())
        kernel[:, heads] *= 0.01
        dense.kernel.assign(kernel)


def test_the_weakest_heads_go_first(keras3):
    model = keras_io_transformer(num_heads=4, ff_dim=16)
    _weaken(model.layers[2].att, [1, 3])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter",
                              exclude=[model.layers[1].name])
    _fit(pruned, learning_rate=0.0)
    assert _zero_heads(kc.pruning.strip(pruned).layers[2].att).tolist() == [False, True, False, True]


def test_global_ranking_spans_blocks_and_the_shrunk_model_saves_and_loads(keras3, tmp_path):
    model = two_blocks()
    _weaken(model.layers[2].att, [0, 1, 2])  # one ranking takes all three; per layer would take two
    excluded = [model.layers[1].name, f"{model.layers[4].name}/{model.layers[4].ffn.name}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the heads and width reach the model's weights
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter",
                                  scope="global", exclude=excluded)
    ids = _fit(pruned, learning_rate=0.0)
    stripped = kc.pruning.strip(pruned)
    first, attention, last = stripped.layers[2], stripped.layers[3], stripped.layers[4]
    assert _zero_heads(first.att).tolist() == [True, True, True, False]
    for layer in (first.att, attention, last.att):
        assert not _zero_heads(layer).all()  # every attention keeps a head
    assert np.all(np.asarray(last.ffn.layers[0].kernel.numpy()) != 0)  # excluded: whole

    small = kc.pruning.shrink(stripped)
    assert small.layers[2].layer.att.num_heads == 1
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = kc.load_model(path, safe_mode=False)  # the file names the test's own Block
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), stripped.predict(ids, verbose=0), atol=1e-6)
    again = kc.pruning.shrink(loaded)  # a shrunk layer copies, its smaller layers with it
    assert again.layers[2].layer.att.num_heads == 1
    assert again.layers[2].layer.att is not loaded.layers[2].layer.att

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the layer normalizations stay float)
        qat = kc.quantization.quantize_aware(small)  # trains int8 with the smaller layers it was given
    block = qat.get_layer(small.layers[2].name).layer
    assert block.att.layer.num_heads == 1 and type(block.att).__name__ == "Replaced"
    qat.save(str(tmp_path / "qat.keras"))
    qat_loaded = kc.load_model(str(tmp_path / "qat.keras"), safe_mode=False)
    assert qat_loaded.get_layer(small.layers[2].name).layer.att.layer.num_heads == 1
    np.testing.assert_allclose(qat_loaded.predict(ids, verbose=0), qat.predict(ids, verbose=0), atol=1e-6)


def test_a_layer_that_builds_its_attention_itself_shrinks_and_loads(keras3, tmp_path):
    import keras

    @keras.saving.register_keras_serializable("test_heads")
    class SelfBuilt(keras.layers.Layer):  # as keras-hub's CLIP layers: made in __init__, built in build
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.att = keras.layers.MultiHeadAttention(num_heads=4, key_dim=2)

        def build(self, input_shape):
            self.att.build(input_shape, input_shape)

        def call(self, x):
            return x + self.att(x, x)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 8))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(SelfBuilt()(inputs)))
    model = keras.Model(inputs, outputs)
    _weaken(model.layers[1].att, [0, 1])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    x = np.random.default_rng(0).standard_normal((32, 4, 8)).astype("float32")
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    pruned.fit(x, np.zeros((32, 2)), epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    small = kc.pruning.shrink(kc.pruning.strip(pruned))
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = kc.load_model(path, safe_mode=False)
    for shrunk in (small, loaded):
        assert shrunk.layers[1].layer.att.num_heads == 2
        paths = [variable.path for variable in shrunk.weights]
        assert len(set(paths)) == len(paths) and paths[0].startswith(f"{model.layers[1].name}/")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)


def test_excluded_attention_keeps_its_heads_and_a_model_with_only_attention_prunes(keras3):
    import keras

    inputs = keras.Input((4, 8))
    outputs = keras.layers.MultiHeadAttention(num_heads=4, key_dim=2, name="attention")(inputs, inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="nothing to prune"):
        kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter", exclude=["attention"])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    x = np.random.default_rng(0).standard_normal((32, 4, 8)).astype("float32")
    pruned.compile("sgd", "mse")
    pruned.fit(x, x, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    small = kc.pruning.shrink(pruned)
    assert small.layers[1].num_heads == 2
