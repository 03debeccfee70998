"""Pruning inside `model.fit`: schedules, `prune`, `PruningCallback`, `strip`, `shrink`.

Names load on first use. Importing the package registers the pruning wrapper and schedules
(and, with Keras 3, the `Replaced` layer of shrunk custom layers) with Keras (all that loading a
pruned or shrunk model file needs), so pruned files load with a plain
`load_model` too: with Keras 3 when the process imported it, and with tf_keras unless the
process imported Keras 3 and not tf_keras, so that a Keras 3 process never loads tf_keras or
tfmot. (`keras_compress.load_model` registers whatever a file needs, in any order.)
"""

import sys

from keras_compress._lazy import lazy_exports

if "tf_keras" in sys.modules or "keras" not in sys.modules:
    from keras_compress.pruning import wrapper as _wrapper  # noqa: F401  (registers it and the schedules)
if "keras" in sys.modules:
    from keras_compress import replaced_layers as _replaced_layers  # noqa: F401  (registers Replaced)
    from keras_compress.pruning import keras3_wrapper as _keras3_wrapper  # noqa: F401  (registers it)

__getattr__, __dir__ = lazy_exports(__name__, {
    "ChannelRule": "..layer_kinds:ChannelRule",
    "ConstantSparsity": "schedules:ConstantSparsity",
    "PolynomialDecay": "schedules:PolynomialDecay",
    "PruningCallback": "callback:PruningCallback",
    "SparsityReport": "report:SparsityReport",
    "prune": "prune:prune",
    "register_channel_rule": "..layer_kinds:register_channel_rule",
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
