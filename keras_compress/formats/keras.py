"""The native `.keras` archive (a zip of config, weights and metadata), run by Keras."""

from keras_compress.formats.format import Format


def _holds(path):
    with open(path, "rb") as file:
        return file.read(4) == b"PK\x03\x04"


def _holds_model(path):
    """A Keras archive: a zip whose config.json describes a Keras model, with its metadata."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"config.json", "metadata.json"} <= names:
                return False
            info = archive.getinfo("config.json")
            config = json.loads(archive.read(info)) if info.file_size < 64 << 20 else None
    except (zipfile.BadZipFile, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("config"), dict) and "class_name" in config


FORMAT = Format(
    name="keras", title=".keras", suffixes=(".keras",),
    exporter="keras_compress.export.saved_model:export_keras",
    runner="keras_compress.runtime.keras_runner:KerasRunner.from_file", runs_on_tensorflow=True,
    libraries=("tensorflow", "tf-keras"), runner_options=("safe_mode", "custom_objects", "memory_budget"),
    holds=_holds, holds_model=_holds_model)
