"""Runs a SavedModel folder through its `serving_default` signature."""

import logging
import os

import tensorflow as tf

from keras_compress._types import PathLike
from keras_compress.runtime.metadata import KEY, decode, ordered
from keras_compress.runtime.runner import Runner
from keras_compress.runtime.tensors import TensorInfo

__all__ = ["SavedModelRunner", "metadata_path"]


class _ServingNeedsNoGradients(logging.Filter):
    """SavedModels of JAX-backend models hold jax2tf's custom gradients, which TensorFlow warns
    it cannot restore; serving never asks for gradients, so that warning is noise here."""

    def filter(self, record):
        return "with ops with unsaved custom gradients" not in record.getMessage()


_QUIET_SERVING = _ServingNeedsNoGradients()


def metadata_path(folder):
    return os.path.join(folder, "assets.extra", f"{KEY}.json")


def _info(name, spec):
    return TensorInfo(name, tuple(spec.shape), spec.dtype.as_numpy_dtype.__name__)


class SavedModelRunner(Runner):
    """A SavedModel's `serving_default` signature, run by TensorFlow."""

    format = "saved_model"
    on_tensorflow = True

    def __init__(self, path: PathLike):
        logging.getLogger("absl").addFilter(_QUIET_SERVING)  # once: a logger keeps no duplicates
        self.loaded = tf.saved_model.load(str(path))
        if "serving_default" not in self.loaded.signatures:
            raise ValueError(f"SavedModel {path} has no 'serving_default' signature.")
        self._signature = self.loaded.signatures["serving_default"]
        meta_file = metadata_path(str(path))
        self.metadata = {}
        if os.path.exists(meta_file):
            with open(meta_file) as file:
                self.metadata = decode(file.read())
        in_specs = self._signature.structured_input_signature[1]
        out_specs = self._signature.structured_outputs
        super().__init__(
            [_info(n, in_specs[n]) for n in ordered(sorted(in_specs), self.metadata, "inputs")],
            [_info(n, out_specs[n]) for n in ordered(sorted(out_specs), self.metadata, "outputs")])

    def _run(self, arrays):
        results = self._signature(**{info.name: tf.constant(a) for info, a in zip(self.inputs, arrays)})
        return [results[info.name].numpy() for info in self.outputs]
