import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import keras_compress as kc
from conftest import compile_classifier, fit_pruned, int8_weight_arrays
from keras_compress.demo import digits_student
from models import quantizable_cnn, reloaded, small_cnn

quantization = kc.quantization


def fake_quantized_zeros(model):
    """Fraction of zeros in every quantized kernel, as the model computes with them."""
    return {layer.name: float(np.mean(value == 0)) for layer in model.layers
            for variable, value, _ in quantization.quantized_weights(layer) if "kernel" in variable.name}


def test_quantize_aware_copies_the_model_and_quantizes_every_layer(keras_flavour, digits):
    model = quantizable_cnn(keras=keras_flavour)
    (x, y), _ = digits
    compile_classifier(model).fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)  # BN statistics
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every layer is quantizable: no warning
        qat = quantization.quantize_aware(model)
    assert quantization.is_quantize_aware(qat) and not quantization.is_quantize_aware(model)
    assert {layer.name for layer in qat.layers} >= {"quant_conv_a", "quant_logits"}
    (variable, value, scale), = quantization.quantized_weights(qat.get_layer("quant_conv_a"))
    np.testing.assert_array_equal(np.asarray(variable), np.asarray(model.get_layer("conv_a").kernel))
    assert variable is not model.get_layer("conv_a").kernel
    levels = value / scale  # per output channel, on the symmetric int8 grid
    assert scale.shape == (16,) and np.abs(levels - np.round(levels)).max() < 1e-3
    assert np.abs(levels).max() <= 127 + 1e-3
    (_, dense_value, dense_scale), = quantization.quantized_weights(qat.get_layer("quant_logits"))
    assert dense_scale.size == 1  # Dense: one step for the whole kernel


def test_keras3_batch_normalization_folds_into_the_convolution_before_it(keras3, digits):
    layers = keras3.layers
    model = keras3.Sequential([
        keras3.Input((8, 8, 1)), layers.Conv2D(4, 3, use_bias=False, name="conv"),
        layers.BatchNormalization(name="bn"), layers.ReLU(name="relu"),
        layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
        layers.BatchNormalization(name="bn_2"), layers.ReLU(6.0), layers.Flatten(), layers.Dense(10)],
        name="folding")
    (x, y), _ = digits
    compile_classifier(model).fit(x, y, epochs=1, batch_size=64, verbose=0)
    qat = quantization.quantize_aware(model)
    names = [layer.name for layer in qat.layers]
    assert "bn" not in names and "bn_2" not in names and "quant_depthwise" in names
    compile_classifier(qat).fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    for conv_name, norm_name, channels in (("conv", "bn", 4), ("depthwise", "bn_2", 8)):
        wrapper = qat.get_layer(f"quant_{conv_name}")
        norm = wrapper.batch_norm
        np.testing.assert_array_equal(np.asarray(norm.moving_variance),  # frozen while training
                                      np.asarray(model.get_layer(norm_name).moving_variance))
        factor = np.asarray(norm.gamma) / np.sqrt(np.asarray(norm.moving_variance) + norm.epsilon)
        kernel = np.asarray(wrapper.layer.kernel)
        folded = kernel * factor.reshape(kernel.shape[-2:]) if conv_name == "depthwise" else kernel * factor
        (_, value, scale), = quantization.quantized_weights(wrapper)
        assert scale.size == channels and np.abs(value - folded).max() <= scale.max() / 2 + 1e-6


def test_keras3_graph_cases_keep_the_model_s_outputs(keras3):
    """A convolution read by its BatchNormalization and as a model output is not folded; a
    layer called twice gets a quantizer per call; dict outputs keep their keys."""
    keras3.utils.set_random_seed(0)
    layers = keras3.layers
    image = keras3.Input((6, 6, 3), name="image")
    conv = layers.Conv2D(2, 3, name="conv")(image)
    norm = layers.BatchNormalization(name="bn")
    shared = layers.Dense(4, activation="relu", name="shared")
    vector = layers.Flatten()(norm(conv))
    model = keras3.Model(image, {"conv": conv, "twice": shared(shared(layers.Dense(4)(vector)))})
    norm.set_weights([np.full(2, 2.0, "float32"), np.ones(2, "float32"), np.full(2, 0.5, "float32"),
                      np.full(2, 4.0, "float32")])
    with pytest.warns(UserWarning, match="stay float .*: bn"):
        qat = quantization.quantize_aware(model)
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype("float32")
    want, got = model.predict(x, verbose=0), qat.predict(x, verbose=0)
    assert sorted(got) == ["conv", "twice"]
    # Within int8 steps of the float model (ranges start at [-6, 6], steps add up over five
    # quantized layers); the BatchNormalization folded wrongly into "conv" would be off by half.
    for key, tolerance in (("conv", 0.1), ("twice", 0.25)):
        assert np.abs(want[key] - got[key]).max() <= tolerance * np.abs(want[key]).max(), key


def test_keras3_a_fused_softmax_is_split_off_so_its_dense_layer_runs_in_int8(keras3, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(),
                               keras3.layers.Dense(10, activation="softmax", name="probabilities")])
    qat = quantization.quantize_aware(model)
    assert [type(layer).__name__ for layer in qat.layers][-2:] == ["Activation", "QuantizeActivations"]
    (x, y), _ = digits
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    artifact = kc.export(qat, str(tmp_path / "softmax.tflite"), compare_speed=False)
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    dense, = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert tensors[dense["inputs"][1]]["dtype"] == np.int8


def test_dense_layers_on_feature_maps_run_in_int8(keras_flavour, digits, tmp_path):
    """ConvNeXt's pointwise Dense layers read rank-4 tensors: quantized, they run on rows, so
    TFLite makes them int8 FULLY_CONNECTED ops (a batched matrix product, or tf_keras' tensordot
    on the dynamic batch size, would stay float)."""
    from ai_edge_litert.interpreter import Interpreter

    keras_flavour.utils.set_random_seed(0)
    layers = keras_flavour.layers
    model = compile_classifier(keras_flavour.Sequential([
        keras_flavour.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.Dense(16, activation="relu", name="pointwise"), layers.Dense(8, name="pointwise_back"),
        layers.Flatten(), layers.Dense(10)], name="pointwise_cnn"))
    (x, y), (x_test, _) = digits
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    qat = compile_classifier(quantization.quantize_aware(model))
    qat.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert qat.get_layer("quant_pointwise").output.shape == (None, 8, 8, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifact = kc.export(qat, str(tmp_path / "pointwise.tflite"), compare_speed=False, sample_data=x_test)
    assert not [w for w in caught if "kept" in str(w.message)]
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    ops = interpreter._get_ops_details()
    kernels = [op for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(kernels) == 4 and all(tensors[op["inputs"][1]]["dtype"] == np.int8 for op in kernels)
    assert not [op for op in ops if op["op_name"] == "BATCH_MATMUL"]


def test_an_average_pool_feeding_a_concatenation_exports_to_int8(keras_flavour, digits, tmp_path):
    """DenseNet's transitions: TFLite's average pool needs one scale on both sides."""
    from ai_edge_litert.interpreter import Interpreter

    keras_flavour.utils.set_random_seed(0)
    layers = keras_flavour.layers
    inputs = keras_flavour.Input((8, 8, 1))
    pooled = layers.AveragePooling2D(2)(layers.Conv2D(8, 3, padding="same")(inputs))
    branch = layers.Conv2D(8, 3, padding="same", use_bias=False)(layers.ReLU()(pooled))
    joined = layers.Concatenate()([pooled, branch])
    model = compile_classifier(keras_flavour.Model(inputs, layers.Dense(10)(layers.Flatten()(joined))))
    (x, y), (x_test, _) = digits
    model.fit(x[:256], y[:256], epochs=1, verbose=0)
    qat = compile_classifier(quantization.quantize_aware(model))
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    artifact = kc.export(qat, str(tmp_path / "pool.tflite"), compare_speed=False, sample_data=x_test)
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    ops = {op["op_name"]: op for op in interpreter._get_ops_details()}
    assert tensors[ops["AVERAGE_POOL_2D"]["outputs"][0]]["dtype"] == np.int8
    assert artifact.settings["int8_weights"]["tensors"] == 3


def test_keras3_untrained_batch_normalization_statistics_are_flagged(keras3):
    with pytest.warns(UserWarning, match="BatchNormalization layers bn_a of 'quantizable_cnn' hold their "
                                         "initial statistics .* Train the float model first"):
        quantization.quantize_aware(quantizable_cnn(keras=keras3))


def test_keras3_separable_convolutions_run_as_two_int8_convolutions(keras3, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    keras3.utils.set_random_seed(0)
    layers = keras3.layers
    model = compile_classifier(keras3.Sequential([
        keras3.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.SeparableConv2D(16, 3, depth_multiplier=2, padding="same", use_bias=False, name="separable",
                               pointwise_regularizer=keras3.regularizers.L2(1e-4)),
        layers.BatchNormalization(momentum=0.9, name="bn"), layers.ReLU(), layers.Flatten(),
        layers.Dense(10)], name="separable_cnn"))
    (x, y), (x_test, _) = digits
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    qat = compile_classifier(quantization.quantize_aware(model))
    names = [layer.name for layer in qat.layers]
    assert "quant_separable_depthwise" in names and "quant_separable_pointwise" in names and "bn" not in names
    qat.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    want, got = model.predict(x_test, verbose=0), qat.predict(x_test, verbose=0)
    assert np.mean(want.argmax(-1) == got.argmax(-1)) >= 0.9  # the same model, on the int8 grid
    artifact = kc.export(qat, str(tmp_path / "separable.tflite"), compare_speed=False, sample_data=x_test)
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    kernels = [op for op in interpreter._get_ops_details()
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(kernels) == 4 and all(tensors[op["inputs"][1]]["dtype"] == np.int8 for op in kernels)
    assert len(qat.losses) == len(model.losses) == 1  # the pointwise kernel's regularization
    path = str(tmp_path / "separable.keras")
    qat.save(path)
    np.testing.assert_allclose(kc.load_model(path).predict(x_test[:16], verbose=0),
                               qat.predict(x_test[:16], verbose=0), atol=1e-6)


def test_keras3_a_shared_or_frozen_separable_convolution_stays_so(keras3):
    layers = keras3.layers
    inputs = keras3.Input((8, 8, 4))
    shared, frozen = (layers.SeparableConv2D(4, 3, padding="same") for _ in range(2))
    frozen.trainable = False
    model = keras3.Model(inputs, frozen(shared(shared(inputs))))
    qat = quantization.quantize_aware(model)
    kernels = [layer for layer in qat.layers if type(layer).__name__ == "QuantizeWeights"]
    assert len(kernels) == 4  # one depthwise and one pointwise convolution per separable layer
    assert sum(np.prod(w.shape) for w in qat.trainable_weights) == \
        sum(np.prod(w.shape) for w in model.trainable_weights)


def test_layers_tfmot_cannot_quantize_stay_float_with_one_warning():
    model = small_cnn()  # BatchNormalization after a ReLU: no tfmot pattern for it
    with pytest.warns(UserWarning, match="stay float.*bn_a") as record:
        qat = quantization.quantize_aware(model)
    assert len([w for w in record if "stay float" in str(w.message)]) == 1
    assert isinstance(qat.get_layer("bn_a"), keras.layers.BatchNormalization)
    with pytest.raises(kc.QuantizationError, match="bn_a.*strict=False") as raised:
        quantization.quantize_aware(model, strict=True)
    assert "bn_a" in raised.value.layers and isinstance(raised.value, ValueError)


def test_tf_keras_squeeze_excite_products_run_in_int8(digits, tmp_path):
    """tfmot's registry does not know Multiply: its output is quantized all the same, so the
    convolution after a squeeze-excite product reads int8 and runs in int8. The swish reduction
    (EfficientNet's) gets a range before its activation, which TFLite does not fuse."""
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    features = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    squeezed = layers.Conv2D(4, 1, activation="swish")(layers.GlobalAveragePooling2D(keepdims=True)(features))
    excited = layers.Multiply()([features, layers.Conv2D(8, 1, activation="sigmoid")(squeezed)])
    outputs = layers.Dense(10)(layers.Flatten()(layers.Conv2D(8, 3, name="after")(excited)))
    model = compile_classifier(keras.Model(inputs, outputs))
    (x, y), (x_test, _) = digits
    model.fit(x[:256], y[:256], epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing stays float
        qat = compile_classifier(quantization.quantize_aware(model))
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    artifact = kc.export(qat, str(tmp_path / "excite.tflite"), compare_speed=False, sample_data=x_test)
    assert artifact.settings["int8_weights"]["tensors"] == quantization.qat.quantized_kernel_count(qat) == 5
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    assert all(tensors[op["inputs"][0]]["dtype"] == np.int8 for op in interpreter._get_ops_details()
               if op["op_name"] == "CONV_2D")
    for suffix in (".keras", ""):  # and a SavedModel
        np.testing.assert_allclose(reloaded(qat, tmp_path / suffix, suffix).predict(x_test, verbose=0),
                                   qat.predict(x_test, verbose=0), atol=1e-6)


def test_tf_keras_kernels_before_a_relu_layer_train_on_the_int8_grid(digits, tmp_path):
    """tfmot alone turns off the whole quantization of a Conv2D or Dense layer that a ReLU layer
    follows, kernel included; here the kernel is quantized and only the output between the two is not."""
    layers = keras.layers
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), layers.Conv2D(8, 3, name="conv"), layers.ReLU(), layers.Flatten(),
        layers.Dense(16, name="hidden"), layers.Activation("relu"), layers.Dense(10, name="logits")]))
    qat = compile_classifier(quantization.quantize_aware(model))
    assert {name: len(quantization.quantized_weights(qat.get_layer(f"quant_{name}")))
            for name in ("conv", "hidden", "logits")} == {"conv": 1, "hidden": 1, "logits": 1}
    (x, y), (x_test, _) = digits
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    artifact = kc.export(qat, str(tmp_path / "relu.tflite"), compare_speed=False, sample_data=x_test)
    assert artifact.settings["int8_weights"]["tensors"] == 3
    np.testing.assert_allclose(reloaded(qat, tmp_path).predict(x_test, verbose=0),
                               qat.predict(x_test, verbose=0), atol=1e-6)


def _output_range(qat):
    variables = {w.name.split("/")[-1]: w.numpy() for w in qat.get_layer("quant_dense").non_trainable_weights}
    return float(variables["post_activation_min:0"]), float(variables["post_activation_max:0"])


def test_tf_keras_activation_ranges_start_from_the_first_training_batch(tmp_path):
    """From tfmot's [-6, 6] at 0.1% a step, small activations round to zero for hundreds of steps
    (untrained, EfficientNetB0's gradients overflowed in its BatchNormalizations and one step
    wrote NaN): the first batch sets each range, later ones move it as a moving average."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32") * 0.01
    outputs = model(x).numpy()
    fresh = quantization.quantize_aware(model)
    for qat in (fresh, reloaded(fresh, tmp_path)):  # as built, and as loaded from a file
        assert _output_range(qat) == (-6.0, 6.0)
        qat.compile(keras.optimizers.SGD(0.0), "mse")
        qat.predict(x * 100, verbose=0)  # inference leaves ranges alone
        qat.train_on_batch(x, np.zeros((8, 3)))
        first = _output_range(qat)
        np.testing.assert_allclose(first, (outputs.min(), outputs.max()), rtol=0.05)
    qat.train_on_batch(x * 100, np.zeros((8, 3)))  # zero bias: a range 100 times as wide
    np.testing.assert_allclose(_output_range(qat), 1.099 * np.array(first), rtol=0.05)


def test_tf_keras_qat_files_saved_before_swish_input_ranges_still_load():
    """A swish activation gets an input range now; a wrapper config without the flag (a file
    saved before) builds the variables it was saved with."""
    qat = quantization.quantize_aware(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="swish", name="dense")]))
    wrapper = qat.get_layer("quant_dense")

    def ranges(layer):
        return sorted(w.name.split("/")[-1].split(":")[0] for w in layer.weights if "activation_" in w.name)

    assert ranges(wrapper) == ["post_activation_max", "post_activation_min", "pre_activation_max",
                               "pre_activation_min"]
    config = wrapper.get_config()
    del config["swish_input_ranges"]
    old = type(wrapper).from_config(config)
    old.build((None, 4))
    assert ranges(old) == ["post_activation_max", "post_activation_min"]


def test_tf_keras_a_sparse_convolution_read_by_a_concatenation_keeps_its_zeros(digits):
    """Its output is left to the concatenation's range, with the scheme's own weight quantizer."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    first = layers.Conv2D(8, 3, padding="same", activation="relu", name="first")(inputs)
    joined = layers.Concatenate()([first, layers.Conv2D(8, 3, padding="same", name="branch")(first)])
    model = compile_classifier(keras.Model(inputs, layers.Dense(10)(layers.Flatten()(joined))))
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            kernel = layer.kernel.numpy()
            kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0
            layer.kernel.assign(kernel)
    qat = compile_classifier(quantization.quantize_aware(model))
    assert not qat.get_layer("quant_branch")._quantize_activations  # no range of its own
    (x, y), _ = digits
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    assert fake_quantized_zeros(qat)["quant_branch"] >= 0.5


def test_tf_keras_an_embedding_is_not_wrapped_for_its_output():
    """tfmot would quantize the token ids before a wrapped Embedding (and drop its mask)."""
    layers = keras.layers
    model = keras.Sequential([keras.Input((5,)), layers.Embedding(100, 4, name="embedding"),
                              layers.GlobalAveragePooling1D(), layers.Dense(2)])
    with pytest.warns(UserWarning, match="stay float.*embedding"):
        qat = quantization.quantize_aware(model)
    assert type(qat.get_layer("embedding")) is layers.Embedding
    ids = np.array([[1, 2, 97, 98, 99]], dtype="float32")
    np.testing.assert_allclose(qat.predict(ids, verbose=0), model.predict(ids, verbose=0), atol=0.1)


class _Scale(keras.layers.Layer):
    """A custom layer registered nowhere, as tf_keras ConvNeXt's LayerScale."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=input_shape[-1:], initializer="ones")

    def call(self, inputs):
        return inputs * self.gamma


def test_tf_keras_a_custom_layer_registered_nowhere_stays_float():
    """tfmot rebuilds the model from its config, which needs the custom layer's class."""
    layers = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(8, 3), _Scale(name="scale"),
                              layers.Flatten(), layers.Dense(10)])
    with pytest.warns(UserWarning, match="stay float.*: scale."):
        qat = quantization.quantize_aware(model)
    assert type(qat.get_layer("quant_scale").layer) is _Scale
    assert not quantization.quantized_weights(qat.get_layer("quant_scale"))


class _Normalize(keras.layers.Layer):
    """A custom layer branching in Python on a tensor: it runs only through autograph."""

    def call(self, inputs):
        if tf.reduce_max(inputs) > 1.0:
            return inputs / tf.reduce_max(inputs)
        return inputs


def test_tf_keras_a_custom_layer_that_needs_autograph_trains_in_its_wrapper(digits):
    """The quantize wrapper skips autograph (half the time of quantizing a model), except around a
    custom layer, whose call may need it."""
    layers = keras.layers
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), layers.Conv2D(8, 3), _Normalize(name="normalize"), layers.Flatten(),
        layers.Dense(10)]))
    with pytest.warns(UserWarning, match="stay float.*: normalize."):
        qat = compile_classifier(quantization.quantize_aware(model))
    assert type(qat.get_layer("quant_normalize").layer) is _Normalize
    (x, y), (x_test, _) = digits
    qat.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert np.isfinite(qat.predict(x_test[:8], verbose=0)).all()


def test_tf_keras_quantize_aware_reads_the_model_and_changes_nothing_in_it():
    """The layout transform reads the caller's model itself, not a clone: tfmot marks it (and
    tf_keras every model nested in it) for legacy configs, which must not stay behind. A TF op
    with a list argument (`tf.pad`) is in the graph too (tfmot lists the list among the inputs)."""
    layers = keras.layers
    block = keras.Sequential([keras.Input((6, 6, 8)), layers.Conv2D(8, 3, padding="same")], name="block")
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, name="conv")(inputs)
    x = tf.pad(block(x), [[0, 0], [1, 1], [1, 1], [0, 0]])
    model = keras.Model(inputs, layers.Dense(10)(layers.Flatten()(layers.Conv2D(4, 3)(x))))
    config = model.get_config()
    with pytest.warns(UserWarning, match="stay float"):
        qat = quantization.quantize_aware(model)
    assert quantization.qat.quantized_kernel_count(qat) == 3  # the nested model's kernel stays float
    assert model.get_config() == config and "use_legacy_config" not in block.__dict__
    assert "module" in block.get_config()["layers"][0]


def test_tf_keras_a_model_tfmot_knows_no_layer_of_is_refused():
    model = keras.Sequential([keras.Input((4,)), _Normalize(name="normalize")])
    with pytest.raises(kc.KerasCompressError, match="no layer tfmot can quantize"):
        quantization.quantize_aware(model)


def test_a_layer_left_float_hands_int8_to_the_layer_after_it(digits, tmp_path):
    """tfmot quantizes no input but the model's: after an activation it does not know, the
    convolution read float and the TFLite converter kept it float (tf_keras ConvNeXt kept all 55
    kernels float behind its LayerNormalizations). The float layer's output is quantized now."""
    layers = keras.layers
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), layers.Conv2D(8, 3, name="conv_a"),
        layers.Activation("hard_sigmoid", name="hard"), layers.Conv2D(8, 3, name="conv_b"), layers.Flatten(),
        layers.Dense(10)]))
    with pytest.warns(UserWarning, match="stay float.*: hard."):
        qat = compile_classifier(quantization.quantize_aware(model))
    (x, y), (x_test, _) = digits
    qat.fit(x[:256], y[:256], epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no kernel kept float
        artifact = kc.export(qat, str(tmp_path / "hard.tflite"), compare_speed=False, sample_data=x_test)
    assert artifact.settings["int8_weights"]["tensors"] == 3


@pytest.mark.parametrize("make, message", [
    (lambda m: kc.pruning.prune(m, kc.pruning.ConstantSparsity(0.5)), "pruning wrappers"),
    (lambda m: quantization.quantize_aware(m), "already quantization-aware"),
])
def test_models_that_cannot_be_made_quantization_aware_are_refused(make, message, keras_flavour):
    model = make(quantizable_cnn(keras=keras_flavour))
    with pytest.raises(kc.KerasCompressError, match=message):
        quantization.quantize_aware(model)


def test_a_model_quantized_by_keras_itself_is_refused(keras3):
    model = quantizable_cnn(keras=keras3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras names each layer it cannot quantize
        model.quantize("int8")
    with pytest.raises(kc.KerasCompressError, match="post-training quantized with Keras' model.quantize.*"
                                                    "logits.*cannot be trained with fake quantization"):
        quantization.quantize_aware(model)


def test_bad_preserve_sparsity_is_refused(keras_flavour):
    with pytest.raises(ValueError, match="preserve_sparsity must be"):
        quantization.quantize_aware(quantizable_cnn(keras=keras_flavour), preserve_sparsity="yes")
    with pytest.raises(kc.KerasCompressError, match="preserve_sparsity=True, but model .* is dense"):
        quantization.quantize_aware(quantizable_cnn(keras=keras_flavour), preserve_sparsity=True)


def test_keras3_layers_left_float_are_named_in_one_warning(keras3):
    layers = keras3.layers
    inputs = keras3.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn_after_relu")(x)
    x = layers.LayerNormalization(name="norm")(layers.Flatten()(x))
    model = keras3.Model(inputs, layers.Dense(10, name="logits")(x), name="mixed")
    with pytest.warns(UserWarning, match="stay float .*: bn_after_relu, norm\\.") as record:
        qat = quantization.quantize_aware(model)
    assert len([w for w in record if "stay float" in str(w.message)]) == 1
    assert type(qat.get_layer("bn_after_relu")).__name__ == "BatchNormalization"
    with pytest.raises(kc.QuantizationError, match="bn_after_relu, norm.*strict=False") as raised:
        quantization.quantize_aware(model, strict=True)
    assert raised.value.layers == ("bn_after_relu", "norm")


@pytest.fixture(scope="module")
def pruned_qat(digits, keras_flavour):
    """A 60%-sparse CNN after two QAT epochs, and the sparsity it had before QAT."""
    pruned = kc.pruning.prune(quantizable_cnn(keras=keras_flavour),
                              kc.pruning.ConstantSparsity(0.6, begin_step=0))
    fit_pruned(pruned, digits)
    stripped = kc.pruning.strip(pruned)
    before = {row["layer"]: row["sparsity"] for row in kc.pruning.sparsity(stripped).layers}
    qat = compile_classifier(quantization.quantize_aware(stripped))
    (x, y), _ = digits
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return qat, before


def test_quantization_aware_training_keeps_a_pruned_model_sparse(pruned_qat):
    qat, before = pruned_qat
    after = fake_quantized_zeros(qat)
    assert after and all(after[f"quant_{name}"] >= before[name] - 0.01
                         for name in ("conv_a", "conv_b", "dense_a", "logits"))


def _int8_kernel_zeros(path):
    """Fraction of zeros in each int8 weight tensor (2-D and up) of an ONNX or TFLite file."""
    return sorted(float(np.mean(a == 0)) for a in int8_weight_arrays(path))


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_pruned_qat_model_exports_its_zeros(pruned_qat, digits, tmp_path, suffix):
    qat, before = pruned_qat
    artifact = kc.export(qat, str(tmp_path / f"pruned_qat{suffix}"), sample_data=digits[1][0][:64],
                         compare_speed=False)
    zeros = _int8_kernel_zeros(artifact.path)
    assert len(zeros) == 4 and min(zeros) >= min(before.values()) - 0.01, (zeros, before)


def test_preserve_sparsity_false_lets_zeros_move(digits, keras_flavour):
    pruned = kc.pruning.prune(quantizable_cnn(keras=keras_flavour),
                              kc.pruning.ConstantSparsity(0.6, begin_step=0))
    fit_pruned(pruned, digits)
    qat = compile_classifier(quantization.quantize_aware(kc.pruning.strip(pruned), preserve_sparsity=False))
    (x, y), _ = digits
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(qat)["quant_dense_a"] < 0.3


def _check_reload(qat, path, digits):
    qat.save(path)
    loaded = kc.load_model(path)
    x = digits[1][0][:32]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
    assert quantization.is_quantize_aware(loaded)


@pytest.mark.parametrize("which", ["qat", "pruned qat"])
def test_qat_models_save_and_load_without_tfmot_scopes(qat_pair, pruned_qat, digits, tmp_path, which):
    _check_reload(qat_pair[1] if which == "qat" else pruned_qat[0], str(tmp_path / "model.keras"), digits)


def test_tf_keras_qat_models_save_and_load_as_saved_models(float_and_qat, digits, tmp_path):
    _check_reload(float_and_qat[1], str(tmp_path / "saved_model"), digits)


def test_a_reloaded_pruned_qat_model_keeps_its_zeros_while_training(pruned_qat, digits, tmp_path):
    qat, before = pruned_qat
    loaded = compile_classifier(reloaded(qat, tmp_path))
    (x, y), _ = digits
    loaded.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(loaded)["quant_dense_a"] >= before["dense_a"] - 0.01


def test_a_distilled_student_can_be_quantization_aware(qat_pair, digits, tmp_path, keras_flavour):
    teacher, _ = qat_pair
    student = quantization.quantize_aware(digits_student(keras=keras_flavour))
    distiller = kc.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras_flavour.optimizers.Adam(1e-3), metrics=["accuracy"],
                      student_loss_fn=keras_flavour.losses.SparseCategoricalCrossentropy(from_logits=True),
                      temperature=4.0, alpha=0.5)
    (x, y), (x_test, y_test) = digits
    distiller.fit(x, y, epochs=2, batch_size=64, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    loaded = kc.load_model(path)
    assert quantization.is_quantize_aware(loaded)
    np.testing.assert_allclose(loaded.predict(x_test[:16], verbose=0),
                               distiller.student.predict(x_test[:16], verbose=0), atol=1e-5)
    assert os.path.getsize(path) > 0


def _count_rebuilds(monkeypatch):
    """Counts the rebuilds of a tf_keras model: clones and functional models from configs."""
    calls = []
    clone = keras.models.clone_model
    from_config = keras.Model.__dict__["from_config"].__func__
    monkeypatch.setattr(keras.models, "clone_model", lambda *a, **k: (calls.append(1), clone(*a, **k))[1])
    monkeypatch.setattr(keras.Model, "from_config",
                        classmethod(lambda cls, *a, **k: (calls.append(1), from_config(cls, *a, **k))[1]))
    return calls


def test_quantizability_comes_from_the_graph_not_one_clone_per_refused_layer(monkeypatch):
    import tf_keras as keras
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i in range(6):  # BatchNormalization after an activation: tfmot refuses all six
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    calls = _count_rebuilds(monkeypatch)
    with pytest.warns(UserWarning, match="bn_0, bn_1, bn_2, bn_3, bn_4, bn_5"):
        kc.quantization.quantize_aware(model)
    assert len(calls) == 2  # tfmot's layout transform, then the wrappers


@pytest.mark.slow
@pytest.mark.parametrize("name", ["DenseNet121", "NASNetMobile"])
def test_large_applications_quantize_in_two_rebuilds(monkeypatch, name):
    """tfmot's `quantize_apply` rebuilt the model five times; `benchmarks/quantize_aware.py` has
    the times."""
    model = getattr(keras.applications, name)(weights=None, input_shape=(96, 96, 3), classes=10)
    calls = _count_rebuilds(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = kc.quantization.quantize_aware(model)
    assert kc.quantization.is_quantize_aware(qat) and len(calls) == 2


def test_a_frozen_sparse_model_gets_the_sparsity_preserving_scheme(float_and_qat, digits):
    model = keras.models.clone_model(float_and_qat[0])
    model.set_weights([np.where(np.abs(w) < np.quantile(np.abs(w), 0.5), 0, w) if w.ndim >= 2 else w
                       for w in float_and_qat[0].get_weights()])
    model.trainable = False  # frozen: its kernels are not trainable weights
    qat = quantization.quantize_aware(model)
    assert not [layer.name for layer in model.layers if layer.weights and layer.trainable]  # still frozen
    qat.trainable = True
    (x, y), _ = digits
    compile_classifier(qat).fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(qat)["quant_dense_a"] >= 0.49  # the zeros did not move


def test_float_token_ids_reach_the_embedding_exact_in_qat_and_its_int8_file(keras_flavour, tmp_path):
    # Token ids usually come in as float32 (a plain keras.Input): rounded onto an 8-bit grid,
    # id 1 (the signal) would become 0 or 2, and the model would guess.
    # Before quantize_aware skipped inputs that feed an Embedding, Keras 3 fell to chance here.
    rng = np.random.default_rng(0)
    x = rng.integers(2, 500, size=(1200, 12)).astype("float32")
    y = rng.integers(0, 2, size=1200)
    x[y == 1, :4] = 1.0  # the first four tokens say "1"
    layers = keras_flavour.layers
    model = keras_flavour.Sequential([keras_flavour.Input((12,)), layers.Embedding(500, 8, name="tokens"),
                                      layers.GlobalAveragePooling1D(), layers.Dense(2, name="logits")])
    compile_classifier(model).fit(x[:1000], y[:1000], epochs=8, batch_size=32, verbose=0)
    float_accuracy = np.mean(model.predict(x[1000:], verbose=0).argmax(-1) == y[1000:])
    assert float_accuracy > 0.9
    qat = quantization.quantize_aware(model)
    qat_accuracy = np.mean(qat.predict(x[1000:], verbose=0).argmax(-1) == y[1000:])
    assert qat_accuracy > float_accuracy - 0.03  # not chance: the ids were not rounded
    artifact = kc.export(qat, str(tmp_path / "tokens.tflite"), sample_data=x[:32], compare_speed=False)
    assert np.mean(artifact.load().predict(x[1000:]).argmax(-1) == y[1000:]) > float_accuracy - 0.03


def test_an_int8_file_whose_weights_are_mostly_float_says_so(keras3, tmp_path):
    # (The TFLite converter quantizes the float layers' weights itself; the ONNX file keeps them float.)
    if keras3.backend.backend() == "jax":
        pytest.skip("on JAX the ONNX file comes from a TensorFlow-backend process, which cannot import a "
                    "layer class defined inside a test; the label is the same code on either backend")
    class OwnKernel(keras3.layers.Layer):  # a weight of its own, which no quantizer reaches
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 64))

        def call(self, inputs):
            return keras3.ops.matmul(inputs, self.kernel)

    inputs = keras3.Input((64,))
    model = keras3.Model(inputs, keras3.layers.Dense(4, name="head")(OwnKernel(name="own")(inputs)))
    with pytest.warns(UserWarning, match="stay float.*: own"):
        qat = quantization.quantize_aware(model)
    x = np.random.default_rng(0).random((32, 64), dtype="float32")
    with pytest.warns(UserWarning, match=r"int8 in name only: 256 of its 4,352 weights \(5\.9%\)"):
        kc.export(qat, str(tmp_path / "block.onnx"), sample_data=x, compare_speed=False)
