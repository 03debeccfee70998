"""The native `.keras` archive (a zip of config, weights and metadata), run by Keras."""

from keras_compress.formats.format import Format


def _holds(path):
    with open(path, "rb") as file:
        return file.read(4) == b"PK\x03\x04"


FORMAT = Format(
    name="keras", title=".keras", suffixes=(".keras",),
    exporter="keras_compress.export.saved_model:export_keras",
    runner="keras_compress.runtime.keras_runner:KerasRunner.from_file",
    libraries=("tensorflow", "tf-keras"), runner_options=("safe_mode", "custom_objects"), holds=_holds)
