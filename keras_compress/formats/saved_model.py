"""SavedModel folders with a `serving_default` signature, run by TensorFlow."""

import os

from keras_compress.formats.format import Format


def _holds(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))


FORMAT = Format(
    name="saved_model", title="SavedModel", suffixes=(),
    exporter="keras_compress.export.saved_model:export_saved_model",
    runner="keras_compress.runtime.saved_model_runner:SavedModelRunner",
    libraries=("tensorflow",), holds=_holds, runs_on_tensorflow=True)
