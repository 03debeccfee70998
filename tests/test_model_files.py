import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

import keras_compress as kc
from models import reloaded


def _lambda_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs))


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
def test_code_in_a_model_file_is_refused_unless_asked_for_by_name(tmp_path, suffix):
    path = str(tmp_path / f"model{suffix}")
    _lambda_model().save(path)
    with pytest.raises(kc.ModelFileError, match="Lambda layer.*safe_mode=False"):
        kc.load_model(path)
    model = kc.load_model(path, safe_mode=False)
    np.testing.assert_allclose(model.predict(np.ones((1, 3)), verbose=0), 2.0)


def test_missing_truncated_and_foreign_files_give_clear_errors(tmp_path, tf_keras_cnn):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        kc.load_model(str(tmp_path / "missing.keras"))
    good = str(tmp_path / "good.keras")
    tf_keras_cnn.save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(good, "rb").read()[:2000])
    with pytest.raises(kc.CorruptFileError, match="truncated.keras.*truncated, corrupt"):
        kc.load_model(str(truncated))
    with pytest.raises(kc.WrongFormatError, match="notes.txt is not a Keras model file: expected"):
        (tmp_path / "notes.txt").write_text("hi")
        kc.load_model(str(tmp_path / "notes.txt"))
    with pytest.raises(kc.WrongFormatError, match="good.h5 is a .keras archive.*rename it"):
        (tmp_path / "good.h5").write_bytes(open(good, "rb").read())
        kc.load_model(str(tmp_path / "good.h5"))
    os.makedirs(tmp_path / "folder")
    with pytest.raises(kc.WrongFormatError, match="not a SavedModel"):
        kc.load_model(str(tmp_path / "folder"))
    tflite = tmp_path / "model.keras"  # another format's file, named as a Keras file
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    with pytest.raises(kc.WrongFormatError, match="it holds a model in TFLite format, which kc.load runs"):
        kc.load_model(str(tflite))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx")
    with pytest.raises(kc.ModelFileError, match="corrupt.onnx as onnx"):
        kc.load(str(corrupt))


def test_pruned_models_load_without_tfmot_scopes(tmp_path, tf_keras_cnn):
    pruned = kc.pruning.prune(tf_keras_cnn, kc.pruning.ConstantSparsity(0.5))
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    # fresh processes, no tfmot scope
    for load in ("keras_compress.load_model", "tf_keras.models.load_model"):
        script = (f"import keras_compress.pruning, tf_keras\nmodel = {load}({path!r})\n"
                  "print(type(model.layers[0]).__name__, model.layers[0].pruning_schedule.target_sparsity)")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.stdout.split()[-2:] == ["PruneLowMagnitude", "0.5"], done.stderr[-2000:]
    loaded = kc.load_model(path)
    x = np.ones((2, 8, 8, 1), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    assert loaded.layers[0].pruning_schedule.get_config() == pruned.layers[0].pruning_schedule.get_config()


def test_every_model_kind_the_package_makes_loads_in_safe_mode(tmp_path, tf_keras_cnn, float_and_qat):
    """Safe mode refuses code, not the package's own models: pruned, QAT, op layers (x * 2), every format."""
    inputs = keras.Input((3,), name="x")
    with_ops = keras.Model(inputs, keras.layers.Dense(2, activation="swish")(inputs) * 2.0 + 1.0)
    models = {"cnn": tf_keras_cnn, "qat": float_and_qat[1], "ops": with_ops,
              "pruned": kc.pruning.prune(tf_keras_cnn, kc.pruning.ConstantSparsity(0.5))}
    for name, model in models.items():
        for suffix in (".keras", ".h5", ""):
            if suffix == ".h5" and name in ("qat", "pruned"):
                continue  # tfmot wrappers do not save to legacy HDF5
            loaded = reloaded(model, tmp_path / name, suffix)
            x = np.ones((2, *model.input_shape[1:]), "float32")
            np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5,
                                       err_msg=f"{name}{suffix}")


def _rewrite_config(path, change):
    """Rewrites the config.json of the .keras archive at `path` with `change(config)`."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_keras_3_files_are_screened_then_loaded_as_keras_3_models(tmp_path, digits):
    import keras as keras3

    from models import small_cnn

    pruned = kc.pruning.prune(small_cnn(keras=keras3), kc.pruning.ConstantSparsity(0.5))
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = kc.load_model(path)
    assert isinstance(loaded, keras3.Model) and kc.pruning.sparsity(loaded).to_dict() == \
        kc.pruning.sparsity(pruned).to_dict()
    x = digits[1][0][:8]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)

    inputs = keras3.Input((3,))
    lambda_path = str(tmp_path / "lambda.keras")
    keras3.Model(inputs, keras3.layers.Lambda(lambda t: t * 2.0)(inputs)).save(lambda_path)
    with pytest.raises(kc.ModelFileError, match="Lambda layer.*safe_mode=False"):
        kc.load_model(lambda_path)

    def smuggle(config):
        config["config"]["layers"][1]["module"] = "subprocess"
    _rewrite_config(path, smuggle)
    with pytest.raises(kc.ModelFileError, match="from module 'subprocess', which is neither Keras"):
        kc.load_model(path)

