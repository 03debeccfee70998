"""The type names of the public API.

keras_compress loads a Keras flavour only when a model of it comes, and neither Keras ships
type information a checker reads, so Keras objects are named for what they must be rather
than imported: a `KerasModel` is a tf_keras or a Keras 3 model.
"""

import os
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np

__all__ = ["KerasModel", "KerasLayer", "PathLike", "Arrays", "Data", "Preserve", "Exclude", "Schedule"]

KerasModel: TypeAlias = Any  # a tf_keras or Keras 3 model
KerasLayer: TypeAlias = Any  # a tf_keras or Keras 3 layer
PathLike: TypeAlias = str | os.PathLike
Arrays: TypeAlias = np.ndarray | Sequence[np.ndarray] | dict[str, np.ndarray]
Data: TypeAlias = Any  # arrays, `(x, y)`, a tf.data.Dataset or a Keras PyDataset
Preserve: TypeAlias = bool | Literal["auto"]
Exclude: TypeAlias = str | Sequence[str] | Any | None  # layer names, or a predicate on layers
Schedule: TypeAlias = Any  # a PolynomialDecay or ConstantSparsity (keras_compress.pruning's or tfmot's)
