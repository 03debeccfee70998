"""Keras 3 quantization-aware training reaches inside custom layers and MultiHeadAttention: the
Dense and EinsumDense layers they hold train on the int8 grid with their inputs and outputs
quantized, LayerNormalization and softmax stay float and are named, and the files are int8
with the trained scales. Runs on TensorFlow and JAX (exports on TensorFlow: on JAX they rebuild
the model in a TensorFlow process, which cannot import classes defined in the tests)."""

import re
import warnings

import numpy as np
import pytest

import keras_compress as kc
from keras_compress.errors import QuantizationError
from keras_compress.quantization.qat import quantized_kernel_count, weight_quantized_layers
from models import keras_io_transformer, two_blocks


def _tokens(n=256, seed=0):
    """Token ids (float32, as a plain keras.Input takes them) whose label is whether the first is >= 25."""
    ids = np.random.default_rng(seed).integers(0, 50, (n, 8)).astype("float32")
    return ids, (ids[:, 0] >= 25).astype("int32")


def _fit(model, ids, labels, epochs):
    import keras

    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ids, labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def _accuracy(predict, ids, labels):
    return float(np.mean(np.asarray(predict(ids)).argmax(-1) == labels))


def _on_tensorflow(keras3):
    if keras3.backend.backend() == "jax":
        pytest.skip("on JAX the files come from a TensorFlow-backend process, which cannot import the test's "
                    "layer classes; the quantization is the same code on either backend")


def test_keras_ios_transformer_trains_int8_inside_its_layers(keras3, tmp_path):
    model = keras_io_transformer()
    ids, labels = _tokens()
    _fit(model, ids, labels, epochs=20)
    float_accuracy = _accuracy(lambda x: model.predict(x, verbose=0), ids, labels)
    assert float_accuracy > 0.9

    with pytest.warns(UserWarning, match="stay float") as record:
        qat = kc.quantization.quantize_aware(model)
    message = next(str(w.message) for w in record if "stay float" in str(w.message))
    block = model.layers[2]  # named as in the user's model, by path
    for name in (rf"{block.name}/{block.att.name}/softmax\w*", f"{block.name}/{block.layernorm1.name}",
                 model.layers[1].name):
        assert re.search(rf"[ ,]{name}[,.]", message)
    # query, key, value and output projections, the feed-forward pair, and the classifier's two.
    assert quantized_kernel_count(qat) == 8
    # The attention's projections quantize their own inputs and outputs; the feed-forward Sequential
    # became quantization-aware whole, as a graph.
    inside = [layer for layer in weight_quantized_layers(qat) if layer.quantize_io]
    assert sorted(layer.layer.name for layer in inside) == ["attention_output", "key", "query", "value"]
    feed_forward = qat.get_layer(block.name).layer.ffn
    assert [type(layer).__name__ for layer in feed_forward.layers].count("QuantizeWeights") == 2
    assert model.layers[2].att.query_dense.__class__.__name__ == "EinsumDense"  # the user's model unchanged

    _fit(qat, ids, labels, epochs=2)
    qat_accuracy = _accuracy(lambda x: qat.predict(x, verbose=0), ids, labels)
    assert qat_accuracy > float_accuracy - 0.05
    for layer in weight_quantized_layers(qat):  # trained on the grid: values are whole steps of the scale
        _, value, scale = kc.quantization.quantized_weights(layer)[0]
        np.testing.assert_allclose(value / scale, np.round(value / scale), atol=1e-3)
    for layer in inside:
        assert float(layer.input_range.range_max.numpy()) != 6.0  # its input range was learned

    _on_tensorflow(keras3)
    artifact = kc.export(qat, str(tmp_path / "transformer.tflite"), sample_data=ids[:32], compare_speed=False)
    kernels = sum(int(np.prod(layer.layer.kernel.shape)) for layer in weight_quantized_layers(qat))
    assert artifact.settings["int8_weights"]["parameters"] >= kernels  # every kernel stored int8
    assert _accuracy(artifact.load().predict, ids, labels) > qat_accuracy - 0.03
    # The attention's output projection, the feed-forward pair and the classifier run as int8
    # operations; the converter runs the query, key and value projections float, on their int8
    # kernels dequantized.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    connected = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    int8 = [op for op in connected if all(tensors[op["inputs"][i]]["dtype"] == np.int8 for i in (0, 1))]
    assert len(connected) == 8 and len(int8) == 5
    onnx = kc.export(qat, str(tmp_path / "transformer.onnx"), sample_data=ids[:32], compare_speed=False)
    assert onnx.settings["quantized_weights"] == 8 and onnx.settings["requantized_channels"] == 0


def test_blocks_quantized_inside_save_load_and_export_with_their_trained_scales(keras3, tmp_path):
    model = two_blocks()
    ids, labels = _tokens()
    float_inside = r"stay float.*: embedding\w*, block\w*/multi_head_attention\w*/softmax"
    with pytest.warns(UserWarning, match=float_inside):
        qat = kc.quantization.quantize_aware(model)
    # Two blocks of 4 projections and 2 feed-forward layers, the attention between them, the classifier.
    assert quantized_kernel_count(qat) == 17
    assert len({variable.path for variable in qat.weights}) == len(qat.weights)
    _fit(qat, ids, labels, epochs=1)
    qat.save(str(tmp_path / "blocks.keras"))
    loaded = kc.load_model(str(tmp_path / "blocks.keras"), safe_mode=False)  # it names the tests' Block
    assert quantized_kernel_count(loaded) == 17
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), qat.predict(ids, verbose=0), atol=1e-6)

    _on_tensorflow(keras3)
    onnx = kc.export(qat, str(tmp_path / "blocks.onnx"), sample_data=ids[:32], compare_speed=False)
    # Every kernel behind DequantizeLinear on the grid it trained on: none had to be requantized.
    assert onnx.settings["quantized_weights"] == 17 and onnx.settings["requantized_channels"] == 0
    tflite = kc.export(qat, str(tmp_path / "blocks.tflite"), sample_data=ids[:32], compare_speed=False)
    expected = qat.predict(ids, verbose=0).argmax(-1)
    for artifact in (onnx, tflite):
        assert np.mean(artifact.load().predict(ids).argmax(-1) == expected) > 0.95


def test_an_activation_int8_kernels_cannot_fuse_runs_after_the_quantized_output(keras3):
    import keras

    class Gelu(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(8, activation="gelu")

        def call(self, inputs):
            return self.inner(inputs)

    inputs = keras.Input((8,))
    model = keras.Model(inputs, Gelu(name="gelu_block")(inputs))
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = kc.quantization.quantize_aware(model)
    (wrapper,) = weight_quantized_layers(qat)
    assert wrapper.activation.__name__ == "gelu" and wrapper.layer.activation.__name__ == "linear"
    assert model.layers[1].inner.activation.__name__ == "gelu"  # the user's layer keeps its own
    qat(x, training=True)  # the ranges start from this batch
    np.testing.assert_allclose(qat.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05)
    copy = type(wrapper).from_config(wrapper.get_config())
    assert copy.activation.__name__ == "gelu" and copy.quantize_io


def test_a_layer_the_copy_shares_with_the_users_model_stays_the_users(keras3):
    import keras

    class Holder(keras.layers.Layer):  # its config holds the layer itself, so copies share it
        def __init__(self, inner=None, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner or keras.layers.Dense(4, activation="gelu")

        def call(self, inputs):
            return self.inner(inputs)

        def get_config(self):
            return {**super().get_config(), "inner": self.inner}

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Holder(name="holder")(inputs)))
    shared = model.get_layer("holder").inner
    with pytest.warns(UserWarning, match=r"stay float.*: holder\."):
        qat = kc.quantization.quantize_aware(model)
    assert all(layer.layer is not shared for layer in weight_quantized_layers(qat))
    assert shared.activation.__name__ == "gelu"  # not split off the user's layer


def test_files_naming_the_replaced_layer_by_its_earlier_name_load(keras3, tmp_path):
    import json
    import zipfile

    import keras

    inputs = keras.Input((3, 8))
    model = keras.Model(inputs, keras.layers.MultiHeadAttention(2, 4, name="att")(inputs, inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = kc.quantization.quantize_aware(model)
    path, old = str(tmp_path / "new.keras"), str(tmp_path / "old.keras")
    qat.save(path)
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(old, "w") as renamed:
        for item in new.infolist():  # as the first release with shrunk layers wrote them
            data = new.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(json.loads(data)).replace('"Replaced"', '"Resized"').replace(
                    '"keras_compress>Replaced"', '"keras_compress>Resized"').encode()
                assert b"Resized" in data
            renamed.writestr(item, data)
    x = np.random.default_rng(0).random((4, 3, 8), dtype="float32")
    np.testing.assert_allclose(kc.load_model(old).predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)


def test_strict_names_the_layers_left_float_inside_custom_layers(keras3):
    with pytest.raises(QuantizationError, match="stay float") as error:
        kc.quantization.quantize_aware(two_blocks(), strict=True)
    assert [name for name in error.value.layers if re.fullmatch(r"block\w*/layer_normalization\w*", name)]
