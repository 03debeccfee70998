"""Loading reads exactly the bytes it screened, nothing outside the file, and refuses what a
file declares beyond its budget before allocating it."""

import json
import os
import threading
import zipfile

import h5py
import numpy as np
import pytest
import tf_keras as keras
from gadgets import _lambda_model, _rewrite_config

import keras_compress as kc
import keras_compress.model_files as model_files


def _plain_model():
    inputs = keras.Input((3,), name="inputs")
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_file_swapped_after_screening_is_not_what_loads(tmp_path, monkeypatch, suffix):
    path, evil, marker = str(tmp_path / f"m{suffix}"), str(tmp_path / f"evil{suffix}"), tmp_path / "ran"
    _plain_model().save(path)
    _lambda_model(marker).save(evil, save_format="h5" if suffix == ".h5" else "keras")
    marker.unlink(missing_ok=True)
    screen = model_files.unsafe_reason

    def screen_then_swap(*args, **kwargs):
        reason = screen(*args, **kwargs)
        os.replace(evil, path)  # another process swaps the file between screening and loading
        return reason

    monkeypatch.setattr(model_files, "unsafe_reason", screen_then_swap)
    model = kc.load_model(path)
    assert [layer.name for layer in model.layers] == ["inputs", "dense"]
    assert not marker.exists()
    monkeypatch.undo()
    with pytest.raises(kc.ModelFileError, match="Lambda layer"):
        kc.load_model(path)  # the swapped-in file itself is refused


@pytest.mark.parametrize("flavour", ["tf_keras", "keras3"])
def test_a_vocabulary_path_is_not_read(tmp_path, flavour):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2\ntop-secret\n")
    if flavour == "keras3":
        import keras as module
    else:
        module = keras
    inputs = module.Input((1,), dtype="string")
    model = module.Model(inputs, module.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inputs))
    path = str(tmp_path / "lookup.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    layer = next(item for item in config["config"]["layers"] if item["config"]["name"] == "lookup")
    layer["config"]["vocabulary"] = str(secret)
    _rewrite_config(path, config)
    reads = []
    real_open = open

    def watching_open(file, *args, **kwargs):
        reads.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    import builtins

    builtins.open, saved = watching_open, builtins.open
    try:
        for load in (kc.load_model, kc.load):
            with pytest.raises(kc.ModelFileError, match=r"vocabulary is the path .*secret.txt.*reads no"):
                load(path)
    finally:
        builtins.open = saved
    assert str(secret) not in reads


def _tiny_h5(path):
    _plain_model().save(path, save_format="h5")


def test_a_weight_declared_far_beyond_its_stored_bytes_is_refused_before_allocation(tmp_path):
    path = str(tmp_path / "bomb.h5")
    _tiny_h5(path)
    with h5py.File(path, "r+") as file:
        name = next(name for name in _datasets(file) if name.endswith("kernel:0"))
        del file[name]
        file.create_dataset(name, shape=(60000, 60000), dtype="float32", fillvalue=0.5)  # 13 GB, unstored
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(kc.ModelFileError, match=r"declares 13\.41 GB but only 0 bytes are stored"):
        kc.load_model(path)
    _tiny_h5(path)
    with pytest.raises(kc.ModelFileError,
                       match=r"kernel:0. \(shape \(3, 2\)\) declares 24 bytes, over the limit of 16 bytes"):
        kc.load_model(path, memory_budget=16)


def _datasets(file):
    names = []
    file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def _bomb_member(path, member, size):
    """Rewrites the archive with `member` replaced by `size` bytes of spaces (a few KB deflated)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            if name == member:
                with archive.open(name, "w", force_zip64=True) as writer:
                    chunk = content[:-1] + b" " * (1 << 20)
                    writer.write(chunk)
                    for _ in range(size >> 20):
                        writer.write(b" " * (1 << 20))
                    writer.write(b"}")
            else:
                archive.writestr(name, content)


@pytest.mark.parametrize("member", ["metadata.json", "config.json"])
def test_an_archive_member_that_inflates_a_thousandfold_is_refused_unread(tmp_path, member):
    import keras as keras3

    path = str(tmp_path / "bomb.keras")
    keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)]).save(path)
    _bomb_member(path, member, 80 << 20)
    assert os.path.getsize(path) < 1 << 20
    expected = rf"bomb.keras was refused: the archive member '{member}' declares 81\.00 MB.*limit"
    with pytest.raises(kc.ModelFileError, match=expected):
        kc.load_model(path)


def test_an_op_layer_filling_a_huge_constant_is_refused(tmp_path):
    from gadgets import _h5_op_model

    def fill(config):
        config["config"]["layers"].append({
            "class_name": "TFOpLambda", "name": "fill", "inbound_nodes": [
                ["_CONSTANT_VALUE", -1, [131072, 131072], {"value": 1.0}]],
            "config": {"name": "fill", "trainable": True, "dtype": "float32", "function": "fill"}})

    path = _h5_op_model(str(tmp_path), "fill.h5", fill)
    with pytest.raises(kc.ModelFileError, match=r"'fill' declares 64\.00 GB, over the limit of 8\.00 GB"):
        kc.load_model(path, memory_budget=8 << 30)


@pytest.mark.parametrize("flavour", ["tf_keras", "keras3"])
def test_a_layer_declaring_huge_weights_is_refused_before_it_is_built(tmp_path, flavour):
    import keras as keras3

    module = keras3 if flavour == "keras3" else keras
    inputs = module.Input((1000,))
    path = str(tmp_path / "huge.keras")
    module.Model(inputs, module.layers.Dense(2, name="dense")(inputs)).save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    dense = next(item for item in config["config"]["layers"] if item["config"]["name"] == "dense")
    dense["config"]["units"] = 10**9  # 1000 x 10**9 float32 weights: 4 TB
    _rewrite_config(path, config)
    with pytest.raises(kc.ModelFileError, match=r"\(its layers' weights\) declares 3\.64 TB"):
        kc.load_model(path)
    with pytest.raises(kc.ModelFileError, match="over the limit of .*memory_budget="):
        kc.load_model(path, safe_mode=False)  # a budget, not a screening: it holds without safe mode


def test_a_saved_model_with_a_symlink_outside_or_a_pipe_is_refused(tmp_path):
    folder = tmp_path / "sm"
    _plain_model().save(str(folder), save_format="tf")
    outside = tmp_path / "outside"
    os.rename(folder / "variables", outside)
    os.symlink(outside, folder / "variables")
    for open_ in (kc.load_model, kc.load):
        with pytest.raises(kc.ModelFileError, match="symlink variables -> .*outside.*leads outside the"):
            open_(str(folder))
    os.remove(folder / "variables")
    os.rename(outside, folder / "variables")
    os.mkfifo(folder / "assets.extra")
    with pytest.raises(kc.ModelFileError, match="assets.extra, which is a named pipe"):
        kc.load(str(folder))


def test_a_pipe_given_as_a_model_file_is_refused_without_blocking(tmp_path):
    pipe = str(tmp_path / "model.keras")
    os.mkfifo(pipe)
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("error", _error_of(kc.load_model, pipe)),
                              daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "loading a named pipe blocked"
    assert "is a named pipe" in result["error"]


def _error_of(function, *args):
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        return f"{type(error).__name__}: {error}"
    return "no error"


def test_a_model_within_its_budget_loads_as_before(tmp_path):
    path = str(tmp_path / "ok.h5")
    _tiny_h5(path)
    model = kc.load_model(path, memory_budget=1 << 20)
    assert model.predict(np.ones((1, 3)), verbose=0).shape == (1, 2)
    with pytest.raises(ValueError, match="memory_budget must be a number of bytes >= 1, got 0"):
        kc.load_model(path, memory_budget=0)


@pytest.mark.parametrize("kind", ["external_link", "external_storage"])
def test_hdf5_weights_kept_in_other_files_are_refused(tmp_path, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype="float32").tobytes())
    path = str(tmp_path / "m.h5")
    _tiny_h5(path)
    with h5py.File(path, "r+") as file:
        name = next(name for name in _datasets(file) if name.endswith("kernel:0"))
        del file[name]
        if kind == "external_link":
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["kernel"] = np.zeros((3, 2), "float32")
            file[name] = h5py.ExternalLink(str(tmp_path / "other.h5"), "kernel")
        else:
            file.create_dataset(name, shape=(3, 2), dtype="float32", external=[(str(secret), 0, 24)])
    with pytest.raises(kc.ModelFileError, match="a model file holds its own weights"):
        kc.load_model(path)


def test_a_genuine_saved_model_with_a_vocabulary_file_loads(tmp_path):
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("cat\ndog\n")
    inputs = keras.Input((1,), dtype="string")
    model = keras.Model(inputs, keras.layers.StringLookup(vocabulary=str(vocabulary))(inputs))
    folder = str(tmp_path / "lookup")
    model.save(folder, save_format="tf")
    vocabulary.unlink()  # the folder holds it as an asset
    loaded = kc.load_model(folder)
    assert loaded(np.array([["dog"], ["cow"]])).numpy().ravel().tolist() == [2, 0]


def test_an_op_layer_with_a_large_number_that_allocates_nothing_loads(tmp_path):
    from gadgets import _h5_op_model

    def scale(config):
        layer = next(item for item in config["config"]["layers"] if item["class_name"] == "TFOpLambda")
        layer["inbound_nodes"][0][-1]["y"] = 1e12  # x * 1e12: a number, not a size

    loaded = kc.load_model(_h5_op_model(str(tmp_path), "scale.h5", scale))
    assert loaded.predict(np.ones((1, 3)), verbose=0).max() == pytest.approx(1e12)
