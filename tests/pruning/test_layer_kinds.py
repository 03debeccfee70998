"""The layer-kind registry: every kind structured pruning knows goes through mask -> strip -> shrink with
the same outputs, and one registered kind teaches pruning and quantization-aware training alike."""

import numpy as np
import pytest
import tf_keras as keras

import keras_compress as kc
from conftest import compile_classifier, fit_pruned
from keras_compress.layer_kinds import BUILTIN_KINDS, LayerKind, kind_of
from keras_compress.quantization.qat import quantized_kernel_count

L = keras.layers


def _model(*layers, sequence=False, keras=keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Reshape((8, 8))(inputs) if sequence else inputs  # the digits' rows as a sequence
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
    "Conv1D": lambda L: [L.Conv1D(8, 3, activation="relu", name="target"), L.MaxPooling1D(),
                         L.Conv1D(4, 3, padding="same"), L.GlobalAveragePooling1D(), L.Dense(10)],
}
SEQUENCES = {"Conv1D"}  # kinds whose models read the digits as a sequence of rows


def _channels(layer):
    kind = type(layer).__name__
    if kind == "SeparableConv2D":  # the pointwise kernel makes the filters
        return layer.get_weights()[1].shape[-1]
    return layer.get_weights()[0].shape[2 if kind == "DepthwiseConv2D" else -1]


def test_every_built_in_rule_has_a_battery_model():
    assert set(BATTERY) == {name for name, kind in BUILTIN_KINDS.items() if kind.rule}


@pytest.mark.parametrize("kind", list(BATTERY))
def test_mask_strip_shrink_keeps_the_outputs(kind, digits, keras_flavour):
    model = _model(*BATTERY[kind](keras_flavour.layers), sequence=kind in SEQUENCES,
                   keras=keras_flavour)
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
    monkeypatch.setattr("keras_compress.layer_kinds.LAYER_KINDS", {})  # restored after the test
    model = _model(L.Flatten(), _ScaledDense(12, activation="relu", name="target"), L.Dense(10))
    kc.pruning.register_channel_rule(_ScaledDense, BUILTIN_KINDS["Dense"].rule)
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


def test_a_subclass_is_a_kind_of_its_own(keras_flavour):
    class Custom(keras_flavour.layers.Dense):
        pass

    assert kind_of(keras_flavour.layers.Dense(2)) is BUILTIN_KINDS["Dense"]
    assert kind_of(Custom(2)) == LayerKind()


def test_a_registered_kind_teaches_quantization_aware_training(keras_flavour, monkeypatch):
    """Keras 3 QAT puts the kernel of a registered Dense subclass on the int8 grid, as for a Dense."""
    if keras_flavour is keras:
        pytest.skip("tf_keras' quantization-aware training follows tfmot's registry")

    class Custom(keras_flavour.layers.Dense):
        pass

    monkeypatch.setattr("keras_compress.layer_kinds.LAYER_KINDS", {})
    inputs = keras_flavour.Input((8,))
    model = keras_flavour.Model(inputs, Custom(4, name="target")(keras_flavour.layers.Dense(6)(inputs)))
    with pytest.warns(UserWarning, match="target"):  # unknown: left float, and named
        before = kc.quantization.quantize_aware(model)
    assert quantized_kernel_count(before) == 1
    kc.layer_kinds.register_layer_kind(Custom, BUILTIN_KINDS["Dense"])
    assert kind_of(Custom(2)) is BUILTIN_KINDS["Dense"]
    assert quantized_kernel_count(kc.quantization.quantize_aware(model)) == 2


@pytest.mark.parametrize("arguments, message", [
    ({"channels": "sideways"}, "channels must be"),
    ({"int8": "int4"}, "int8 must be"),
    ({"tfmot": "kernel"}, "tfmot must be"),
])
def test_bad_kinds_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        LayerKind(**arguments)


def test_only_layer_classes_are_registered():
    with pytest.raises(TypeError, match="must be a Keras layer class"):
        kc.layer_kinds.register_layer_kind(int, LayerKind())
    with pytest.raises(TypeError, match="must be a LayerKind"):
        kc.layer_kinds.register_layer_kind(L.Dense, "Dense")


def test_a_channel_rule_for_a_built_in_class_keeps_what_else_is_known_of_it(keras_flavour, monkeypatch):
    monkeypatch.setattr("keras_compress.layer_kinds.LAYER_KINDS", {})
    rule = BUILTIN_KINDS["Conv2D"].rule
    kc.pruning.register_channel_rule(keras_flavour.layers.Conv2D, rule)
    kind = kind_of(keras_flavour.layers.Conv2D(2, 3))
    assert kind.rule is rule and kind.m_by_n and kind.int8 == "kernel" and kind.folds_batch_norm
