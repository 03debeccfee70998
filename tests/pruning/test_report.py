import numpy as np
import pytest

import keras_compress as kc


def test_sparsity_counts_zeros_of_prunable_weights_only(keras_flavour):
    keras = keras_flavour
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(2, name="b")])
    kernel_a, bias_a = np.ones((4, 3)), np.zeros(3)
    kernel_a[:2] = 0  # 6 of 12
    kernel_b = np.ones((3, 2))
    model.get_layer("a").set_weights([kernel_a, bias_a])
    model.get_layer("b").set_weights([kernel_b, np.ones(2)])
    report = kc.pruning.sparsity(model)
    assert [(r["layer"], r["params"], r["zeros"]) for r in report.layers] == [("a", 12, 6), ("b", 6, 0)]
    assert report.total_sparsity == pytest.approx(6 / 18)
    assert report.total_params == model.count_params()
    bn_params = 12  # gamma ones, beta zeros, moving mean zeros, variance ones
    assert report.nonzero_params == 6 + 0 + bn_params // 2 + 6 + 2
    rows = [line.split() for line in str(report).splitlines()]
    assert ["a", "Dense", "12", "6", "50.0%"] in rows and ["b", "Dense", "6", "0", "0.0%"] in rows
    assert ["total", "18", "6", "33.3%"] in rows
    assert report.to_dict()["total_sparsity"] == pytest.approx(6 / 18)


def test_sparsity_reads_a_pruned_model_through_its_masks(keras_flavour):
    keras = keras_flavour
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="a")])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    wrapper = pruned.layers[0]
    mask = wrapper.pruning_vars[0][1]
    mask.assign(np.array([[0, 1, 1, 1]] * 4, "float32"))
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.25)
    assert "mask" not in str(kc.pruning.sparsity(pruned))


def test_sparsity_rejects_what_is_not_a_keras_model():
    with pytest.raises(kc.UnsupportedModelError, match="import keras.*import tf_keras as keras"):
        kc.pruning.sparsity(object())
