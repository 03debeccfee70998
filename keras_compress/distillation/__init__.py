"""Knowledge distillation: the `Distiller` model and the distillation losses."""

from keras_compress.distillation.distiller import Distiller
from keras_compress.distillation.losses import distillation_loss
from keras_compress.distillation.losses import soft_target_loss

__all__ = [
    "Distiller",
    "distillation_loss",
    "soft_target_loss",
]
