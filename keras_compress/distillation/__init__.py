"""Knowledge distillation: the `Distiller` model and the distillation losses.

Names load on first use.
"""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Distiller": "distiller:Distiller",
    "distillation_loss": "losses:distillation_loss",
    "soft_target_loss": "losses:soft_target_loss",
})

__all__ = [
    "Distiller",
    "distillation_loss",
    "soft_target_loss",
]
