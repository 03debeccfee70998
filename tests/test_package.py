import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_compress as kc
from keras_compress import cli


def test_public_names_are_pinned():
    assert kc.__all__ == ["Artifact", "BackendUnavailableError", "CompressionResult", "CorruptFileError",
                          "Distiller", "ExportError", "ExportVerificationError", "KerasCompressError",
                          "ModelFileError", "ModelStateError", "QuantizationError", "Report", "ShrinkError",
                          "Target", "UnsupportedModelError", "WrongFormatError", "__version__", "analysis",
                          "benchmark", "check_tensorrt", "clustering", "compress", "compression", "datasets",
                          "distillation", "export", "layer_kinds", "load", "load_model", "pruning",
                          "quantization", "runtime", "tuning"]
    assert kc.compression.__all__ == ["CompressionResult", "Target", "compress"]
    assert kc.tuning.__all__ == ["SearchResult", "default_space", "search"]
    assert kc.clustering.__all__ == ["ClusteringReport", "cluster", "distinct_values", "is_clustered",
                                     "strip"]
    assert importlib.import_module("keras_compress.benchmark").__all__ == ["Report", "benchmark", "latencies"]
    assert kc.runtime.__all__ == ["KerasRunner", "OnnxRunner", "Runner", "SavedModelRunner", "TFLiteRunner",
                                  "TensorRTRunner", "TensorInfo", "load"]
    assert importlib.import_module("keras_compress.export").__all__ == [
        "Artifact", "FORMATS", "QUANTIZE_MODES", "TOLERANCES", "TensorRTCheck", "check_tensorrt", "export"]
    assert kc.quantization.__all__ == ["is_quantize_aware", "quantize_aware", "quantized_weights"]
    assert kc.analysis.__all__ == ["LatencyTable", "SensitivityTable", "latency", "sensitivity"]
    assert kc.layer_kinds.__all__ == ["ChannelRule", "LayerKind", "register_layer_kind",
                                      "register_channel_rule", "kind_of", "rule_for", "builtin_name",
                                      "BUILTIN_KINDS", "LAYER_KINDS", "SPARSE_WEIGHTS"]
    assert kc.distillation.__all__ == ["Distiller", "Keras3Distiller", "TfKerasDistiller",
                                       "distillation_loss", "soft_target_loss"]
    assert kc.pruning.__all__ == ["ChannelRule", "ConstantSparsity", "PolynomialDecay", "PruningCallback",
                                  "SparsityReport", "prune", "register_channel_rule", "shrink", "sparsity",
                                  "strip"]


def test_a_removed_name_says_what_replaced_it():
    with pytest.raises(AttributeError, match=r"keras_compress.keras was removed: import Keras yourself"):
        kc.keras  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        kc.nothing  # noqa: B018

def test_using_keras_compress_leaves_the_users_keras_alone():
    """Neither the import nor pruning a tf_keras model (tfmot underneath) sets TF_USE_LEGACY_KERAS
    or turns `tf.keras` into tf_keras; importing adds no logging filter (runners add theirs on
    first use), and names the caller registered with tf_keras stay theirs."""
    script = textwrap.dedent("""
        import logging, os, tensorflow as tf, tf_keras

        class Mine:
            pass

        tf_keras.utils.get_custom_objects()["QuantizeLayer"] = Mine
        filters = (list(tf.get_logger().filters), list(logging.getLogger("absl").filters))
        import keras_compress as kc
        import keras_compress.runtime.keras_runner, keras_compress.runtime.saved_model_runner
        import keras_compress._tfmot
        model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
        kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        print("RESULT", os.environ.get("TF_USE_LEGACY_KERAS"), tf.keras.version(),
              filters == (list(tf.get_logger().filters), list(logging.getLogger("absl").filters)),
              tf_keras.utils.get_custom_objects()["QuantizeLayer"] is Mine)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("RESULT")[-1].split() == ["None", "3.15.1", "True", "True"]
    assert not hasattr(kc, "keras")


def test_a_keras3_process_never_imports_tf_keras_or_tfmot():
    """prune -> fit -> strip -> Distiller -> QAT on JAX. (TensorFlow may load: Keras 3 imports it
    itself to serialize a layer's config when it is installed.)"""
    script = textwrap.dedent("""
        import os, sys
        os.environ["KERAS_BACKEND"] = "jax"
        import numpy as np, keras
        import keras_compress as kc
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
        x, y = np.random.rand(64, 8, 8, 1).astype("float32"), np.random.randint(0, 10, 64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        pruned = kc.pruning.prune(model, kc.pruning.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4))
        pruned.compile("adam", loss)
        pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
        student = kc.pruning.strip(pruned)
        print("SPARSITY", kc.pruning.sparsity(student).total_sparsity)
        distiller = kc.Distiller(student=student, teacher=model)
        distiller.compile(optimizer="adam")
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
        qat = kc.quantization.quantize_aware(distiller.student)
        qat.compile("adam", loss)
        qat.fit(x, y, batch_size=16, epochs=1, verbose=0)
        print("IMPORTED", [m for m in ("tf_keras", "tensorflow_model_optimization") if m in sys.modules])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SPARSITY 0.5" in result.stdout
    assert result.stdout.split("IMPORTED")[-1].strip() == "[]"


def _private_reads_of_others(tree, ours):
    """`(line, name)` of each `x._name` read, or `getattr(x, "_name")`, whose name the package
    defines nowhere: another library's private attribute."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = node.attr
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            name = node.args[1].value
        else:
            continue
        if name.startswith("_") and not name.startswith("__") and name not in ours:
            yield node.lineno, name


def _names_defined(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def test_only_the_flavour_modules_read_private_attributes_of_other_libraries():
    import pathlib

    package = pathlib.Path(kc.__file__).parent
    trees = {str(path.relative_to(package)): ast.parse(path.read_text()) for path in package.rglob("*.py")}
    ours = set().union(*(_names_defined(tree) for tree in trees.values()))
    # LiteRT's interpreter lists its operators through this method alone.
    allowed = {("formats/tflite.py", "_get_ops_details")}
    reads = sorted((module, line, name) for module, tree in trees.items()
                   if module not in ("_keras.py", "_keras3.py", "_tfmot.py")
                   for line, name in _private_reads_of_others(tree, ours) if (module, name) not in allowed)
    assert reads == []


def test_only_the_flavour_modules_reach_keras_internals():
    import pathlib
    import re

    package = pathlib.Path(kc.__file__).parent
    tf_keras_importers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                                if re.search(r"^\s*(import tf_keras|from tf_keras)|tensorflow\.keras",
                                             p.read_text(), re.M))
    assert tf_keras_importers == ["_keras.py"]
    private_keras3 = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                            if re.search(r"(?<!tf_)keras\.src\.", p.read_text()))
    assert private_keras3 == ["_keras3.py"]


@pytest.mark.parametrize("size, channels, shape", [(None, 1, (8, 8, 1)), (32, 3, (32, 32, 3))])
def test_digits_are_scaled_images_with_a_channel_axis(size, channels, shape):
    (x_train, y_train), (x_test, y_test) = kc.datasets.digits(size=size, channels=channels)
    assert x_train.shape[1:] == shape and x_test.shape[1:] == shape
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() == pytest.approx(1.0)
    assert set(np.unique(y_train)) == set(range(10))


@pytest.mark.parametrize("kwargs, message", [(dict(channels=2), "channels must be 1 or 3"),
                                             (dict(size=4), "size must be"),
                                             (dict(test_size=1.5), "test_size")])
def test_digits_reject_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kc.datasets.digits(**kwargs)


def test_tokens_are_a_balanced_task_that_the_markers_decide():
    (x_train, y_train), (x_test, y_test) = kc.datasets.tokens(rows=400, maxlen=16, vocab_size=100)
    assert x_train.shape == (300, 16) and x_test.shape == (100, 16) and x_train.dtype == np.int32
    assert 10 <= x_train[x_train >= 10].min() and x_train.max() < 100 and not np.isin(x_train, [0, 1]).any()
    markers = lambda ids, low: np.sum((ids >= low) & (ids < low + 4), axis=1)  # noqa: E731
    np.testing.assert_array_equal(y_train, markers(x_train, 2) > markers(x_train, 6))
    assert 0.35 < y_train.mean() < 0.65


@pytest.mark.parametrize("kwargs, message", [(dict(maxlen=4), "maxlen must"), (dict(rows=2), "rows must"),
                                             (dict(vocab_size=10), "vocab_size"),
                                             (dict(test_size=0), "test_size")])
def test_tokens_reject_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kc.datasets.tokens(**kwargs)


def test_info_prints_versions_providers_and_gpu(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ("TensorFlow", "tf_keras", "tfmot", "tf2onnx", "ONNX Runtime", "ONNX Runtime providers",
                  "LiteRT", "TensorRT", "GPU visible to TensorFlow"):
        assert any(line.startswith(label + " ") for line in out.splitlines()), label
    import tensorflow as tf

    assert tf.__version__ in out
    assert "CPUExecutionProvider" in out


def test_info_prints_no_native_start_up_lines():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "keras_compress.cli", "info"], capture_output=True,
                          text=True, env=env, timeout=300, check=True)
    assert done.stdout.startswith("keras_compress ") and done.stderr == ""


def test_help_lists_only_working_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\S+)", out, flags=re.MULTILINE)
    assert sorted(listed) == ["benchmark", "check-tensorrt", "compress", "demo", "export", "info", "inspect",
                              "search"]


@pytest.fixture
def model_path(tmp_path, tf_keras_cnn):
    """The trained CNN saved as .keras, for the commands to read."""
    path = str(tmp_path / "cnn.keras")
    tf_keras_cnn.save(path)
    return path


def test_export_and_inspect_commands(tmp_path, tf_keras_cnn, model_path, capsys, digits):
    samples = str(tmp_path / "samples.npz")
    np.savez(samples, x=digits[1][0][:16])
    out = str(tmp_path / "cnn.onnx")
    assert cli.main(["export", model_path, "-o", out, "--opset", "15", "--sample-data", samples]) == 0
    printed = capsys.readouterr().out
    assert "onnx artifact" in printed and "top-1 agreement 100.00%" in printed and "opset=15" in printed
    assert cli.main(["export", model_path, "-o", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["inspect", out]) == 0
    printed = capsys.readouterr().out
    assert ("operators:" in printed and "Conv: 2" in printed
            and f"{tf_keras_cnn.input_names[0]}: shape [None, 8, 8, 1]" in printed)
    assert cli.main(["inspect", model_path]) == 0
    printed = capsys.readouterr().out
    assert "conv_b (Conv2D): 1,168 params, 0.0% sparse" in printed and "parameters:" in printed


def test_export_command_quantizes_and_checks_tensorrt_readiness(tmp_path, model_path, capsys, digits):
    calibration = str(tmp_path / "calibration.npz")
    np.savez(calibration, x=digits[0][0][:64])
    out = str(tmp_path / "cnn_int8.onnx")
    assert cli.main(["export", model_path, "-o", out, "--quantize", "static", "--calibration", calibration,
                     "--calibrate-method", "entropy"]) == 0
    printed = capsys.readouterr().out
    assert "precision: int8" in printed and "calibration_method=entropy" in printed
    assert cli.main(["check-tensorrt", out]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"TensorRT readiness of {out}: ready"
    assert cli.main(["export", model_path, "-o", str(tmp_path / "x.onnx"), "--quantize", "static"]) == 2
    assert "needs calibration_data" in capsys.readouterr().err


def _public_callables():
    """`(name, function)` of every public function, and of the public methods (and constructors)
    our public classes define, except the Keras hooks a Model or Callback subclass overrides."""
    modules = {"kc": kc, **{name: importlib.import_module(f"keras_compress.{name}") for name in (
        "analysis", "pruning", "quantization", "clustering", "distillation", "tuning", "runtime",
        "layer_kinds", "datasets", "export", "benchmark")}}
    for module_name, module in modules.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj
            elif inspect.isclass(obj) and not issubclass(obj, Exception):
                keras_hooks = any(base.__name__ in ("Model", "Callback") for base in obj.__mro__[1:])
                for attribute, value in vars(obj).items():
                    if inspect.isfunction(value) and (attribute == "__init__" or not (
                            attribute.startswith("_") or keras_hooks)):
                        yield f"{module_name}.{name}.{attribute}", value


def test_the_public_api_has_type_hints():
    missing = []
    for name, function in _public_callables():
        signature = inspect.signature(function)
        unannotated = [p.name for p in signature.parameters.values()
                       if p.name not in ("self", "cls") and p.annotation is p.empty]
        if unannotated or (signature.return_annotation is signature.empty and not name.endswith("__init__")):
            missing.append(f"{name}{signature}")
    assert missing == []
