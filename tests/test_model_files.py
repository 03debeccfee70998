import os

import numpy as np
import pytest

import keras_compress as kc

keras = kc.keras


def _lambda_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs))


@pytest.mark.parametrize("suffix", [".keras", ".h5", ""])
def test_code_in_a_model_file_is_refused_unless_asked_for_by_name(tmp_path, suffix):
    path = str(tmp_path / f"model{suffix}")
    _lambda_model().save(path)
    if suffix == "":
        model = kc.load_model(path)  # a SavedModel holds traced graphs, not Python code
    else:
        with pytest.raises(kc.ModelFileError, match="safe_mode=False"):
            kc.load_model(path)
        model = kc.load_model(path, safe_mode=False)
    np.testing.assert_allclose(model.predict(np.ones((1, 3)), verbose=0), 2.0)


def test_missing_truncated_and_foreign_files_give_clear_errors(tmp_path, trained_cnn):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        kc.load_model(str(tmp_path / "missing.keras"))
    good = str(tmp_path / "good.keras")
    trained_cnn.save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(good, "rb").read()[:2000])
    with pytest.raises(kc.ModelFileError, match="truncated.keras.*truncated, corrupt"):
        kc.load_model(str(truncated))
    with pytest.raises(kc.ModelFileError, match="unknown model file type '.txt'"):
        (tmp_path / "notes.txt").write_text("hi")
        kc.load_model(str(tmp_path / "notes.txt"))
    os.makedirs(tmp_path / "folder")
    with pytest.raises(kc.ModelFileError, match="not a SavedModel"):
        kc.load_model(str(tmp_path / "folder"))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx")
    with pytest.raises(kc.ModelFileError, match="corrupt.onnx as onnx"):
        kc.load(str(corrupt))


def test_pruned_models_load_without_tfmot_scopes(tmp_path, trained_cnn):
    pruned = kc.pruning.prune(trained_cnn, kc.pruning.ConstantSparsity(0.5))
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    assert type(kc.load_model(path).layers[0]).__name__ == "PruneLowMagnitude"
