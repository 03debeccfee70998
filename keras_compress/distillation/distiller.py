"""`Distiller`: a Keras model that trains a student on a frozen teacher's softened outputs.

`Distiller(student=..., teacher=...)` builds the Distiller of the student's Keras flavour,
`TfKerasDistiller` or `Keras3Distiller`; both count as instances of `Distiller`. This module
imports neither Keras: the flavour's module loads when a Distiller of it is made.
"""

from keras_compress._flavour import FLAVOURS, TF_KERAS, flavour_road, road
from keras_compress.distillation._settings import DistillerSettings

__all__ = ["Distiller"]


class _EitherFlavour(type):
    """`isinstance(d, Distiller)` holds for the Distiller of either Keras flavour."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, DistillerSettings)

    def __subclasscheck__(cls, subclass):
        return subclass is cls or (isinstance(subclass, type) and issubclass(subclass, DistillerSettings))


class Distiller(metaclass=_EitherFlavour):
    """Trains `student` to match a frozen `teacher` as well as the true labels.

    The training loss is
    `alpha * student_loss(y, student(x)) +
    (1 - alpha) * T**2 * KL(softmax(teacher(x) / T) || softmax(student(x) / T))`
    plus, with `features`, the mean squared error between paired intermediate
    outputs. The soft term is scaled by `T**2` so that its gradients keep their
    size as the temperature T changes. The teacher is never updated and always
    called with `training=False`; the caller's model is left as it was (it is not
    set to `trainable=False`). `fit` and `evaluate` report `loss` (the total above),
    `student_loss` (against the labels) and `distillation_loss` (the soft term).
    Data without labels (`fit(x)`, the usual case: a large unlabeled pool) trains
    on the teacher's outputs alone: the loss is then the soft term. Metrics and
    `predict` use the student. `distiller.student` is an ordinary model to save
    and export on its own; `alpha` and `temperature` are saved with the Distiller.
    Sequence outputs (token classification, language-model heads: `(batch, tokens,
    classes)`) get one term per token, averaged over the tokens the student's Keras
    mask keeps (`Embedding(mask_zero=True)` leaves padding out), weighted by
    per-token `sample_weight` where given, as Keras' own losses reduce them.

    Args:
        student: the model to train, Keras 3 or tf_keras (may be pruned or quantization-aware,
            or a built subclassed model); keyword only.
        teacher: a trained model of the same Keras with the same output shape; keyword only.
        alpha, temperature: the loss settings of a saved Distiller (`compile` sets them).
        student_from_logits, teacher_from_logits: whether each outputs logits
            (True) or probabilities (False).
        features: optional `[(teacher_layer, student_layer), ...]` whose outputs are
            matched by MSE; a learned projection (1x1 convolution or Dense, not part
            of the student) bridges different widths.
        cache_teacher: compute the teacher's outputs once, before training, instead of
            every epoch. Only for array inputs (NumPy), whose samples never change
            between epochs; shuffling is fine. `fit` refuses it for `tf.data`
            datasets and generators, which may augment samples randomly.

    Example:
        >>> import numpy as np, keras, keras_compress as kc
        >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> distiller = kc.Distiller(student=student, teacher=teacher)
        >>> distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=3.0)
        >>> history = distiller.fit(np.ones((8, 4)), np.zeros(8), epochs=1, verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'distillation_loss', 'loss', 'student_loss']
        >>> isinstance(distiller, kc.Distiller), type(distiller).__name__
        (True, 'Keras3Distiller')
    """

    def __new__(cls, *models, student=None, teacher=None, **kwargs):
        # A student of neither flavour gets the tf_keras class, whose checks name the problem
        # (models given by position included).
        model = student if student is not None else next(iter(models), None)
        flavour_class = road(model, "distiller", fallback=TF_KERAS)
        return flavour_class(*models, student=student, teacher=teacher, **kwargs)

    def __init_subclass__(cls, **kwargs):
        raise TypeError("keras_compress.Distiller picks its Keras flavour when called; subclass "
                        "keras_compress.distillation.TfKerasDistiller (tf_keras) or Keras3Distiller "
                        "(Keras 3) instead.")

    @staticmethod
    def from_config(config: dict, custom_objects: dict | None = None):
        """The Distiller `get_config()` describes, of the flavour recorded in it (tf_keras for
        configs saved before it was recorded: tf_keras alone finds classes by module path)."""
        flavour = config.get("flavour", TF_KERAS) if isinstance(config, dict) else None
        if flavour not in FLAVOURS:
            raise ValueError(f"This config names no Keras flavour keras_compress knows ({flavour!r}; a "
                             "config from `get_config()` of a Distiller does): call "
                             "TfKerasDistiller.from_config or Keras3Distiller.from_config for the flavour "
                             "of its models.")
        return flavour_road(flavour, "distiller").from_config(config, custom_objects=custom_objects)
