"""The Keras 3 `Distiller`, on `keras.ops`: the same loss, options and guarantees as the
tf_keras one, on the TensorFlow and the JAX backend. `keras_compress.Distiller(student=...,
teacher=...)` builds it for Keras 3 models.

It differs from Keras' own `keras.distillation.Distiller` (3.12+), whose default
`loss="kl_divergence"` compares raw logits: no softmax, no temperature, no T² scaling.
This one softens both outputs by T and scales the KL term by T², as in Hinton et al.
"""

from typing import Any

import keras
from keras import ops

from keras_compress._flavour import KERAS3
from keras_compress._keras3 import output_mask
from keras_compress._types import KerasModel
from keras_compress.distillation._settings import DistillerSettings, check_flavour_objects
from keras_compress.distillation.losses import as_logits, keras_ops, per_position, soft_target_loss

__all__ = ["Keras3Distiller"]


def _mean_over_features(values, kept_axes=1):
    """`values` averaged over every axis after the first `kept_axes` (the batch, and a sequence's)."""
    rank = len(values.shape)
    return ops.mean(values, axis=list(range(kept_axes, rank))) if rank > kept_axes else values


@keras.saving.register_keras_serializable(package="keras_compress", name="Distiller")
class Keras3Distiller(DistillerSettings, keras.Model):
    """Trains a Keras 3 `student` to match a frozen `teacher` as well as the true labels.

    See `keras_compress.Distiller` for the loss and the arguments. The teacher's variables
    are never trained (they count as non-trainable for this model) and the caller's teacher
    is left as it was.
    """

    flavour = KERAS3

    def __init__(self, *models: KerasModel, student: KerasModel = None, teacher: KerasModel = None,
                 student_from_logits: bool = True, teacher_from_logits: bool = True, features: Any = None,
                 cache_teacher: bool = False, alpha: float | None = None, temperature: float | None = None,
                 **kwargs: Any):
        self._check_models(models, student, teacher)
        super().__init__(**kwargs)
        self._init_settings(student, teacher, student_from_logits, teacher_from_logits, features,
                            cache_teacher, alpha, temperature)
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if self.features else None
        self.built = True  # every weight exists already: the student's, teacher's and projections'

    # -- the teacher never trains: its variables count as non-trainable ------------------
    def _is_teacher(self):
        ids = {id(variable) for variable in self.teacher.variables}
        return lambda variable: id(variable) in ids

    @property
    def trainable_variables(self):
        teacher = self._is_teacher()
        return [v for v in super().trainable_variables if not teacher(v)]

    @property
    def non_trainable_variables(self):
        teacher = self._is_teacher()
        return super().non_trainable_variables + [v for v in super().trainable_variables if teacher(v)]

    @property
    def trainable_weights(self):
        teacher = self._is_teacher()
        return [v for v in super().trainable_weights if not teacher(v)]

    @property
    def non_trainable_weights(self):
        teacher = self._is_teacher()
        return super().non_trainable_weights + [v for v in super().trainable_weights if teacher(v)]

    # -- Keras API ------------------------------------------------------------------------
    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _soft_loss(self, student_out, teacher_out):
        student_logits = as_logits(student_out, self.student_from_logits, keras_ops())
        teacher_logits = as_logits(teacher_out, self.teacher_from_logits, keras_ops())
        if self.distillation_loss_fn is None:
            return soft_target_loss(student_logits, teacher_logits, self.temperature, keras_ops())
        loss = self.distillation_loss_fn(ops.softmax(teacher_logits / self.temperature),
                                         ops.softmax(student_logits / self.temperature))
        return _mean_over_features(loss, len(student_logits.shape) - 1) * self.temperature ** 2

    def _split_targets(self, y):
        """`(labels, cached teacher outputs or None)`: `fit` with `cache_teacher` passes both."""
        if self.cache_teacher and isinstance(y, (list, tuple)):
            return y[0], list(y[1:])
        return y, None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels, cached = self._split_targets(y)
        if cached is not None:
            teacher_out, teacher_feats = cached[0], cached[1:]
        elif self._teacher_features is not None:
            outputs = self._teacher_features(x, training=False)
            teacher_out, teacher_feats = outputs[0], list(outputs[1:])
        else:
            teacher_out, teacher_feats = self.teacher(x, training=False), []
        soft = self._soft_loss(y_pred, teacher_out)
        per_example = soft
        hard = None
        if labels is not None:
            hard = self.student_loss_fn(labels, y_pred)
            per_example = self.alpha * hard + (1.0 - self.alpha) * soft
        if self.features:
            student_feats = list(self._student_features(x, training=training)[1:])
            feature = sum(_mean_over_features(ops.square((project(s) if project else s) - t))
                          for project, s, t in zip(self.projections, student_feats, teacher_feats))
            self.feature_loss_tracker.update_state(*per_position(feature, sample_weight, None, keras_ops()))
            while len(feature.shape) < len(per_example.shape):  # per token: each of its tokens
                feature = ops.expand_dims(feature, -1)
            per_example = per_example + self.feature_weight * feature
        # Sequence outputs give one value per token: their mean over the tokens kept (not padding).
        mask = output_mask(y_pred)
        values, weights = per_position(per_example, sample_weight, mask, keras_ops())
        weighted = values if weights is None else values * weights
        loss = ops.sum(weighted) / ops.cast(ops.shape(values)[0], "float32")
        if self.losses:
            loss = loss + ops.sum([ops.sum(penalty) for penalty in self.losses])
        for tracker, term in ((self.student_loss_tracker, hard), (self.distillation_loss_tracker, soft)):
            if term is not None:
                term_values, term_weights = per_position(term, sample_weight, mask, keras_ops())
                tracker.update_state(term_values, sample_weight=term_weights)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels, _ = self._split_targets(y)
        if labels is not None:
            return super().compute_metrics(x, labels, y_pred, sample_weight)
        # No labels: no student loss, no metrics against labels.
        return {name: value for name, value in self.get_metrics_result().items()
                if name in ("loss", "distillation_loss", "feature_loss")}

    def get_metrics_result(self):
        """Every metric's result, except compiled metrics that never saw labels."""
        results = {}
        for metric in self.metrics:
            if getattr(metric, "built", True):
                value = metric.result()
                results.update(value if isinstance(value, dict) else {metric.name: value})
        return results

    def fit(self, x=None, y=None, *args, sample_weight=None, class_weight=None, **kwargs):
        check_flavour_objects(kwargs.get("callbacks") or [], "callbacks", self.flavour)
        self._new_step_if_labels_change("train", x, y)
        if self.cache_teacher:
            y, sample_weight = self._cached_targets(x, y, sample_weight, class_weight,
                                                    kwargs.get("batch_size"))
            class_weight = None
        return super().fit(x, y, *args, sample_weight=sample_weight, class_weight=class_weight, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_flavour_objects(kwargs.get("callbacks") or [], "callbacks", self.flavour)
        self._new_step_if_labels_change("test", x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def get_config(self):
        return self._settings_config(keras.saving.serialize_keras_object)

    def get_compile_config(self):
        return None  # compile again after loading (alpha and temperature are in the config)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls._from_settings_config(config, lambda model: keras.saving.deserialize_keras_object(
            model, custom_objects=custom_objects))
