import os

import numpy as np
import pytest
import tensorflow as tf

import keras_compress as kc
from keras_compress.runtime.tflite_metadata import add_metadata


def test_keras_runner_matches_predict_and_describes_tensors(tf_keras_cnn, digits):
    x = digits[1][0][:20]
    runner = kc.runtime.KerasRunner(tf_keras_cnn)
    assert runner.format == "keras" and runner.inputs[0].shape == (None, 8, 8, 1)
    assert runner.outputs[0].dtype == "float32"
    np.testing.assert_allclose(runner.predict(x, batch_size=6), tf_keras_cnn.predict(x, verbose=0), atol=1e-5)


def test_onnx_runner_takes_threads_and_providers(tf_keras_cnn, digits, tmp_path):
    artifact = kc.export(tf_keras_cnn, str(tmp_path / "m.onnx"))
    runner = kc.load(artifact.path, threads=1, providers=["CPUExecutionProvider"])
    assert runner.session.get_providers() == ["CPUExecutionProvider"]
    assert runner.metadata["source_model"] == tf_keras_cnn.name
    assert runner.predict(digits[1][0][:3]).shape == (3, 10)


def test_tflite_runner_quantizes_and_dequantizes_int8_inputs_and_outputs(tf_keras_cnn, digits, tmp_path):
    from keras_compress.export.signature import serving_function
    from keras_compress.runtime.metadata import artifact_metadata

    x = digits[1][0][:64]
    function = serving_function(tf_keras_cnn)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()],
                                                                tf_keras_cnn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "int8.tflite"
    path.write_bytes(add_metadata(converter.convert(), artifact_metadata(tf_keras_cnn, "tflite", {})))
    runner = kc.load(str(path))
    assert runner.inputs[0].dtype == "int8" and runner.outputs[0].dtype == "float32"
    expected = tf_keras_cnn.predict(x, verbose=0)
    actual = runner.predict(x)  # floats in: quantized by the runner
    assert np.mean(actual.argmax(1) == expected.argmax(1)) > 0.9
    assert np.max(np.abs(actual - expected)) < 0.25 * np.max(np.abs(expected))
    detail = runner._in[runner.inputs[0].name]
    scale, zero_point = detail["quantization"]
    quantized = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(runner.predict(quantized), actual)  # int8 in: fed as it is


def test_unknown_artifact_types_are_refused(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(kc.WrongFormatError, match="unknown artifact type '.bin'"):
        kc.load(str(path))


def test_a_file_of_another_format_is_told_from_a_corrupt_one(tmp_path, tf_keras_cnn):
    """A TFLite file named .onnx is the wrong format (and says which it is); a truncated one is corrupt."""
    tflite = kc.export(tf_keras_cnn, str(tmp_path / "model.tflite")).path
    renamed = tmp_path / "model.onnx"
    renamed.write_bytes(open(tflite, "rb").read())
    with pytest.raises(kc.WrongFormatError, match="in TFLite format, not ONNX: rename it to end"):
        kc.load(str(renamed))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(tflite, "rb").read()[:200])
    with pytest.raises(kc.CorruptFileError, match="truncated.tflite as tflite: the file is truncated"):
        kc.load(str(truncated))
    legacy = str(tmp_path / "legacy.keras")  # HDF5 under a .keras name, as Keras before 2.12 wrote it
    tf_keras_cnn.save(str(tmp_path / "legacy.h5"))
    os.replace(str(tmp_path / "legacy.h5"), legacy)
    assert kc.load(legacy).predict(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 10)


def test_the_fast_path_still_checks_shape_and_dtype(tf_keras_cnn, digits):
    runner = kc.runtime.KerasRunner(tf_keras_cnn)
    x = digits[1][0][:4]
    first = runner.predict(x)  # checked, then remembered
    np.testing.assert_allclose(runner.predict(x.astype("float64")), first, rtol=1e-6)  # cast, not refused
    np.testing.assert_allclose(runner.predict(x), first)
    with pytest.raises(ValueError, match="expects shape"):
        runner.predict(np.zeros((4, 8, 7, 1), "float32"))
    with pytest.raises(ValueError, match="expects shape"):
        runner.predict(np.zeros((4, 8, 8), "float32"))


def _each_thread_gets_its_own_answer(runner, digits, repeats):
    """8 threads call `runner` at once, each on its own rows and batch size, and get exactly what
    a lone call gives."""
    import concurrent.futures

    batches = [digits[1][0][i:i + 1 + i % 3] for i in range(8)]
    expected = [runner.predict(batch) for batch in batches]

    def calls(index):
        return [np.array_equal(runner.predict(batches[index]), expected[index]) for _ in range(repeats)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(calls, range(8)))
    return all(all(result) for result in results)


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", "", ".keras"])
def test_runners_give_each_thread_its_own_answer(tf_keras_cnn, digits, tmp_path, suffix):
    runner = kc.export(tf_keras_cnn, str(tmp_path / f"m{suffix}")).load()
    assert _each_thread_gets_its_own_answer(runner, digits, 150)


def test_a_keras_3_runner_gives_each_thread_its_own_answer_on_every_backend(keras3, digits):
    model = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(4, 3, activation="relu"),
                               keras3.layers.Flatten(), keras3.layers.Dense(10)])
    assert _each_thread_gets_its_own_answer(kc.runtime.KerasRunner(model), digits, 200)


def test_a_runner_keeps_no_model_alive_after_the_caller_drops_it(keras_flavour):
    import gc
    import weakref

    models = [keras_flavour.Sequential([keras_flavour.Input((3,)), keras_flavour.layers.Dense(2)])
              for _ in range(3)]
    for model in models:
        kc.runtime.KerasRunner(model).predict(np.ones((2, 3), "float32"))
    references = [weakref.ref(model) for model in models]
    del models, model
    gc.collect()
    assert [reference() for reference in references] == [None, None, None]


@pytest.mark.parametrize("options, message", [
    (dict(threads="four"), "threads must be None .* or an int >= 1, got 'four'"),
    (dict(threads=0), "threads must be None .* or an int >= 1, got 0"),
    (dict(providers=["CPUExecutionProviderr"]), "'CPUExecutionProviderr' is unknown: this one offers"),
    (dict(providers="CPUExecutionProvider"), "providers must be a non-empty list"),
])
def test_bad_runner_options_are_named_before_the_file_is_opened(tf_keras_cnn, tmp_path, options, message):
    path = kc.export(tf_keras_cnn, str(tmp_path / "m.onnx")).path
    with pytest.raises(ValueError, match=message):
        kc.load(path, **options)
    with pytest.raises(ValueError, match=message):
        kc.runtime.OnnxRunner(path, **options)
    if "threads" in options:
        with pytest.raises(ValueError, match=message):
            kc.load(kc.export(tf_keras_cnn, str(tmp_path / "m.tflite")).path, **options)
