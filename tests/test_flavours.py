"""Both Keras flavours behind one contract: `_keras` and `_keras3` implement `Flavour`, their roads
offer the same functions, the same checks hold for a model of either, and no other module
branches on the flavour."""

import ast
import importlib
import inspect
import pathlib
import typing

import numpy as np
import pytest

import keras_compress as kc
from keras_compress import _keras, _keras3
from keras_compress._flavour import FLAVOURS, SUPPORTED_BACKENDS, Flavour, flavour_of, flavour_road, keras_for
from keras_compress.distillation._settings import DistillerSettings

MODULES = {"tf_keras": _keras, "keras3": _keras3}
CONTRACT = typing.get_type_hints(Flavour)
# What each road offers, whatever the flavour.
ROAD_FUNCTIONS = {
    "qat": ("check_model", "quantize_aware", "is_quantize_aware", "quantized_weights",
            "quantized_kernel_count"),
    "pruning_steps": ("ranking", "schedules_changed", "install", "after_custom_step", "uninstall"),
}


def _parameters(function):
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_each_flavour_module_implements_the_contract(flavour):
    module = MODULES[flavour]
    missing = sorted(name for name in CONTRACT if not hasattr(module, name))
    assert missing == []
    assert module.NAME == flavour
    assert set(module.ROADS) == set(MODULES["tf_keras"].ROADS) == set(MODULES["keras3"].ROADS)
    for name in CONTRACT:
        assert name in module.__all__


def test_the_contracts_functions_take_the_same_arguments_in_both_flavours():
    for name, hint in CONTRACT.items():
        if typing.get_origin(hint) is not typing.get_origin(typing.Callable[[], None]):
            continue
        assert _parameters(getattr(_keras, name)) == _parameters(getattr(_keras3, name)), name


@pytest.mark.parametrize("road", sorted(_keras.ROADS))
def test_both_flavours_roads_offer_the_same_functions(road):
    found = [flavour_road(flavour, road) for flavour in FLAVOURS]
    if road == "distiller":
        assert all(issubclass(cls, DistillerSettings) for cls in found)
    elif road == "pruning_wrapper":
        assert all(issubclass(cls, MODULES[f].keras.layers.Wrapper) for f, cls in zip(FLAVOURS, found))
    elif road in ROAD_FUNCTIONS:
        for name in ROAD_FUNCTIONS[road]:
            assert _parameters(getattr(found[0], name)) == _parameters(getattr(found[1], name)), name
    else:
        assert _parameters(found[0]) == _parameters(found[1])


def _model(keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="scores")(x))


def test_the_same_checks_hold_for_a_model_of_either_flavour(keras_flavour):
    model = _model(keras_flavour)
    flavour = keras_for(model)
    assert flavour.NAME == flavour_of(model) and flavour.keras is keras_flavour
    assert flavour.backend() in SUPPORTED_BACKENDS
    assert flavour.is_graph_model(model)
    assert flavour.input_names(model) == ["pixels"] and flavour.output_names(model) == ["scores"]
    assert [flavour.rank(t) for t in flavour.output_tensors(model)] == [2]
    assert flavour.quantized_layers(model) == []
    copy = flavour.copy_model(model)
    assert copy is not model and all(a is not b for a, b in zip(copy.weights, model.weights))
    x = np.random.default_rng(0).random((2, 8, 8, 1), np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # The pruning roads: wrap, ask the layers, strip.
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    wrapper = flavour_road(flavour.NAME, "pruning_wrapper")
    assert sum(isinstance(layer, wrapper) for layer in pruned.layers) == 2
    prunability = flavour_road(flavour.NAME, "prunability")
    assert [prunability(layer) for layer in model.layers[1:]] == ["weights", "none", "weights"]
    stripped = flavour_road(flavour.NAME, "strip_pruning")(pruned)
    assert not any(isinstance(layer, wrapper) for layer in stripped.layers)


# Modules that hold a flavour (and `_flavour`, which tells them apart): the only ones that may
# name one to decide what to do.
_FLAVOUR_MODULES = {"_flavour.py", "_keras.py", "_keras3.py", "_tfmot.py"}


def _flavour_comparisons(tree):
    """Lines that compare with a flavour constant or name: `x == KERAS3`, `"tf_keras" != x`..."""
    names = {"KERAS3", "TF_KERAS"}
    constants = {"keras3", "tf_keras"}

    def is_flavour(node):
        return (isinstance(node, ast.Name) and node.id in names) or (
            isinstance(node, ast.Constant) and node.value in constants)

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in node.ops)
            and any(is_flavour(side) for side in [node.left, *node.comparators])]


def test_no_module_but_the_flavour_modules_branches_on_the_flavour():
    package = pathlib.Path(kc.__file__).parent
    branches = sorted((str(path.relative_to(package)), line) for path in package.rglob("*.py")
                      if str(path.relative_to(package)) not in _FLAVOUR_MODULES
                      for line in _flavour_comparisons(ast.parse(path.read_text())))
    assert branches == []


def test_a_model_of_neither_flavour_is_told_what_works():
    with pytest.raises(kc.UnsupportedModelError, match="no qat road"):
        importlib.import_module("keras_compress._flavour").road(object(), "qat")


def test_a_layer_that_its_config_cannot_rebuild_is_named_with_the_fix(keras_flavour):
    # keras.io's "Text classification with Transformer" writes its layers this way: no **kwargs.
    layers = keras_flavour.layers

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, maxlen, vocab_size, embed_dim):
            super().__init__()
            self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x):
            return self.token_emb(x) + self.pos_emb(np.arange(6))

    inputs = keras_flavour.Input((6,))
    hidden = layers.GlobalAveragePooling1D()(TokenAndPositionEmbedding(6, 50, 4)(inputs))
    model = keras_flavour.Model(inputs, layers.Dense(2, name="logits")(hidden))
    if keras_flavour.__name__ == "keras":  # Keras 3 copies rebuild it from the arguments its __init__ names
        copy = kc.pruning.strip(model)
        assert type(copy.layers[1]) is TokenAndPositionEmbedding
        assert copy.layers[1].name == model.layers[1].name
        np.testing.assert_array_equal(copy(np.ones((1, 6))), model(np.ones((1, 6))))

        class Applies(layers.Layer):  # a function argument: no config at all
            def __init__(self, function):
                super().__init__()
                self.function = function
                self.inner = layers.Dense(2)

            def call(self, x):
                return self.function(self.inner(x))

        model = keras_flavour.Model(inputs, Applies(lambda x: 2 * x)(inputs))
        with pytest.raises(kc.errors.UnsupportedModelError, match=r"layer 'applies\w*' \(Applies\) cannot be "
                                                                  r"rebuilt[\s\S]*no get_config"):
            kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        return
    expected = (r"layer 'token_and_position_embedding\w*' \(TokenAndPositionEmbedding\) cannot be "
                r"rebuilt[\s\S]*\*\*kwargs")
    with pytest.raises(kc.errors.UnsupportedModelError, match=expected):  # tfmot's copies need its name
        kc.quantization.quantize_aware(model)
