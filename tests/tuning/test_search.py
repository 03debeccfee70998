import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

import keras_compress as kc
from keras_compress import cli

SMALL_SPACE = {"final_sparsity": [0.5, 0.8], "granularity": ["weight"], "qat": [False, True]}


@pytest.fixture(scope="module")
def data(digits):
    (x, y), (x_test, y_test) = digits
    return (x[:600], y[:600]), (x_test, y_test)


@pytest.fixture(scope="module")
def finished(float_and_qat, data, tmp_path_factory):
    """A three-trial random search over a small space, and its folder."""
    directory = str(tmp_path_factory.mktemp("search"))
    result = kc.tuning.search(float_and_qat[0], *data, max_trials=3, tuner="random", epochs=2,
                              space=SMALL_SPACE, max_accuracy_drop=0.05, directory=directory, verbose=0)
    return result, directory


def test_every_trial_is_trained_compressed_exported_and_measured(finished):
    result, directory = finished
    assert len(result.trials) == 3 and result.objective == "size"
    for row in result.trials:
        assert set(row["values"]) >= {"final_sparsity", "granularity", "qat"}
        assert os.path.exists(os.path.join(row["folder"], row["artifact"]))
        assert row["size_bytes"] > 0 and row["latency_ms"] > 0 and 0 <= row["accuracy"] <= 1
        assert row["feasible"] == (row["accuracy_drop"] <= 0.05)
        if row["values"]["qat"]:  # int8 and sparse: much smaller than the float32 baseline
            assert row["size_bytes"] < result.baseline["size_bytes"] / 2
    assert result.baseline["accuracy"] > 0.8


def test_the_best_is_the_smallest_feasible_trial_and_on_the_pareto_front(finished):
    result, _ = finished
    feasible = [row for row in result.trials if row["feasible"]]
    assert result.best == min(feasible, key=lambda row: row["size_bytes"])
    assert result.best["pareto"]
    for row in result.trials:  # nothing beats a front member on both size and accuracy
        if row["pareto"]:
            assert not any(o["size_bytes"] < row["size_bytes"] and o["accuracy"] > row["accuracy"]
                           for o in result.trials)
    model = result.best_model()
    assert isinstance(model, keras.Model) and os.path.exists(result.best_artifact)


def test_the_result_writes_a_table_json_and_a_plot(finished, tmp_path):
    result, _ = finished
    table = result.to_markdown()
    assert (table.startswith("| trial | final_sparsity | granularity | qat |")
            and "baseline (float32)" in table)
    data = json.loads(open(result.to_json(str(tmp_path / "search.json"))).read())
    assert len(data["trials"]) == 3 and data["baseline"]["accuracy"] == result.baseline["accuracy"]
    with open(result.plot(str(tmp_path / "search.png")), "rb") as file:
        assert file.read(4) == b"\x89PNG"


def test_an_interrupted_search_resumes_from_its_directory(finished, float_and_qat, data):
    result, directory = finished
    first = {row["trial"]: os.path.getmtime(os.path.join(row["folder"], "metrics.json"))
             for row in result.trials}
    resumed = kc.tuning.search(float_and_qat[0], *data, max_trials=4, tuner="random", epochs=2,
                               space=SMALL_SPACE, max_accuracy_drop=0.05, directory=directory, verbose=0)
    assert len(resumed.trials) == 4
    for row in resumed.trials:  # the three finished trials were not run again
        if row["trial"] in first:
            assert os.path.getmtime(os.path.join(row["folder"], "metrics.json")) == first[row["trial"]]


def test_a_build_fn_adds_its_own_hyperparameters_and_a_teacher_adds_distillation(float_and_qat, data,
                                                                                 tmp_path):
    teacher = float_and_qat[0]

    def build(hp):
        width = hp.Choice("width", [8, 16])
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(width, activation="relu"), keras.layers.Dense(10)])

    result = kc.tuning.search(build, *data, teacher=teacher, max_trials=2, tuner="bayesian", epochs=2,
                              space={"final_sparsity": [0.5], "temperature": [2.0, 4.0], "alpha": (0.1, 0.5)},
                              max_accuracy_drop=0.5, directory=str(tmp_path), objective="latency", verbose=0)
    for row in result.trials:
        assert {"width", "temperature", "alpha", "final_sparsity"} <= set(row["values"])
        assert 0.1 <= row["values"]["alpha"] <= 0.5
    assert result.best == min(result.trials, key=lambda row: row["latency_ms"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_accuracy_drop=-0.01), "max_accuracy_drop must be in"),
    (dict(max_accuracy_drop=1.0), "max_accuracy_drop must be in"),
    (dict(space={}), "non-empty dict"),
    (dict(space={"granularity": []}), "non-empty list"),
    (dict(space={"granularity": ["unstructured"]}), "granularity"),
    (dict(space={"final_sparsity": (0.9, 0.5)}), "low <= high"),
    (dict(space={"final_sparsity": [1.0]}), "final_sparsity"),
    (dict(space={"temperature": [4.0]}), "no teacher"),
    (dict(space={"depth": [2]}), "Unknown space entries"),
    (dict(space={"clusters": [2]}), "0 \\(no clustering\\) or cluster counts from 3 to 256"),
    (dict(space={"clusters": 8}), "non-empty list"),
    (dict(validation_data="x only"), "validation_data must be an \\(inputs, labels\\)"),
    (dict(objective="accuracy"), "objective must be"),
    (dict(tuner="grid"), "tuner must be one of"),
])
def test_bad_input_is_refused_before_any_trial(float_and_qat, data, tmp_path, kwargs, message):
    kwargs = dict(kwargs)
    validation = kwargs.pop("validation_data", data[1])
    if validation == "x only":
        validation = (data[1][0], None)
    with pytest.raises(ValueError, match=message):
        kc.tuning.search(float_and_qat[0], data[0], validation, directory=str(tmp_path / "s"), **kwargs)
    assert not os.path.exists(tmp_path / "s")


def test_search_command(float_and_qat, digits, tmp_path, capsys):
    model_path = str(tmp_path / "model.keras")
    float_and_qat[0].save(model_path)
    (x, y), _ = digits
    npz = str(tmp_path / "data.npz")
    np.savez(npz, x=x[:500], y=y[:500])
    assert cli.main(["search", model_path, "--data", npz, "--max-accuracy-drop", "0.5", "--trials", "1",
                     "--epochs", "1", "--tuner", "random", "--directory", str(tmp_path / "runs"),
                     "--json", str(tmp_path / "search.json"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| trial |" in printed and "best: trial" in printed
    assert json.loads((tmp_path / "search.json").read_text())["best"] is not None
    assert cli.main(["search", model_path, "--data", npz, "--max-accuracy-drop", "1.5"]) == 2
    assert "max_accuracy_drop must be in" in capsys.readouterr().err


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_one_worker(float_and_qat, tmp_path):
    model_path = str(tmp_path / "model.keras")
    float_and_qat[0].save(model_path)
    script = os.path.join(os.path.dirname(__file__), "distributed_search.py")
    environment = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()),
                       TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, script, model_path, str(tmp_path / "runs")]
    chief = subprocess.Popen(command, env=dict(environment, KERASTUNER_TUNER_ID="chief"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.run(command, env=dict(environment, KERASTUNER_TUNER_ID="tuner0"), capture_output=True,
                            text=True, timeout=600)
    out, err = chief.communicate(timeout=300)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert chief.returncode == 0, err[-2000:]
    trials = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert len(trials) == 2  # run by the worker, collected by the chief
    folders = sorted(name for name in os.listdir(tmp_path / "runs" / "distributed")
                     if name.startswith("trial_"))
    assert len(folders) == 2


def test_a_trial_clusters_the_pruned_model_when_the_space_says(float_and_qat, data, tmp_path):
    result = kc.tuning.search(float_and_qat[0], *data, max_trials=1, tuner="random", epochs=1,
                              space={"final_sparsity": [0.5], "qat": [False], "clusters": [8]},
                              max_accuracy_drop=0.5, directory=str(tmp_path / "search"), verbose=0)
    (row,) = result.trials
    assert row["values"]["clusters"] == 8
    model = kc.load_model(os.path.join(row["folder"], "model.keras"))
    assert kc.clustering.distinct_values(model).most_distinct <= 8 + 1  # the clusters, and zero
    assert kc.pruning.sparsity(model).total_sparsity == pytest.approx(0.5, abs=0.02)


def test_the_default_space_clusters_tf_keras_models_only(float_and_qat, data, tmp_path):
    import keras as keras3

    from models import quantizable_cnn

    assert kc.tuning.default_space(model=float_and_qat[0])["clusters"] == [0, 16]
    assert "clusters" not in kc.tuning.default_space(model=quantizable_cnn(keras=keras3))
    with pytest.raises(ValueError, match="tf_keras models only"):
        kc.tuning.search(quantizable_cnn(keras=keras3), *data, space={"clusters": [0, 8]},
                         directory=str(tmp_path / "s"))
    assert not os.path.exists(tmp_path / "s")


def test_a_keras_3_model_is_searched_with_qat(data, tmp_path):
    import keras as keras3

    from conftest import compile_classifier
    from models import quantizable_cnn

    model = compile_classifier(quantizable_cnn(keras=keras3))
    model.fit(*data[0], epochs=2, batch_size=64, verbose=0)
    result = kc.tuning.search(model, *data, max_trials=2, tuner="random", epochs=1,
                              space={"final_sparsity": [0.5], "granularity": ["weight", "filter"],
                                     "qat": [True]},
                              max_accuracy_drop=0.2, directory=str(tmp_path / "search"), verbose=0)
    assert len(result.trials) == 2 and all(row["values"]["qat"] for row in result.trials)
    assert all(row["size_bytes"] > 0 for row in result.trials), result.trials
