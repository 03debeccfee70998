"""Pruning inside `model.fit`: schedules, `prune`, `PruningCallback`, `strip`, `shrink`.

Names load on first use. Importing the package registers the pruning wrapper and schedules
with Keras (all that loading a pruned model file needs), so pruned files load with a plain
`keras.models.load_model` too.
"""

from keras_compress._lazy import lazy_exports
from keras_compress.pruning import schedules as _schedules  # noqa: F401  (registers them)
from keras_compress.pruning import wrapper as _wrapper  # noqa: F401  (registers it)

__getattr__, __dir__ = lazy_exports(__name__, {
    "ChannelRule": "layer_rules:ChannelRule",
    "ConstantSparsity": "schedules:ConstantSparsity",
    "PolynomialDecay": "schedules:PolynomialDecay",
    "PruningCallback": "callback:PruningCallback",
    "SparsityReport": "report:SparsityReport",
    "prune": "prune:prune",
    "register_channel_rule": "layer_rules:register_channel_rule",
    "shrink": "shrink:shrink",
    "sparsity": "report:sparsity",
    "strip": "prune:strip",
})

__all__ = [
    "ChannelRule",
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningCallback",
    "SparsityReport",
    "prune",
    "register_channel_rule",
    "shrink",
    "sparsity",
    "strip",
]
