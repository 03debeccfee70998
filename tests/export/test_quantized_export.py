import os
import warnings

import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx import numpy_helper

import keras_compress as kc
from conftest import compile_classifier
from keras_compress.export import speed as export_speed


@pytest.fixture(scope="module")
def calibration(digits):
    return digits[0][0][:128]


def float_size(model, tmp_path, suffix):
    return kc.export(model, str(tmp_path / f"float{suffix}")).size_bytes


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
@pytest.mark.parametrize("quantize, precision, max_ratio", [
    ("dynamic", "int8_dynamic", 0.7), ("static", "int8", 0.7), ("float16", "float16", 0.8)])
def test_post_training_quantization_shrinks_the_artifact_and_is_verified(
        float_and_qat, calibration, digits, tmp_path, suffix, quantize, precision, max_ratio):
    model, _ = float_and_qat
    extra = {"calibration_data": calibration} if quantize == "static" else {}
    artifact = kc.export(model, str(tmp_path / f"m{suffix}"), quantize=quantize, **extra)
    assert artifact.precision == precision and artifact.settings["quantize"] == quantize
    assert artifact.size_bytes < max_ratio * float_size(model, tmp_path, suffix)
    entry = artifact.parity["logits"]
    assert entry["top1_agreement"] >= 0.9 and entry["max_abs_diff"] > 0  # it really changed
    speed = artifact.settings["speed"]
    assert sorted(speed["latency_ms"]) == [1, 32] and min(speed["latency_ms"].values()) > 0
    assert min(speed["float32_latency_ms"].values()) > 0
    (_, _), (x_test, y_test) = digits
    accuracy = np.mean(artifact.load().predict(x_test).argmax(-1) == y_test)
    reference = np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert accuracy >= reference - 0.03


def test_static_onnx_records_its_anti_saturation_choice(float_and_qat, calibration, tmp_path):
    model, _ = float_and_qat
    artifact = kc.export(model, str(tmp_path / "m.onnx"), quantize="static", calibration_data=calibration,
                         calibrate_method="percentile", compare_speed=False)
    settings = artifact.settings
    assert settings["calibration_method"] == "percentile" and settings["calibration_rows"] == 128
    assert settings["reduce_range"] == (settings["reduce_range_reason"] == "CPU without VNNI")
    proto = onnx.load(artifact.path)
    assert any(node.op_type == "QuantizeLinear" for node in proto.graph.node)  # QDQ format
    assert "speed" not in settings


@pytest.mark.parametrize("make", [
    lambda x: tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(16),
    lambda x: (x[i:i + 16] for i in range(0, len(x), 16)),
    lambda x: [x[i:i + 16] for i in range(0, len(x), 16)],
])
def test_calibration_data_may_be_a_dataset_or_batches(float_and_qat, calibration, tmp_path, make):
    model, _ = float_and_qat
    artifact = kc.export(model, str(tmp_path / "m.tflite"), quantize="static",
                         calibration_data=make(calibration),
                         compare_speed=False)
    assert artifact.parity["logits"]["top1_agreement"] >= 0.9


def test_full_integer_tflite_can_take_and_give_int8(float_and_qat, calibration, tmp_path):
    model, _ = float_and_qat
    artifact = kc.export(model, str(tmp_path / "m.tflite"), quantize="static", calibration_data=calibration,
                         io="int8", compare_speed=False)
    runner = artifact.load()
    details = runner._runner.get_input_details()
    assert [d["dtype"] for d in details.values()] == [np.int8]
    assert artifact.settings["io"] == "int8" and artifact.parity["logits"]["top1_agreement"] >= 0.9


def test_a_quantized_artifact_slower_than_float_is_flagged(float_and_qat, tmp_path, monkeypatch):
    model, _ = float_and_qat
    # Per batch size, the quantized artifact is timed first: as fast at batch 1, twice as slow at 32.
    times = iter([np.full(20, 1e-3), np.full(20, 1e-3), np.full(20, 2e-3), np.full(20, 1e-3)])
    monkeypatch.setattr(export_speed, "latencies", lambda runner, inputs: next(times))
    with pytest.warns(UserWarning, match="runs slower than its float32 twin on this machine "
                                         "\\(batch 32: 2 ms vs 1 ms\\).*"
                                         "runs dynamically quantized convolutions as ConvInteger"):
        artifact = kc.export(model, str(tmp_path / "m.onnx"), quantize="dynamic")
    assert artifact.settings["speed"]["speedup_vs_float32"] == {1: 1.0, 32: 0.5}


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_dynamic_quantization_that_quantizes_nothing_says_so(tmp_path, suffix):
    import tf_keras as keras
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.ReLU(), keras.layers.Softmax()], name="tiny")
    with pytest.warns(UserWarning, match="quantized no weight of model 'tiny'.*is float32"):
        artifact = kc.export(tiny, str(tmp_path / f"tiny{suffix}"), quantize="dynamic")
    assert artifact.precision == "float32" and artifact.settings["int8_weights"]["tensors"] == 0
    assert "speed" not in artifact.settings and artifact.load().metadata["settings"]["precision"] == "float32"


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_quantized_artifact_counts_its_int8_weights(float_and_qat, calibration, tmp_path, suffix):
    model = float_and_qat[0]
    big = [w for w in model.weights if len(w.shape) >= 2]
    artifact = kc.export(model, str(tmp_path / f"m{suffix}"), quantize="static", calibration_data=calibration,
                         compare_speed=False)
    counts = artifact.settings["int8_weights"]
    assert counts["tensors"] == len(big) and counts["parameters"] == sum(int(np.prod(w.shape)) for w in big)
    assert f"quantized: {len(big)} int8 weight tensors" in str(artifact)


def agreement_and_accuracy(artifact, qat, digits):
    (_, _), (x_test, y_test) = digits
    want = qat.predict(x_test, verbose=0)
    got = artifact.load().predict(x_test)
    return (np.mean(want.argmax(-1) == got.argmax(-1)), np.mean(got.argmax(-1) == y_test),
            np.mean(want.argmax(-1) == y_test))


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_qat_models_export_to_int8_matching_the_keras_model(qat_pair, digits, tmp_path, suffix):
    _, qat = qat_pair
    artifact = kc.export(qat, str(tmp_path / f"qat{suffix}"), sample_data=digits[1][0])
    assert artifact.precision == "int8" and artifact.settings["quantize"] == "qat"
    agreement, accuracy, keras_accuracy = agreement_and_accuracy(artifact, qat, digits)
    assert agreement >= 0.995 and abs(accuracy - keras_accuracy) <= 0.005  # two test rows of 450


def test_qat_tflite_runs_every_convolution_and_dense_layer_in_int8(qat_pair, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model, qat = qat_pair
    artifact = kc.export(qat, str(tmp_path / "qat.tflite"), compare_speed=False)
    interpreter = Interpreter(model_path=artifact.path)
    tensors = interpreter.get_tensor_details()
    kernels = [op for op in interpreter._get_ops_details()
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(kernels) == 4
    for op in kernels:
        assert [tensors[i]["dtype"] for i in op["inputs"][:2]] == [np.int8, np.int8], op


def test_the_qat_tflite_digits_cnn_is_under_three_tenths_of_the_float_file(digits, tmp_path, keras3):
    """Keras 3 only: tfmot leaves the convolution after a float BatchNormalization float (0.41x)."""
    from keras_compress.demo import digits_cnn

    model = digits_cnn(keras=keras3)
    with pytest.warns(UserWarning, match="stay float"):  # its BatchNormalization follows a ReLU
        qat = kc.quantization.quantize_aware(model)
    (x, y), _ = digits
    compile_classifier(qat).fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)  # learns its ranges
    int8_file = kc.export(qat, str(tmp_path / "qat.tflite"), compare_speed=False, sample_data=x[:64])
    float_file = kc.export(model, str(tmp_path / "float.tflite"))
    assert int8_file.size_bytes <= 0.30 * float_file.size_bytes


def test_qat_onnx_keeps_weights_behind_symmetric_per_channel_qdq(qat_pair, tmp_path):
    model, qat = qat_pair
    artifact = kc.export(qat, str(tmp_path / "qat.onnx"))
    graph = onnx.load(artifact.path).graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    produced = {output: node for node in graph.node for output in node.output}
    weights = {"Conv": 0, "MatMul": 1, "Gemm": None}
    checked = 0
    for node in graph.node:
        if node.op_type in weights and node.input[1] in produced:
            dq = produced[node.input[1]]
            assert dq.op_type == "DequantizeLinear" and dq.input[0] in initializers
            levels, scale, zero = (initializers[name] for name in dq.input)
            axis = next(a.i for a in dq.attribute if a.name == "axis")
            assert levels.dtype == np.int8 and zero.dtype == np.int8 and not zero.any()
            assert scale.shape == (levels.shape[axis],) and np.abs(levels).max() <= 127
            checked += 1
    assert checked == artifact.settings["quantized_weights"] == 4
    assert artifact.settings["requantized_channels"] == 0  # every weight on its trained grid


def test_qat_onnx_avoids_saturating_int8_kernels_where_the_cpu_lacks_vnni(qat_pair, tmp_path):
    from keras_compress._environment import has_vnni

    _, qat = qat_pair
    artifact = kc.export(qat, str(tmp_path / "qat.onnx"))
    assert artifact.settings["full_range_int8_weights"] is True
    assert artifact.load().int8_kernels == has_vnni()
    assert kc.load(artifact.path, int8_kernels=True).int8_kernels is True


@pytest.mark.parametrize("kwargs, message", [
    (dict(quantize="dynamic"), "exports to int8 by itself"),
    (dict(path="qat.keras", quantize=None), None),
])
def test_qat_export_arguments(qat_pair, tmp_path, kwargs, message):
    _, qat = qat_pair
    kwargs = dict(kwargs)
    path = str(tmp_path / kwargs.pop("path", "qat.onnx"))
    if message:
        with pytest.raises(kc.ExportError, match=message):
            kc.export(qat, path, **kwargs)
        assert not os.path.exists(path)
    else:  # .keras keeps the QAT model as it is
        assert kc.export(qat, path, **kwargs).precision == "float32"


def test_static_tflite_feeds_calibration_rows_to_the_right_inputs(tmp_path):
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    image, vec = keras.Input((8, 8, 1), name="image"), keras.Input((4,), name="vec")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(image))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(8)(vec)])
    model = keras.Model([image, vec], keras.layers.Dense(10, name="scores")(x))
    rng = np.random.default_rng(0)
    data = {"image": rng.standard_normal((200, 8, 8, 1)).astype("float32"),
            "vec": rng.standard_normal((200, 4)).astype("float32")}
    artifact = kc.export(model, str(tmp_path / "two.tflite"), quantize="static", calibration_data=data,
                         compare_speed=False)
    assert artifact.precision == "int8" and artifact.parity["scores"]["top1_agreement"] >= 0.9


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_non_finite_calibration_data_is_refused_before_conversion(float_and_qat, calibration, tmp_path, bad,
                                                                 suffix):
    data = calibration.copy()
    data[3, 2, 2, 0] = bad
    with pytest.raises(kc.ExportError, match="1 non-finite values .* in input"):
        kc.export(float_and_qat[0], str(tmp_path / f"m{suffix}"), quantize="static", calibration_data=data)
    with pytest.raises(kc.ExportError, match="8192 non-finite values"):
        kc.export(float_and_qat[0], str(tmp_path / f"m{suffix}"), quantize="static",
                  calibration_data=np.full_like(calibration, np.nan))
    assert os.listdir(tmp_path) == []


def test_qat_onnx_records_and_warns_about_its_speed_in_plain_onnxruntime(qat_pair, tmp_path,
                                                                         monkeypatch):
    _, qat = qat_pair
    artifact = kc.export(qat, str(tmp_path / "qat.onnx"))
    speed = artifact.settings["onnxruntime_speed"]
    assert sorted(speed["default_ms"]) == [1, 32] and min(speed["disable_quant_qdq_ms"].values()) > 0
    recorded = artifact.load().metadata["settings"]["onnxruntime_speed"]
    assert recorded["default_ms"]["32"] == speed["default_ms"][32]
    # Per batch size, default session first: 90x slower at batch 1, the same at 32.
    times = iter([np.full(20, 9e-3), np.full(20, 1e-4), np.full(20, 1e-3), np.full(20, 1e-3)])
    monkeypatch.setattr(export_speed, "latencies", lambda runner, inputs: next(times))
    with pytest.warns(UserWarning, match="90x slower in ONNX Runtime with default session options .*"
                                         "batch 1: 9 ms vs 0.1 ms\\).*session.disable_quant_qdq"):
        kc.export(qat, str(tmp_path / "again.onnx"))


def test_calibration_takes_the_tflite_representative_dataset_convention(float_and_qat, calibration, tmp_path):
    def representative_dataset():  # the TFLite tutorial's generator: a list of inputs, one row each
        for row in calibration[:100]:
            yield [row[None]]

    artifact = kc.export(float_and_qat[0], str(tmp_path / "m.tflite"), quantize="static",
                         calibration_data=representative_dataset, io="uint8", compare_speed=False)
    runner = artifact.load()
    assert artifact.settings["io"] == "uint8" and runner.inputs[0].dtype == "uint8"
    assert artifact.parity["logits"]["top1_agreement"] >= 0.9


def test_a_dense_layer_on_sequences_of_any_length_runs_int8_in_tflite(keras3, tmp_path):
    from keras_compress.export.tflite import _warn_of_float_kernels

    inputs = keras3.Input((None, 8))  # sequences of any length: the rows' count is known at run time only
    pointwise = keras3.layers.Dense(16, name="pointwise")(inputs)
    model = keras3.Model(inputs, keras3.layers.Dense(2)(keras3.layers.GlobalAveragePooling1D()(pointwise)))
    qat = kc.quantization.quantize_aware(model)
    x = np.random.default_rng(0).standard_normal((32, 4, 8)).astype("float32")
    qat.compile("adam", "mse")
    qat.fit(x, np.zeros((32, 2)), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # it used to be a float matrix product, and said so
        artifact = kc.export(qat, str(tmp_path / "pointwise.tflite"), sample_data=x, compare_speed=False)
    assert artifact.settings["int8_weights"]["tensors"] >= 2
    with pytest.warns(UserWarning, match="TFLite converter kept 1 of the 2 quantized kernels of .* float"):
        _warn_of_float_kernels(qat, 1)  # what a file with one float kernel is told


@pytest.mark.parametrize("inside", [True, False])
def test_a_model_with_nan_activations_is_refused_with_a_reason(float_and_qat, calibration, tmp_path, inside):
    import tf_keras as keras

    model = float_and_qat[0]
    inputs = keras.Input(model.input_shape[1:])
    nan = keras.layers.Lambda(lambda t: t * np.inf * 0.0)(inputs)  # inf * 0
    broken = keras.Model(inputs, model(nan) if inside else nan)  # ReLUs turn NaN inside into zeros
    expected = "NaN or Inf activations inside the model" if inside else "outputs NaN or Inf on the"
    with pytest.raises(kc.ExportError, match=expected):
        kc.export(broken, str(tmp_path / "m.onnx"), quantize="static", calibration_data=calibration)
    assert os.listdir(tmp_path) == []


def test_static_tflite_export_passes_on_no_deprecation_notice_of_the_converter(float_and_qat, calibration,
                                                                               tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kc.export(float_and_qat[0], str(tmp_path / "m.tflite"), quantize="static",
                  calibration_data=calibration, compare_speed=False)
    assert not [w for w in caught if "tf.lite.Interpreter is deprecated" in str(w.message)]
