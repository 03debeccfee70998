import numpy as np
import pytest

import keras_compress as kc
from conftest import compile_classifier, fit_pruned, random_inputs
from models import residual_net


def _filter_pruned(model, data, target=0.5, epochs=2, **kwargs):
    schedule = kc.pruning.PolynomialDecay(0.0, target, begin_epoch=0, end_epoch=epochs)
    pruned = kc.pruning.prune(model, schedule, granularity="filter", **kwargs)
    fit_pruned(pruned, data, epochs=epochs)
    return kc.pruning.strip(pruned)


def _assert_same_outputs(a, b, x):
    np.testing.assert_allclose(a.predict_on_batch(x), b.predict_on_batch(x), rtol=1e-4, atol=1e-4)


def test_shrink_removes_pruned_filters_and_keeps_outputs(trained_cnn, digits):
    plain = _filter_pruned(trained_cnn, digits)
    small = kc.pruning.shrink(plain)
    assert [small.get_layer(n).get_config().get("filters") for n in ("conv_a", "conv_b")] == [4, 8]
    assert small.get_layer("dense_a").units == 16 and small.get_layer("logits").units == 10
    assert small.count_params() < 0.35 * plain.count_params()
    _assert_same_outputs(plain, small, digits[1][0][:32])
    _, (x_test, y_test) = digits
    assert compile_classifier(small).evaluate(x_test, y_test, verbose=0)[1] == pytest.approx(
        compile_classifier(plain).evaluate(x_test, y_test, verbose=0)[1], abs=1e-6)


def test_shrink_accepts_the_wrapped_model_too(trained_cnn, digits):
    schedule = kc.pruning.ConstantSparsity(0.5)
    pruned = kc.pruning.prune(trained_cnn, schedule, granularity="filter")
    fit_pruned(pruned, digits, epochs=1)
    small = kc.pruning.shrink(pruned)
    assert small.get_layer("conv_b").filters == 8
    _assert_same_outputs(kc.pruning.strip(pruned), small, digits[1][0][:16])


def test_shrink_removes_coupled_channels_of_residual_joins_together(digits, keras_flavour):
    model = compile_classifier(residual_net(keras=keras_flavour))
    plain = _filter_pruned(model, digits, target=0.5, epochs=2)
    small = kc.pruning.shrink(plain)
    stem, expand, project = (small.get_layer(n).filters for n in ("stem", "expand", "project"))
    assert stem == project == 8  # coupled through the Add
    assert expand == 8 and small.get_layer("side").filters == 4
    assert small.get_layer("dw").get_weights()[0].shape[2] == 8
    assert small.get_layer("concat_bn").get_weights()[0].shape == (12,)
    assert small.get_layer("logits").get_weights()[0].shape == (12, 10)
    _assert_same_outputs(plain, small, random_inputs(plain, 8))


def test_shrink_stops_at_layers_it_does_not_know(digits, keras_flavour):
    keras, L = keras_flavour, keras_flavour.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="kept")(inputs)
    x = L.Reshape((6, 8, 6), name="reshape")(x)  # channels move: they pass unseen
    x = L.Conv2D(8, 3, activation="relu", name="removable")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(10, name="logits")(x)
    model = compile_classifier(keras.Model(inputs, outputs))
    plain = _filter_pruned(model, digits)
    assert np.all(plain.get_layer("kept").get_weights()[0] != 0)  # never masked
    small = kc.pruning.shrink(plain)
    assert small.get_layer("kept").filters == 8 and small.get_layer("removable").filters == 4
    assert small.get_layer("logits").get_weights()[0].shape == (4 * 6 * 4, 10)
    _assert_same_outputs(plain, small, random_inputs(plain))


def test_shrink_keeps_channels_whose_zero_output_is_not_zero(keras_flavour):
    keras, L = keras_flavour, keras_flavour.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), L.Dense(6, activation="sigmoid", name="sig"),
                              L.Dense(3, name="out")])
    weights = model.get_weights()
    weights[0][:, 2] = 0
    weights[1][2] = 0  # sigmoid(0) = 0.5: this unit still feeds the next layer
    model.set_weights(weights)
    small = kc.pruning.shrink(model)
    assert small.get_layer("sig").units == 6
    _assert_same_outputs(model, small, random_inputs(model))


def test_shrink_follows_arithmetic_and_products_with_a_zero_factor(digits, keras_flavour):
    """Hard-swish written as arithmetic (as tf_keras' MobileNetV3 does) and a squeeze-excite gate
    (as EfficientNet's): a removed channel holds 3, then 0.5 in the gate, and zero again in each
    product."""
    keras, L = keras_flavour, keras_flavour.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
    gate = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(x))  # the channels stay where they are
    gate = L.Conv2D(8, 1, activation="sigmoid", name="gate")(gate)
    x = L.Multiply()([x, gate])
    x = L.Conv2D(8, 3, activation="relu", name="next")(x)
    outputs = L.Dense(10, name="logits")(L.Flatten()(x))
    plain = _filter_pruned(compile_classifier(keras.Model(inputs, outputs)), digits)
    small = kc.pruning.shrink(plain)
    assert [small.get_layer(n).filters for n in ("conv", "gate", "next")] == [4, 4, 4]
    _assert_same_outputs(plain, small, random_inputs(plain))


def test_shrink_keeps_channels_an_operation_mixes_or_leaves_non_zero(digits, keras_flavour):
    keras, L = keras_flavour, keras_flavour.layers
    ops = keras.ops if hasattr(keras, "ops") else __import__("tensorflow")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))  # unnamed: Keras 3 names the copy's input anew

    def conv(name):
        return L.Conv2D(8, 3, name=name)(inputs)

    gated = conv("gated")
    branches = [ops.cumsum(conv("summed"), axis=-1), ops.sort(conv("sorted")),  # not elementwise
                conv("shifted") + 1.0,  # a removed channel would hold 1
                L.Multiply()([gated, L.Activation("softmax")(gated)]),  # softmax mixes channels
                conv("plain")]
    x = L.Conv2D(8, 3, activation="relu", name="free")(L.Concatenate()(branches))
    outputs = L.Dense(10, name="logits")(L.Flatten()(x))
    plain = _filter_pruned(compile_classifier(keras.Model(inputs, outputs)), digits)
    small = kc.pruning.shrink(plain)
    names = ("summed", "sorted", "shifted", "gated", "plain", "free")
    assert [small.get_layer(n).filters for n in names] == [8, 8, 8, 8, 4, 4]
    _assert_same_outputs(plain, small, random_inputs(plain))
