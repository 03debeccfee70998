"""SavedModel export with a `serving_default` signature, and the `.keras` and legacy `.h5` formats."""

import os

import tensorflow as tf

from keras_compress._flavour import supports
from keras_compress.errors import ExportError
from keras_compress.export.signature import serving_function
from keras_compress.runtime.metadata import encode
from keras_compress.runtime.saved_model_runner import metadata_path

__all__ = ["export_saved_model", "export_keras", "export_h5"]


def export_saved_model(model, path, metadata):
    """Writes a SavedModel folder whose `serving_default` takes and returns named tensors."""
    function = serving_function(model)
    tf.saved_model.save(function.trackable, path,
                        signatures={"serving_default": function.get_concrete_function()})
    os.makedirs(os.path.dirname(metadata_path(path)), exist_ok=True)
    with open(metadata_path(path), "w") as file:
        file.write(encode(metadata))
    return {}


def export_keras(model, path, metadata):
    """Writes the native `.keras` file (architecture, weights and, if compiled, optimizer)."""
    model.save(path)
    return {}


def check_h5_export(model, request):
    """HDF5 holds tf_keras models only."""
    if not supports(model, "h5"):
        raise ExportError(f"Model {model.name!r} is a Keras 3 model: HDF5 (.h5) is the legacy tf_keras "
                          "format. Save it as .keras (or export it to ONNX, TFLite or a SavedModel).")


def export_h5(model, path, metadata):
    """Writes the legacy HDF5 file, for serving stacks that still read `.h5`."""
    model.save(path, save_format="h5")
    return {}
