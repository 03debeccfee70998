"""`kc.compress`: a plan measured to meet its target, refused targets, resumed runs, the command line."""

import json
import os
import shutil

import numpy as np
import pytest
import tf_keras

import keras_compress as kc
from keras_compress.compression import pipeline as compress_module
from keras_compress.tuning.trial import Training
from tests.conftest import compile_classifier


def _settings(**kwargs):
    return dict(dict(epochs=1, batch_size=64, verbose=0), **kwargs)


# The two longest runs of `compress` (two minutes each on JAX, where every file goes through a
# TensorFlow rebuild) run on the TensorFlow backend only; the JAX pass keeps the shorter ones.
ON_TENSORFLOW = pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax",
                                   reason="`make test` runs it on the TensorFlow backend (2 min on JAX)")


@ON_TENSORFLOW
def test_a_size_target_is_met_by_the_file_in_either_flavour(trained_cnn, digits, tmp_path):
    train, validation = digits
    target = kc.Target(size_kb=12)
    before = [w.copy() for w in trained_cnn.get_weights()]
    result = kc.compress(trained_cnn, train, validation, target=target, directory=str(tmp_path),
                         **_settings(epochs=2))
    after = trained_cnn.get_weights()  # the caller's model is as it came in
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))
    assert result.met and result.precision == "int8"
    assert os.path.getsize(result.artifact.path) == result.measured["bytes"] <= 12 * 1024
    assert result.measured["bytes"] < result.dense["bytes"] / 4  # int8 alone would not do it
    assert result.plan and all(0 < share <= 0.75 for share in result.plan.values())
    assert set(result.filters) == set(result.plan)
    for kept, before in result.filters.values():
        assert 1 <= kept < before
    assert result.model.count_params() < trained_cnn.count_params()
    assert type(result.model).__module__.split(".")[0] == type(trained_cnn).__module__.split(".")[0]
    assert result.measured["accuracy"] > 0.3  # far above chance (0.1): fine-tuned, and int8 works
    assert result.iterations and not target.missed(result.measured)
    assert set(result.timings) == {"analysis", "allocation", "fine_tuning", "measurement"}
    report = result.report()
    assert "**met**" in report and "| conv_b |" in report
    with open(tmp_path / "result.json") as file:
        assert json.load(file)["met"] is True
    assert os.path.exists(tmp_path / "model.keras")
    assert result.plot(str(tmp_path / "plan.png")) == str(tmp_path / "plan.png")


def test_pruned_weights_in_sparse_encoding_meet_a_size_target_int8_alone_misses(tf_keras_cnn, digits,
                                                                                tmp_path):
    # Keras 3 (and JAX) take the same road in the QAT test below.
    from keras_compress.formats.tflite import litert_interpreter, sparse_tensor_count

    train, validation = digits
    target = kc.Target(size_kb=22)
    result = kc.compress(tf_keras_cnn, train, validation, target=target, techniques=("weights", "int8"),
                         directory=str(tmp_path), **_settings(epochs=2))
    with open(tmp_path / "compress.json") as file:
        assert json.load(file)["stages"]["dense_int8"]["bytes"] > 22 * 1024  # int8 alone misses
    assert result.met and result.precision == "int8"
    assert os.path.getsize(result.artifact.path) == result.measured["bytes"] <= 22 * 1024
    assert result.plan == {} and result.filters == {}  # filters were not allowed
    assert 0.5 < result.sparsity <= 0.9
    kernels = [w for w in result.model.get_weights() if w.ndim >= 2]
    zeros = sum(int(np.sum(w == 0)) for w in kernels) / sum(w.size for w in kernels)
    assert zeros == pytest.approx(result.sparsity, abs=0.02)  # fine-tuning kept the pruned weights at zero
    assert sparse_tensor_count(litert_interpreter(model_path=result.artifact.path)) > 0
    assert result.measured["accuracy"] > 0.3
    assert f"Weights: {result.sparsity:.1%} pruned" in result.report()
    assert result.to_dict()["sparsity"] == result.sparsity


def test_a_sparse_file_that_computes_wrong_outputs_is_stored_dense(tf_keras_cnn, digits, tmp_path,
                                                                   monkeypatch):
    # LiteRT's sparse kernels miscomputed a digits CNN with 90% of its filters and weights removed:
    # export's verification catches it, and compress measures and ships the dense-stored file.
    measure = compress_module.measure

    def unfaithful_at_the_end(model, runtime, batch, threads, warmup, runs, folder, sparse_weights=False,
                              **kwargs):
        if sparse_weights and folder == str(tmp_path):  # the final file (the search's are in measurements/)
            raise kc.errors.ExportVerificationError("output 'logits' differs from the source model by 0.099")
        return measure(model, runtime, batch, threads, warmup, runs, folder, sparse_weights=sparse_weights,
                       **kwargs)

    monkeypatch.setattr(compress_module, "measure", unfaithful_at_the_end)
    train, validation = digits
    with pytest.warns(UserWarning, match=r"computed different outputs[\s\S]*stores its weights dense"):
        result = kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=60),
                             techniques=("weights",), directory=str(tmp_path), **_settings())
    assert result.precision == "float32" and result.sparsity > 0 and not result.met  # the dense file misses
    assert "sparse_tensors" not in result.artifact.settings


@ON_TENSORFLOW
def test_qat_learns_the_int8_file_in_the_last_epochs_and_keeps_the_pruned_zeros(trained_cnn, digits, tmp_path,
                                                                                monkeypatch):
    fits = []
    original = Training.fit

    def recorded(self, model, train_data, values, epochs, callbacks=()):
        fits.append((epochs, kc.quantization.is_quantize_aware(model)))
        return original(self, model, train_data, values, epochs, callbacks)

    monkeypatch.setattr(Training, "fit", recorded)
    train, validation = digits
    result = kc.compress(trained_cnn, train, validation, target=kc.Target(size_kb=22),
                         techniques=("weights", "qat"), directory=str(tmp_path), **_settings(epochs=3))
    assert result.met and result.precision == "int8" and result.sparsity > 0.5
    assert kc.quantization.is_quantize_aware(result.model)  # trained quantization-aware, not calibrated
    assert fits == [(2, False), (1, True)]  # two pruned float epochs, then one quantization-aware
    assert kc.load(result.artifact.path).metadata["settings"]["quantize"] == "qat"
    kernels = [w for w in result.model.get_weights() if w.ndim >= 2]
    zeros = sum(int(np.sum(w == 0)) for w in kernels) / sum(w.size for w in kernels)
    assert zeros >= result.sparsity - 0.02  # QAT moved no pruned weight
    assert result.measured["accuracy"] > 0.3


def _wide_cnn():
    """A model big enough for its latency to be timed: 32x32 inputs through wide convolutions."""
    keras = tf_keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return compile_classifier(keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(48, 3, padding="same", activation="relu", name="conv_a"),
        layers.Conv2D(96, 3, padding="same", activation="relu", name="conv_b"),
        layers.MaxPooling2D(4, name="pool"),
        layers.Conv2D(96, 3, padding="same", activation="relu", name="conv_c"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(10, name="logits"),
    ]))


def test_a_latency_target_makes_the_file_faster_than_the_dense_one_measured_beside_it(tmp_path):
    (x, y), (x_val, y_val) = kc.datasets.digits(size=32, channels=3)
    model = _wide_cnn()
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    dense_ms = compress_module.measure(model, "tflite", 1, 1, 5, 50, str(tmp_path))[0]["ms"]
    result = kc.compress(model, (x[:256], y[:256]), (x_val[:128], y_val[:128]),
                         target=kc.Target(latency_ms=0.5 * dense_ms), techniques=("filters",),
                         directory=str(tmp_path / "run"), **_settings())
    assert result.precision == "float32"
    # Compared with the dense model timed in this run, not with a wall-clock limit.
    assert result.measured["ms"] < dense_ms and result.measured["ms"] < result.dense["ms"]
    assert result.measured["macs"] < 0.8 * result.dense["macs"]
    assert any(name.startswith("latency-") for name in os.listdir(tmp_path / "run"))


def _no_training(*args, **kwargs):
    raise AssertionError("trained")


def test_an_impossible_target_is_refused_before_any_scan_or_training(tf_keras_cnn, digits, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(Training, "fit", _no_training)
    monkeypatch.setattr(compress_module, "sensitivity", _no_training)
    train, validation = digits
    with pytest.raises(ValueError, match=r"out of reach: with 75% of every channel group's filters removed "
                                         r"\(int8\) the model measures [\d.]+ KiB \(dense: [\d.]+ KiB\)"):
        kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=1), directory=str(tmp_path),
                    **_settings())
    assert os.listdir(tmp_path) == []  # the refused run left nothing: the folder takes another target
    with pytest.raises(ValueError, match="filters are not among the techniques"):
        kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=12), techniques=("int8",),
                    directory=str(tmp_path / "int8"), **_settings())


@pytest.mark.parametrize("techniques, target, epochs, asked", [
    (("filters", "int8"), 12, 2, [2, 1]),
    # Interrupted in the pruned float epochs: the stripped checkpoint is pruned again, then QAT.
    (("weights", "qat"), 22, 3, [2, 1, 1]),
])
def test_an_interrupted_run_resumes_without_repeating_finished_stages(tf_keras_cnn, digits, tmp_path,
                                                                      monkeypatch, techniques, target, epochs,
                                                                      asked):
    train, validation = digits
    fit = Training.fit
    epochs_asked = []

    def interrupted(self, model, data, values, epochs, callbacks=()):
        class Stop(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise KeyboardInterrupt
        epochs_asked.append(epochs)
        return fit(self, model, data, values, epochs, callbacks=[*callbacks, Stop()])

    monkeypatch.setattr(Training, "fit", interrupted)
    settings = _settings(epochs=epochs, target=kc.Target(size_kb=target), techniques=techniques,
                         directory=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        kc.compress(tf_keras_cnn, train, validation, **settings)
    with open(tmp_path / "compress.json") as file:
        state = json.load(file)
    assert state["epochs_done"] == 1 and "plan" in state["stages"]

    monkeypatch.setattr(Training, "fit", lambda self, model, data, values, epochs, callbacks=(): (
        epochs_asked.append(epochs), fit(self, model, data, values, epochs, callbacks)))
    monkeypatch.setattr(compress_module, "measure", _counting(compress_module.measure, calls := []))
    monkeypatch.setattr(compress_module, "sensitivity", _no_training)
    result = kc.compress(tf_keras_cnn, train, validation, **settings)
    assert epochs_asked == asked  # the second run fine-tunes the epochs left
    assert len(calls) == 1  # only the final export is measured again
    plan = dict(state["stages"]["plan"])
    assert result.sparsity == plan.pop(compress_module.WEIGHTS, 0.0) and result.plan == plan and result.met


def _counting(function, calls):
    def counted(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)
    return counted


def test_a_directory_of_another_run_is_refused(tf_keras_cnn, digits, tmp_path):
    train, validation = digits
    kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=40), directory=str(tmp_path),
                **_settings())
    with pytest.raises(ValueError, match="holds a compression of another model, data, target or setting"):
        kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=30), directory=str(tmp_path),
                    **_settings())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"target": 2.0}, TypeError, "target must be a kc.Target"),
    ({"techniques": ("filters", "wieghts")}, ValueError, "techniques must be a non-empty subset"),
    ({"techniques": ("filters", "qat"), "epochs": 0}, ValueError, '"qat" trains the int8 model'),
    ({"target": kc.Target(latency_ms=1), "techniques": ("weights",)}, ValueError, "makes only a TFLite file"),
    ({"target": kc.Target(size_kb=12, runtime="onnx"), "techniques": ("weights", "int8")}, ValueError,
     "makes only a TFLite file"),
    ({"techniques": "int8"}, ValueError, "techniques must be a non-empty subset"),
    ({"target": kc.Target(macs=1000), "techniques": ("int8",)}, ValueError, "MACs target needs"),
    ({"teacher": "teacher"}, ValueError, 'teacher must be "self"'),
    ({"epochs": -1}, ValueError, "epochs must be an integer of at least 0"),
    ({"max_accuracy_drop": 2}, ValueError, "max_accuracy_drop must be a share"),
    ({"ratios": (0.5, 1.0)}, ValueError, "ratios must be a non-empty sequence"),
    ({"metric": "f1"}, ValueError, 'metric must be "accuracy"'),
    ({"learning_rate": 0}, ValueError, "learning_rate must be a positive number"),
    ({"alpha": 2}, ValueError, "alpha must be in"),
    ({"exclude": ["conv_z"]}, ValueError, "exclude names layers the model does not have"),
])
def test_bad_arguments_are_refused_before_any_work(tf_keras_cnn, digits, kwargs, error, message, monkeypatch,
                                                   tmp_path):
    monkeypatch.setattr(compress_module, "measure", _no_training)
    train, validation = digits
    arguments = dict(target=kc.Target(size_kb=12), directory=str(tmp_path / "run"), **_settings())
    with pytest.raises(error, match=message):
        kc.compress(tf_keras_cnn, train, validation, **dict(arguments, **kwargs))
    assert not os.path.exists(tmp_path / "run")


def test_a_folder_holding_other_files_is_refused_before_anything_is_written(tf_keras_cnn, digits, tmp_path):
    train, validation = digits
    (tmp_path / "model.keras").write_text("the user's own model")
    with pytest.raises(ValueError, match="holds files of something else"):
        kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=12), directory=str(tmp_path))
    assert os.listdir(tmp_path) == ["model.keras"]
    assert (tmp_path / "model.keras").read_text() == "the user's own model"


def test_data_without_labels_or_a_file_for_a_directory_are_refused(tf_keras_cnn, digits, tmp_path):
    (x, y), validation = digits
    with pytest.raises(ValueError, match="train_data must be an"):
        kc.compress(tf_keras_cnn, (x, None), validation, target=kc.Target(size_kb=12))
    with pytest.raises(ValueError, match="rows of inputs and"):
        kc.compress(tf_keras_cnn, (x, y[:10]), validation, target=kc.Target(size_kb=12))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        kc.compress(tf_keras_cnn, (x, y), validation, target=kc.Target(size_kb=12),
                    directory=str(tmp_path / "file"))


def test_the_command_line_compresses_a_saved_model(tf_keras_cnn, digits, tmp_path, capsys):
    from keras_compress.cli import main

    (x, y), (x_val, y_val) = digits
    tf_keras_cnn.save(tmp_path / "model.keras")
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=x_val, y=y_val)
    status = main(["compress", str(tmp_path / "model.keras"), "--data", str(tmp_path / "train.npz"),
                   "--validation", str(tmp_path / "val.npz"), "--size-kb", "12", "--epochs", "1",
                   "-o", str(tmp_path / "out"), "--quiet"])
    assert status == 0
    assert "**met**" in capsys.readouterr().out
    assert os.path.getsize(tmp_path / "out" / "model.tflite") <= 12 * 1024
    assert main(["compress", str(tmp_path / "model.keras"), "--data", str(tmp_path / "train.npz"),
                 "--validation", str(tmp_path / "val.npz"), "-o", str(tmp_path / "none")]) == 2
    assert "give the target: --latency-ms, --size-kb and/or --macs" in capsys.readouterr().err


def test_without_a_directory_the_run_gets_a_temporary_one(tf_keras_cnn, digits):
    train, validation = digits
    result = kc.compress(tf_keras_cnn, train, validation, target=kc.Target(size_kb=12), epochs=0, verbose=0)
    assert result.met and os.path.dirname(result.artifact.path) == result.directory
    assert os.path.basename(result.directory).startswith("kc-compress-")
    assert result.model is not tf_keras_cnn
    shutil.rmtree(result.directory)
