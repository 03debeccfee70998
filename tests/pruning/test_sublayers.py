"""Keras 3 pruning reaches the built-in layers inside custom layers (keras.io's transformer
classifier, as published): masks held on those layers, driven by `PruningCallback`, stripped
into the user's own classes, and kept through checkpoints. Runs on TensorFlow and JAX."""

import warnings

import numpy as np
import pytest

import keras_compress as kc
from models import keras_io_transformer, wrapped_dense


def _tokens(rows=128, maxlen=8, vocab=50):
    ids = np.random.default_rng(0).integers(0, vocab, (rows, maxlen)).astype("float32")
    return ids, (ids[:, 0] >= vocab // 2).astype("int32")


def _fit(pruned, epochs=2, callbacks=()):
    x, y = _tokens()
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=epochs, batch_size=32, verbose=0,
               callbacks=[kc.pruning.PruningCallback(), *callbacks])


def _inner_kernels(pruned, model):
    """`{path in model: kernel in pruned}` for the layers inside the two custom layers (the copy that
    pruning makes names the layers it rebuilds anew, in the same order)."""
    from keras_compress.pruning.keras3_sublayers import targets

    paths = [path for layer in model.layers[1:3] for path, _ in targets(layer)]
    kernels = [np.asarray(inner.weights[0].numpy()) for layer in pruned.layers[1:3]
               for _, inner in targets(layer)]
    assert len(paths) == len(kernels)
    return dict(zip(paths, kernels))


def _query(model):
    block = model.layers[2]
    return f"{block.name}/{block.att.name}/query"


def test_weight_pruning_reaches_inside_custom_layers_and_strips_to_the_users_classes(keras3):
    model = keras_io_transformer()
    before = [w.copy() for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense: no warning
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    _fit(pruned)

    kernels = _inner_kernels(pruned, model)
    assert len(kernels) == 8 and _query(model) in kernels  # 2 embeddings, 4 projections, 2 Dense
    for path, kernel in kernels.items():
        assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02), path
    rows = [row["sparsity"] for row in kc.pruning.sparsity(pruned).layers]
    assert rows == pytest.approx([0.5] * 4, abs=0.01)  # the two custom layers and the two Dense

    stripped = kc.pruning.strip(pruned)
    assert [type(layer).__name__ for layer in stripped.layers[1:3]] == ["TokenAndPositionEmbedding",
                                                                        "TransformerBlock"]
    assert len(stripped.weights) == len(model.weights)  # no mask left in the user's layers
    x, _ = _tokens(8)
    np.testing.assert_allclose(np.asarray(stripped(x)), np.asarray(pruned(x)), atol=1e-6)
    assert kc.pruning.sparsity(stripped).total_sparsity == pytest.approx(0.5, abs=0.01)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)  # the user's model is left as it was


def test_global_ranking_covers_inner_layers_and_exclude_names_them_by_path(keras3):
    model = keras_io_transformer()
    embedding, query = model.layers[1].name, _query(model)
    with pytest.raises(ValueError, match=r"inside its custom layers: \[.*multi_head_attention\w*/query"):
        kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), exclude=["transformer_block/query"])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.7), scope="global",
                              exclude=[query, embedding])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the global ranking may empty a small layer, and says so
        _fit(pruned)
    kernels = _inner_kernels(pruned, model)
    kept = [path for path in kernels if path == query or path.startswith(embedding + "/")]
    assert len(kept) == 3 and all(np.all(kernels[path] != 0) for path in kept)
    masked = [kernels[path] for path in kernels if path not in kept]
    masked += [layer.layer.kernel.numpy() for layer in pruned.layers if hasattr(layer, "pruning_vars")]
    zeros = sum(int(np.sum(k == 0)) for k in masked) / sum(k.size for k in masked)
    assert zeros == pytest.approx(0.7, abs=0.01)  # one ranking over the block's and the head's kernels


def test_m_by_n_inside_custom_layers_leaves_the_layers_it_cannot_pattern_dense_and_named(keras3):
    model = keras_io_transformer()
    query = _query(model)
    with pytest.warns(UserWarning, match=rf"{query} \(EinsumDense: no 2:4 pattern\)"):
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="2:4")
    _fit(pruned, epochs=1)
    kernels = _inner_kernels(pruned, model)
    feed_forward = [kernel for path, kernel in kernels.items() if "/sequential" in path]
    assert len(feed_forward) == 2 and np.all(kernels[query] != 0)
    for kernel in feed_forward:
        groups = np.moveaxis(kernel, -2, -1).reshape(-1, 4)
        assert np.all(np.sum(groups == 0, axis=1) >= 2)


def test_a_layer_held_twice_is_masked_once_and_one_name_excludes_one_layer(keras3, tmp_path):
    L = keras3.layers

    class Head(L.Layer):
        def __init__(self, dense, **kwargs):
            super().__init__(**kwargs)
            self.dense = dense

        def call(self, x):
            return self.dense(x)

    class Block(L.Layer):  # its Dense, and a Head around the same Dense
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense, self.extra = L.Dense(8, name="dense"), L.Dense(8, name="dense_1")
            self.head = Head(self.dense, name="head")

        def call(self, x):
            return self.extra(self.head(self.dense(x)))

    inputs = keras3.Input((8,))
    model = keras3.Model(inputs, L.Dense(2, name="out")(Block(name="block")(inputs)))
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=1, frequency=1000),
                              exclude="block/dense_1")  # one name (block/dense is part of its string)
    from keras_compress.pruning.prune import pruning_wrappers

    masked = [getattr(wrapper, "layer_path", None) for wrapper in pruning_wrappers(pruned)]
    assert masked == [None, "block/dense"]  # the head, then the one inner layer not excluded
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=1, frequency=1000))
    assert [getattr(w, "layer_path", None) for w in pruning_wrappers(pruned)] == [None, "block/dense",
                                                                                  "block/dense_1"]
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    pruned.compile("sgd", "mse")
    pruned.fit(x, np.zeros((32, 2), "float32"), epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    pruned.save_weights(str(tmp_path / "w.weights.h5"))
    pruned.load_weights(str(tmp_path / "w.weights.h5"))  # one mask per layer: the file loads back
    assert np.mean(pruned.layers[1].dense.kernel.numpy() == 0) == pytest.approx(0.5)


def test_checkpoints_of_a_model_pruned_inside_load_back_and_resume_with_their_masks(keras3, tmp_path):
    model = wrapped_dense(keras=keras3)
    x = np.random.default_rng(0).normal(size=(64, 64)).astype("float32")
    y = np.zeros((64, 4), "float32")
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=1, frequency=1000))
    pruned.compile("sgd", "mse")
    weights = str(tmp_path / "pruned.weights.h5")
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    pruned.save_weights(weights)
    pruned.save(tmp_path / "pruned.keras")
    inner = pruned.layers[1].inner.kernel.numpy()
    assert np.mean(inner == 0) == pytest.approx(0.5, abs=0.01)

    # The file holds the zeros, not the masks: it loads as the plain model.
    plain = kc.load_model(str(tmp_path / "pruned.keras"), custom_objects={"Block": type(model.layers[1])},
                          safe_mode=False)
    np.testing.assert_array_equal(plain.layers[1].inner.kernel.numpy(), inner)

    # Loaded into a model pruned again (as a resumed run does), the masks come from the zeros, and
    # training goes on without a new ranking (frequency=1000): the zeros stay where they were.
    again = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=1, frequency=1000))
    again.load_weights(weights)
    again.compile("sgd", "mse")
    again.fit(x, y + 1, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    after = again.layers[1].inner.kernel.numpy()
    np.testing.assert_array_equal(after == 0, inner == 0)
    assert not np.array_equal(after, inner)  # it trained


def test_the_global_weight_scan_of_compress_ranks_what_prune_masks(keras3):
    from keras_compress.analysis._scan import global_weight_unit
    from keras_compress.pruning.prune import pruning_wrappers

    model = keras_io_transformer()
    unit = global_weight_unit(model, set(), "weights/global")
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), scope="global")
    masked = [weight for wrapper in pruning_wrappers(pruned) for weight, _, _ in wrapper.pruning_vars]
    assert len(masked) == 10 and unit.parameters == sum(int(np.prod(weight.shape)) for weight in masked)
    assert unit.layers == [layer.name for layer in model.layers[1:3]] + [model.layers[-3].name,
                                                                         model.layers[-1].name]
