"""Hostile model files run nothing under safe mode: each gadget is loaded in a fresh process
and its marker file must not appear. The same files loaded by plain tf_keras do run code,
which shows the gadgets are live."""

import json
import os
import subprocess
import sys

import pytest
from gadgets import GADGETS

_LOAD_ALL = """
import json, sys
import tf_keras
import keras_compress as kc
results = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        model = LOAD(path, compile=name == "training_config_h5")
        results[name] = "loaded " + type(model).__name__
    except Exception as error:
        results[name] = type(error).__name__ + ": " + str(error)
print("RESULTS " + json.dumps(results))
"""


def _load_in_subprocess(paths, load):
    script = _LOAD_ALL.replace("LOAD", load)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    line = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert line, done.stderr[-3000:]
    return json.loads(line[0][len("RESULTS "):])


@pytest.fixture(scope="module")
def gadgets(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("gadgets"))
    made = {}
    for name, make in GADGETS.items():
        marker = os.path.join(folder, f"{name}.marker")
        made[name] = (make(folder, marker), marker)
        assert not os.path.exists(marker), name
    return made


@pytest.fixture(scope="module")
def safe_results(gadgets):
    return _load_in_subprocess({name: path for name, (path, _) in gadgets.items()}, "kc.load_model")


@pytest.mark.parametrize("name", sorted(GADGETS))
def test_a_hostile_file_runs_nothing_and_names_the_reason(gadgets, safe_results, name):
    path, marker = gadgets[name]
    assert not os.path.exists(marker)
    assert safe_results[name].startswith(
        f"ModelFileError: {path} was refused under safe mode"), safe_results[name]


def test_the_gadgets_run_code_when_loaded_without_screening(gadgets, safe_results):
    results = _load_in_subprocess({name: path for name, (path, _) in gadgets.items()},
                                  "tf_keras.models.load_model")
    ran = sorted(name for name, (_, marker) in gadgets.items() if os.path.exists(marker))
    assert ran == ["lambda_h5_named_keras", "lambda_saved_model", "op_layer_h5", "op_layer_keras",
                   "registered_name_h5", "registered_name_saved_model", "training_config_h5"]
    assert results["function_keras"] == "loaded function"


def test_the_reasons_say_what_was_refused(safe_results):
    assert "op layer calling TensorFlow's 'io.write_file'" in safe_results["op_layer_keras"]
    assert "op layer calling TensorFlow's 'io.write_file'" in safe_results["op_layer_h5"]
    assert "from module 'subprocess'" in safe_results["function_keras"]
    assert "Lambda layer" in safe_results["lambda_h5_named_keras"]
    assert "Lambda layer" in safe_results["lambda_saved_model"]
    for name in ("registered_name_h5", "registered_name_saved_model", "training_config_h5"):
        assert "op layer calling TensorFlow's 'io.write_file'" in safe_results[name]


def test_an_op_layer_that_changes_global_state_is_refused(tmp_path):
    from gadgets import _h5_op_model
    from tensorflow.python.eager import context

    import keras_compress as kc

    def set_seed(config):
        config["config"]["layers"].append({
            "class_name": "TFOpLambda", "name": "seed", "inbound_nodes": [["_CONSTANT_VALUE", -1, 1234, {}]],
            "config": {"name": "seed", "trainable": True, "dtype": "float32", "function": "random.set_seed"}})

    path = _h5_op_model(str(tmp_path), "seed.h5", set_seed)
    before = context.global_seed()
    with pytest.raises(kc.ModelFileError, match="op layer calling TensorFlow's 'random.set_seed'"):
        kc.load_model(path)
    assert context.global_seed() == before
