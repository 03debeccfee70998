"""Knowledge distillation: the `Distiller` model and the distillation losses.

Names load on first use.
"""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Distiller": "distiller:Distiller",
    "Keras3Distiller": "keras3_distiller:Keras3Distiller",
    "TfKerasDistiller": "tf_keras_distiller:TfKerasDistiller",
    "distillation_loss": "losses:distillation_loss",
    "soft_target_loss": "losses:soft_target_loss",
})

__all__ = [
    "Distiller",
    "Keras3Distiller",
    "TfKerasDistiller",
    "distillation_loss",
    "soft_target_loss",
]
