"""Every layer kind structured pruning knows goes through mask -> strip -> shrink with the same outputs."""

import numpy as np
import pytest
import tf_keras as keras

import keras_compress as kc
from conftest import compile_classifier, fit_pruned
from keras_compress.pruning.layer_rules import BUILTIN_RULES, CHANNEL_RULES

L = keras.layers


def _model(*layers, shape=(8, 8, 1), keras=keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return compile_classifier(keras.Model(inputs, x))


# One small model per built-in layer kind, with that layer named "target", in either Keras.
BATTERY = {
    "Conv2D": lambda L: [L.Conv2D(8, 3, activation="relu", name="target"), L.Conv2D(4, 3), L.Flatten(),
                         L.Dense(10)],
    "Dense": lambda L: [L.Flatten(), L.Dense(12, activation="relu", name="target"), L.Dense(10)],
    "DepthwiseConv2D": lambda L: [L.Conv2D(8, 1), L.DepthwiseConv2D(3, padding="same", name="target"),
                                  L.Conv2D(4, 1), L.GlobalAveragePooling2D(), L.Dense(10)],
    "BatchNormalization": lambda L: [L.Conv2D(8, 3), L.BatchNormalization(name="target"), L.ReLU(),
                                     L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(10)],
    "SeparableConv2D": lambda L: [L.Conv2D(8, 1), L.SeparableConv2D(8, 3, padding="same", name="target"),
                                  L.SeparableConv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(10)],
}


def _channels(layer):
    kind = type(layer).__name__
    if kind == "SeparableConv2D":  # the pointwise kernel makes the filters
        return layer.get_weights()[1].shape[-1]
    return layer.get_weights()[0].shape[2 if kind == "DepthwiseConv2D" else -1]


def test_every_built_in_rule_has_a_battery_model():
    for rules in BUILTIN_RULES.values():
        assert set(BATTERY) >= set(rules)


@pytest.mark.parametrize("kind", list(BATTERY))
def test_mask_strip_shrink_keeps_the_outputs(kind, digits, keras_flavour):
    model = _model(*BATTERY[kind](keras_flavour.layers), keras=keras_flavour)
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, frequency=1), granularity="filter")
    fit_pruned(pruned, digits, epochs=1)
    plain = kc.pruning.strip(pruned)
    small = kc.pruning.shrink(plain)  # verifies its outputs against `plain` itself, and raises otherwise
    assert _channels(small.get_layer("target")) == _channels(plain.get_layer("target")) // 2
    x = digits[1][0][:16]
    np.testing.assert_allclose(small.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


class _ScaledDense(L.Dense):
    """A custom layer kind: structured pruning leaves it alone until a rule is registered."""


def test_a_registered_rule_teaches_shrink_a_custom_layer(digits, monkeypatch):
    monkeypatch.setitem(CHANNEL_RULES, _ScaledDense, None)  # restored after the test
    model = _model(L.Flatten(), _ScaledDense(12, activation="relu", name="target"), L.Dense(10))
    kc.pruning.register_channel_rule(_ScaledDense, BUILTIN_RULES["tf_keras"]["Dense"])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, frequency=1), granularity="filter")
    fit_pruned(pruned, digits, epochs=1)
    small = kc.pruning.shrink(kc.pruning.strip(pruned))
    assert small.get_layer("target").units == 6


@pytest.mark.parametrize("arguments, error, message", [
    (("filter", {"kernel": -1}, ()), ValueError, "role must be"),
    (("producer", {"kernel": -1}, ("kernel",)), ValueError, "needs size_key"),
    (("member", {"gamma": -1}, ("beta",)), ValueError, "masked weights \\['beta'\\]"),
])
def test_bad_rules_are_refused(arguments, error, message):
    with pytest.raises(error, match=message):
        kc.pruning.ChannelRule(*arguments, size_key=None)
