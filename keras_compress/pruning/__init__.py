"""Pruning inside `model.fit`: schedules, `prune`, `PruningCallback`, `strip`, `shrink`."""

from keras_compress.pruning.callback import PruningCallback
from keras_compress.pruning.prune import prune
from keras_compress.pruning.prune import strip
from keras_compress.pruning.report import SparsityReport
from keras_compress.pruning.report import sparsity
from keras_compress.pruning.schedules import ConstantSparsity
from keras_compress.pruning.schedules import PolynomialDecay
from keras_compress.pruning.shrink import shrink

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningCallback",
    "SparsityReport",
    "prune",
    "shrink",
    "sparsity",
    "strip",
]
