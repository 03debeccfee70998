"""Weight clustering of tf_keras models, and the prune -> cluster -> quantization-aware chain that
keeps both zeros and clusters, through saving, loading and export."""

import logging

import numpy as np
import pytest
import tf_keras

import keras_compress as kc
from conftest import compile_classifier, fit_pruned, int8_weight_arrays
from models import reloaded, small_cnn


def _fit(model, digits, epochs=1):
    (x, y), _ = digits
    compile_classifier(model).fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def _kernels(model):
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


@pytest.fixture(scope="module")
def pruned_and_clustered(float_and_qat, digits):
    """`(pruned and stripped, then clustered to 8 and stripped)` copies of the tf_keras CNN whose
    BatchNormalization QAT folds (every kernel becomes int8). The logits stay dense: a layer
    without zeros is clustered freely, and must not turn sparsity off for the others."""
    pruned = kc.pruning.prune(float_and_qat[0], kc.pruning.ConstantSparsity(0.7), exclude=["logits"])
    fit_pruned(pruned, digits, epochs=1)
    sparse = kc.pruning.strip(pruned)
    clustered = _fit(kc.clustering.cluster(sparse, 8, init="linear"), digits)
    return sparse, kc.clustering.strip(clustered)


@pytest.fixture(scope="module")
def chain_qat(pruned_and_clustered, digits):
    """The clustered model trained quantization-aware for one epoch."""
    return _fit(kc.quantization.quantize_aware(pruned_and_clustered[1]), digits)


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density", "random"])
def test_a_stripped_clustered_model_holds_at_most_its_clusters_per_kernel(tf_keras_cnn, digits, init):
    clustered = _fit(kc.clustering.cluster(tf_keras_cnn, 4, init=init), digits)
    stripped = kc.clustering.strip(clustered)
    report = kc.clustering.distinct_values(stripped)
    assert {row["layer"] for row in report.layers} == set(_kernels(tf_keras_cnn))
    for name, kernel in _kernels(stripped).items():
        assert np.unique(kernel).size <= 4, name
    assert report.most_distinct <= 4 and kc.clustering.is_clustered(stripped)
    assert not kc.clustering.is_clustered(tf_keras_cnn)
    assert kc.clustering.distinct_values(clustered).to_dict() == report.to_dict()  # read as strip leaves it
    assert "distinct" in str(report)


def test_clustering_copies_and_keeps_the_model_working(tf_keras_cnn, digits):
    before = tf_keras_cnn.get_weights()
    stripped = kc.clustering.strip(_fit(kc.clustering.cluster(tf_keras_cnn, 16), digits))
    assert all(np.array_equal(a, b) for a, b in zip(before, tf_keras_cnn.get_weights()))
    _, (x, y) = digits
    float_accuracy = np.mean(np.argmax(tf_keras_cnn.predict(x, verbose=0), -1) == y)
    accuracy = np.mean(np.argmax(stripped.predict(x, verbose=0), -1) == y)
    assert accuracy >= float_accuracy - 0.05


def test_a_pruned_model_keeps_its_zeros_through_clustering(pruned_and_clustered):
    sparse, clustered = pruned_and_clustered
    assert kc.clustering.is_clustered(clustered) and not kc.clustering.is_clustered(sparse)
    for name, kernel in _kernels(sparse).items():
        after = _kernels(clustered)[name]
        assert np.all(after[kernel == 0] == 0), name
        assert np.unique(after).size <= 8 + (name != "logits"), name  # the clusters, and zero
    assert np.all(_kernels(clustered)["logits"] != 0)  # a dense layer gets no zero forced on it


def test_is_clustered_tells_clustered_kernels_from_trained_pruned_and_constant_ones(tf_keras_cnn, digits):
    tiny = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(6, name="fc")])
    assert not kc.clustering.is_clustered(tiny)
    tiny.set_weights([np.resize(np.array([0.5, -0.5, 0.25], np.float32), (4, 6)), np.zeros(6, np.float32)])
    assert kc.clustering.is_clustered(tiny)  # 3 values over 24 weights
    tiny.set_weights([np.ones((4, 6), np.float32), np.zeros(6, np.float32)])
    assert not kc.clustering.is_clustered(tiny)  # one value: nothing was clustered

def test_exclude_and_unclusterable_layers_stay_as_they_were(tf_keras_cnn, digits):
    stripped = kc.clustering.strip(kc.clustering.cluster(tf_keras_cnn, 4, exclude=["dense_a"]))
    assert np.array_equal(_kernels(stripped)["dense_a"], _kernels(tf_keras_cnn)["dense_a"])
    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, _Scale(name="scale")(tf_keras.layers.Dense(8, name="fc")(inputs)))
    with pytest.warns(UserWarning, match="stay unclustered.*scale"):
        clustered = kc.clustering.cluster(model, 4)
    assert [type(layer).__name__ for layer in clustered.layers[1:]] == ["ClusterWeights", "_Scale"]


class _Scale(tf_keras.layers.Layer):
    """A custom layer with a weight, which tfmot cannot cluster."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=(1,), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def test_bad_input_is_refused_before_any_work(tf_keras_cnn):
    with pytest.raises(ValueError, match="at least 2"):
        kc.clustering.cluster(tf_keras_cnn, 1)
    with pytest.raises(ValueError, match="init must be one of"):
        kc.clustering.cluster(tf_keras_cnn, init="kmeans")
    with pytest.raises(ValueError, match="does not have"):
        kc.clustering.cluster(tf_keras_cnn, exclude=["nope"])
    tiny = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(3, name="tiny")])
    with pytest.raises(ValueError, match="'tiny' has 6 weights, fewer than number_of_clusters=16"):
        kc.clustering.cluster(tiny)
    flat = tf_keras.Sequential([tf_keras.Input((4, 4)), tf_keras.layers.Flatten()])
    with pytest.raises(ValueError, match="no layer to cluster"):
        kc.clustering.cluster(flat)
    with pytest.raises(kc.KerasCompressError, match="dense"):
        kc.clustering.cluster(tf_keras_cnn, preserve_sparsity=True)
    with pytest.raises(kc.ModelStateError, match="pruning wrappers"):
        kc.clustering.cluster(kc.pruning.prune(tf_keras_cnn, kc.pruning.ConstantSparsity(0.5)))
    with pytest.raises(kc.ModelStateError, match="already clustered"):
        kc.clustering.cluster(kc.clustering.cluster(tf_keras_cnn))
    with pytest.raises(kc.KerasCompressError, match="not clustered"):
        kc.quantization.quantize_aware(tf_keras_cnn, preserve_clusters=True)
    for flag in (1, 0, 1.0):
        with pytest.raises(ValueError, match='must be "auto", True or False'):
            kc.quantization.quantize_aware(tf_keras_cnn, preserve_clusters=flag)
        with pytest.raises(ValueError, match='must be "auto", True or False'):
            kc.clustering.cluster(tf_keras_cnn, preserve_sparsity=flag)
    with pytest.raises(kc.KerasCompressError, match="clustering wrappers: quantize"):
        kc.quantization.quantize_aware(kc.clustering.cluster(tf_keras_cnn))
    with pytest.raises(kc.ModelStateError, match="pruning wrappers"):
        kc.clustering.distinct_values(kc.pruning.prune(tf_keras_cnn, kc.pruning.ConstantSparsity(0.5)))


def test_sparse_layers_need_a_third_cluster_and_frozen_layers_are_named(pruned_and_clustered, tf_keras_cnn):
    with pytest.raises(ValueError, match="'conv_a' is sparse.*at least 3"):
        kc.clustering.cluster(pruned_and_clustered[0], 2)
    frozen = kc.clustering.strip(kc.clustering.cluster(tf_keras_cnn, 4))  # any plain copy
    frozen.get_layer("dense_a").trainable = False
    with pytest.warns(UserWarning, match=r"stay unclustered.*dense_a \(frozen\)"):
        kc.clustering.cluster(frozen, 4)

def test_keras3_models_are_refused_with_the_scope(keras3):
    with pytest.raises(kc.UnsupportedModelError, match="tf_keras models only"):
        kc.clustering.cluster(small_cnn(keras=keras3))
    with pytest.raises(kc.UnsupportedModelError, match="tf_keras"):
        kc.quantization.quantize_aware(small_cnn(keras=keras3), preserve_clusters=True)


def _quantized_kernels(model):
    return {layer.name: value for layer in model.layers
            for _, value, _ in kc.quantization.quantized_weights(layer)}


def _check_chain_invariants(qat, sparse):
    kernels = _quantized_kernels(qat)
    assert len(kernels) == len(_kernels(sparse))
    for (name, value), zeros in zip(kernels.items(), [k == 0 for k in _kernels(sparse).values()]):
        assert np.all(value[zeros] == 0), name
        channels = value.reshape(-1, value.shape[-1]) if value.ndim == 4 else value.reshape(1, -1)
        most = max(np.unique(channel).size for channel in (channels.T if value.ndim == 4 else channels))
        assert most <= 8 + 1, name


def test_quantization_aware_training_keeps_zeros_and_clusters_through_save_and_load(
        chain_qat, pruned_and_clustered, digits, tmp_path):
    sparse, _ = pruned_and_clustered
    _check_chain_invariants(chain_qat, sparse)
    loaded = reloaded(chain_qat, tmp_path)
    x = digits[1][0][:32]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), chain_qat.predict(x, verbose=0), atol=1e-6)
    _check_chain_invariants(_fit(loaded, digits), sparse)  # still kept when training goes on


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_cluster_preserving_training_does_not_warn_of_missing_gradients(pruned_and_clustered, digits):
    # Its kernels are set from the centroids, not trained by gradient: TensorFlow would warn on
    # every step that they have none, unless they are listed as non-trainable.
    records = _Records()
    logging.getLogger("tensorflow").addHandler(records)
    try:
        _fit(kc.quantization.quantize_aware(pruned_and_clustered[1]), digits)
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    assert not [m for m in records.messages if "Gradients do not exist" in m]


def _most_distinct_per_channel(array):
    """The most distinct values in one output channel (the first or the last axis, whichever
    holds them: TFLite and ONNX put convolution filters first, ONNX MatMul weights last)."""
    return min(max(np.unique(np.take(array, i, axis=axis)).size for i in range(array.shape[axis]))
               for axis in (0, -1))


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_the_chain_exports_int8_with_its_zeros_and_clusters(chain_qat, pruned_and_clustered, digits, tmp_path,
                                                           suffix):
    x = digits[1][0][:64]
    artifact = kc.export(chain_qat, str(tmp_path / f"chain{suffix}"), sample_data=x, compare_speed=False)
    assert artifact.precision == "int8"
    assert all(row["top1_agreement"] >= 0.98 for row in artifact.parity.values())
    kernels = int8_weight_arrays(artifact.path)
    zeros_before = sorted(float(np.mean(k == 0)) for k in _kernels(pruned_and_clustered[0]).values())
    assert len(kernels) == len(zeros_before)
    zeros_after = sorted(float(np.mean(kernel == 0)) for kernel in kernels)
    assert all(after >= before - 0.01 for after, before in zip(zeros_after, zeros_before))
    assert all(_most_distinct_per_channel(kernel) <= 8 + 1 for kernel in kernels)


@pytest.mark.parametrize("shape, centroids", [
    ((3, 3, 1, 2), (16,)), ((3, 3, 1, 2), (3,)), ((3, 3, 1, 2), (2, 9)), ((3, 3, 4, 8), (8, 4)),
    ((3, 3, 4, 8), (20,)), ((3, 3, 4, 8), None), ((10, 5), (7,)), ((10, 5), None)])
def test_a_reloaded_cluster_quantizer_builds_the_centroids_it_saved(shape, centroids):
    # Loading builds the layer on a synthetic kernel from which tfmot must derive centroids of
    # the saved shape (per channel or over the whole kernel), or none.
    from types import SimpleNamespace

    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry,
    )

    from keras_compress._tfmot import _with_distinct_values

    layer = tf_keras.layers.Conv2D(shape[-1], 3) if len(shape) == 4 else tf_keras.layers.Dense(shape[-1])
    kernel = tf.constant(_with_distinct_values(shape, centroids, with_zero=True))
    found, count, _, _ = registry.get_centroids(SimpleNamespace(layer=layer), kernel, "channels_last")
    if centroids is None:
        assert int(count) <= 1  # tfmot builds no centroids for it
    else:
        assert tuple(found.shape) == centroids


def test_a_layer_without_centroids_reloads(tf_keras_cnn, digits, tmp_path):
    clustered = kc.clustering.strip(_fit(kc.clustering.cluster(tf_keras_cnn, 4), digits))
    logits = clustered.get_layer("logits")
    logits.set_weights([np.full(logits.kernel.shape, 0.5, np.float32), logits.bias.numpy()])
    qat = _fit(kc.quantization.quantize_aware(clustered), digits)
    assert qat.get_layer("quant_logits").get_config()["preserve_clusters"] == {"kernel": None}
    x = digits[1][0][:32]
    np.testing.assert_allclose(reloaded(qat, tmp_path).predict(x, verbose=0), qat.predict(x, verbose=0),
                               atol=1e-6)


def test_a_clustered_model_saves_and_loads_mid_training(tf_keras_cnn, digits, tmp_path):
    clustered = _fit(kc.clustering.cluster(tf_keras_cnn, 4), digits)
    loaded = reloaded(clustered, tmp_path)
    x = digits[1][0][:32]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0), atol=1e-6)
    assert kc.clustering.distinct_values(_fit(loaded, digits)).most_distinct <= 4
