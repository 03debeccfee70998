"""The metadata keras_compress writes into every artifact: I/O order, source model, settings.

ONNX keeps it in `metadata_props`, TFLite in a flatbuffer metadata entry and a
SavedModel in `assets.extra/keras_compress.json`. Formats that keep outputs as
a name-keyed map (TFLite and SavedModel signatures) need it to give outputs back
in the model's order.
"""

import json

KEY = "keras_compress"


def artifact_metadata(model, fmt, settings):
    from keras_compress._flavour import keras_for
    from keras_compress._version import __version__

    flavour = keras_for(model)
    return {"producer": f"keras_compress {__version__}", "format": fmt, "source_model": model.name,
            "inputs": flavour.input_names(model), "outputs": flavour.output_names(model),
            "settings": dict(settings)}


def encode(metadata):
    return json.dumps(metadata, sort_keys=True)


def decode(text):
    return json.loads(text) if text else {}


def ordered(names, metadata, key):
    """`names` in the order the metadata records (names it does not know keep their place last)."""
    order = metadata.get(key) or []
    if sorted(order) != sorted(names):
        return list(names)
    return list(order)
