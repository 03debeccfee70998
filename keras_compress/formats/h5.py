"""The legacy HDF5 model file, for serving stacks that still read `.h5`; run by Keras."""

from keras_compress.formats.format import Format

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _holds(path):
    import h5py  # the signature may also sit at offset 512, 1024, ... (a user block)

    with open(path, "rb") as file:
        return file.read(8) == SIGNATURE or h5py.is_hdf5(path)


def _holds_model(path):
    """A Keras HDF5 model file (its `model_config` attribute), not any HDF5 data file."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return "model_config" in file.attrs
    except OSError:
        return False


FORMAT = Format(
    name="h5", title=".h5", suffixes=(".h5", ".hdf5"),
    exporter="keras_compress.export.saved_model:export_h5",
    runner="keras_compress.runtime.keras_runner:KerasRunner.from_file", runs_on_tensorflow=True,
    libraries=("tensorflow", "tf-keras", "h5py"),
    runner_options=("safe_mode", "custom_objects", "memory_budget"), holds=_holds, holds_model=_holds_model,
    check_export="keras_compress.export.saved_model:check_h5_export")
