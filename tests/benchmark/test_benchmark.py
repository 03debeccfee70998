import json
import os

import numpy as np
import pytest

import keras_compress as kc
from conftest import fit_pruned
from keras_compress import cli
from keras_compress.benchmark import benchmark


@pytest.fixture(scope="module")
def artifacts(float_and_qat, digits, tmp_path_factory):
    model, qat = float_and_qat
    folder = tmp_path_factory.mktemp("bench")
    return {"onnx": kc.export(model, str(folder / "m.onnx")),
            "int8 tflite": kc.export(qat, str(folder / "qat.tflite")).path}


@pytest.fixture(scope="module")
def report(float_and_qat, artifacts, digits):
    model, _ = float_and_qat
    (_, _), (x_test, y_test) = digits
    return benchmark(dict({"keras": model}, **artifacts), (x_test, y_test), batch_sizes=(1, 8), warmup=1,
                     runs=3, threads=1, verbose=0)


def test_tensorflows_threads_are_left_as_they_are_and_a_difference_is_named(float_and_qat):
    import tensorflow as tf

    before = tf.config.threading.get_intra_op_parallelism_threads()
    threads = (before or os.cpu_count()) + 1
    with pytest.warns(UserWarning, match=f"keras variants run on TensorFlow's .* the others on {threads}"):
        report = benchmark({"m": float_and_qat[0]}, np.zeros((2, 8, 8, 1), "float32"), batch_sizes=(1,),
                           warmup=1, runs=1, threads=threads, memory=False, verbose=0)
    assert tf.config.threading.get_intra_op_parallelism_threads() == before
    assert report.environment["tensorflow_threads"] == (before or os.cpu_count())


def test_every_variant_gets_every_measure(report, digits):
    assert [row["name"] for row in report.rows] == ["keras", "onnx", "int8 tflite"]
    keras_row, onnx_row, int8_row = report.rows
    assert [row["format"] for row in report.rows] == ["keras", "onnx", "tflite"]
    assert [row["precision"] for row in report.rows] == ["float32", "float32", "int8"]
    for row in report.rows:
        assert set(row["latency_ms"]) == set(row["throughput"]) == {"1", "8"}
        timing = row["latency_ms"]["8"]
        assert 0 < timing["p50"] <= timing["p90"] <= timing["p99"]
        assert row["throughput"]["8"] == pytest.approx(8 / (timing["p50"] / 1e3))
        assert row["memory_bytes"] > 20 * 2**20 and row["gzipped_bytes"] < row["size_bytes"] * 1.01
    assert keras_row["agreement"] == 1.0 and onnx_row["agreement"] == 1.0  # same predictions as the baseline
    assert onnx_row["accuracy"] == keras_row["accuracy"] > 0.8
    assert int8_row["size_bytes"] < onnx_row["size_bytes"] / 2
    assert all(row["params"] > 7000 and row["sparsity"] < 0.05 for row in report.rows)
    # The same arithmetic, counted in the Keras model and read from each file.
    assert keras_row["macs"] > 0 and len({row["macs"] for row in report.rows}) == 1
    assert "MMACs" in report.to_markdown()


def test_serving_memory_is_measured_per_runtime(report):
    keras_row, onnx_row, tflite_row = report.rows
    # A fresh process per variant: ONNX Runtime and LiteRT do not pay for TensorFlow.
    assert onnx_row["memory_bytes"] < keras_row["memory_bytes"] / 2
    assert tflite_row["memory_bytes"] < keras_row["memory_bytes"] / 2


def test_report_writes_markdown_json_and_a_figure(report, tmp_path):
    text = report.to_markdown()
    assert text.splitlines()[0].startswith("| variant | format | precision")
    assert "| int8 tflite | tflite | int8 |" in text and "1 threads" in text
    data = json.loads(open(report.to_json(str(tmp_path / "r.json"))).read())
    assert data["environment"]["threads"] == 1 and data["environment"]["cpu"]
    assert "cpu_flags" in data["environment"] and data["environment"]["tf_keras"]
    assert data["settings"] == {"batch_sizes": [1, 8], "warmup": 1, "runs": 3, "rows": 450}
    path = report.plot(str(tmp_path / "r.png"))
    with open(path, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.png"]


def test_sparsity_is_read_from_the_artifact(float_and_qat, digits, tmp_path):
    model, _ = float_and_qat
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=0))
    fit_pruned(pruned, digits, epochs=1)
    artifact = kc.export(kc.pruning.strip(pruned), str(tmp_path / "sparse.onnx"))
    row, = benchmark({"sparse": artifact}, digits[1][0][:16], runs=1, warmup=0, memory=False, verbose=0).rows
    assert 0.3 < row["sparsity"] < 0.6 and row["accuracy"] is None and row["agreement"] == 1.0


def test_progress_is_shown_and_can_be_silenced(float_and_qat, digits, capsys):
    model, _ = float_and_qat
    benchmark({"m": model}, digits[1][0][:4], runs=1, memory=False, verbose=1)
    assert "benchmark 1/1: m (keras, float32)" in capsys.readouterr().out
    benchmark({"m": model}, digits[1][0][:4], runs=1, memory=False, verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("variants, data, message", [
    ({}, None, "non-empty dict"),
    ({"m": "missing.onnx"}, np.zeros((2, 8, 8, 1)), "no artifact at missing.onnx"),
    ({"m": None}, np.zeros((2, 5, 5, 1)), "does not take this data"),
    ({"m": None}, (np.zeros((2, 8, 8, 1)), np.zeros(3)), "2 rows of inputs but 3 labels"),
    ({"m": None}, (np.zeros((0, 8, 8, 1)), np.zeros(0)), "data has no rows"),
    ({"m": None}, {"x": np.zeros((2, 8, 8, 1)), "y": np.zeros(2)}, "got arrays named \\['x', 'y'\\]"),
])
def test_bad_input_is_refused_before_any_timing(float_and_qat, variants, data, message):
    variants = {name: value or float_and_qat[0] for name, value in variants.items()}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        benchmark(variants, data, verbose=0)


@pytest.mark.parametrize("threads", [-3, 0, 1.5, True])
def test_threads_must_be_a_positive_int(float_and_qat, threads):
    with pytest.raises(ValueError, match="threads must be None"):
        benchmark({"m": float_and_qat[0]}, np.zeros((2, 8, 8, 1)), threads=threads, verbose=0)


def test_benchmark_command(artifacts, digits, tmp_path, capsys):
    (_, _), (x_test, y_test) = digits
    data = str(tmp_path / "data.npz")
    np.savez(data, images=x_test[:64], labels=y_test[:64])
    onnx_path = artifacts["onnx"].path
    assert cli.main(["benchmark", onnx_path, artifacts["int8 tflite"], "--data", data, "--labels", "labels",
                     "--runs", "2", "--no-memory", "--quiet", "--json", str(tmp_path / "r.json"),
                     "--markdown", str(tmp_path / "r.md"), "--plot", str(tmp_path / "r.png")]) == 0
    printed = capsys.readouterr().out
    assert "| m.onnx | onnx | float32 |" in printed and "| qat.tflite | tflite | int8 |" in printed
    assert sorted(os.listdir(tmp_path)) == ["data.npz", "r.json", "r.md", "r.png"]
    assert cli.main(["benchmark", onnx_path, "--data", data, "--labels", "targets"]) == 2
    assert "no array 'targets'" in capsys.readouterr().err
    np.savez(str(tmp_path / "wrong.npz"), images=np.zeros((4, 5, 5, 1), "float32"))
    assert cli.main(["benchmark", onnx_path, "--data", str(tmp_path / "wrong.npz")]) == 2
    assert "does not take this data" in capsys.readouterr().err


def test_a_benchmark_of_nothing_is_refused(float_and_qat):
    import tf_keras as keras

    model = float_and_qat[0]
    x = np.zeros((4, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="data holds NaN or Inf in input"):
        benchmark({"m": model}, (np.full_like(x, np.nan), np.zeros(4)), memory=False, verbose=0)
    with pytest.raises(ValueError, match="data holds NaN or Inf in input"):
        benchmark({"m": model}, np.full_like(x, np.inf), memory=False, verbose=0)
    with pytest.raises(ValueError, match="the labels hold NaN"):
        benchmark({"m": model}, (x, np.full(4, np.nan)), memory=False, verbose=0)
    diverged = keras.models.clone_model(model)
    diverged.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    with pytest.raises(ValueError, match="Variant 'diverged' outputs NaN or Inf on this data"):
        benchmark({"m": model, "diverged": diverged}, (x, np.zeros(4)), memory=False, verbose=0)


def test_the_benchmark_command_refuses_nan_labels(artifacts, tmp_path, capsys):
    data = str(tmp_path / "nan_labels.npz")
    np.savez(data, images=np.zeros((4, 8, 8, 1), "float32"), labels=np.full(4, np.nan))
    assert cli.main(["benchmark", artifacts["onnx"].path, "--data", data, "--labels", "labels",
                     "--no-memory"]) == 2
    assert "the labels hold NaN" in capsys.readouterr().err
