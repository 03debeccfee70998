"""The tf_keras `Distiller`, on TensorFlow ops; `keras_compress.Distiller(student=...,
teacher=...)` builds it for tf_keras models."""

from typing import Any

import tensorflow as tf

from keras_compress._flavour import TF_KERAS
from keras_compress._keras import keras, output_mask
from keras_compress._types import KerasModel
from keras_compress.distillation._settings import DistillerSettings, check_flavour_objects
from keras_compress.distillation.losses import as_logits, per_position, soft_target_loss

__all__ = ["TfKerasDistiller"]


def _mean_over_features(values, kept_axes=1):
    """`values` averaged over every axis after the first `kept_axes` (the batch, and a sequence's)."""
    rank = values.shape.rank
    return tf.reduce_mean(values, axis=list(range(kept_axes, rank))) if rank and rank > kept_axes else values


@keras.utils.register_keras_serializable(package="keras_compress", name="Distiller")
class TfKerasDistiller(DistillerSettings, keras.Model):
    """Trains a tf_keras `student` to match a frozen `teacher` as well as the true labels.

    See `keras_compress.Distiller` for the loss and the arguments.
    """

    flavour = TF_KERAS

    def __init__(self, *models: KerasModel, student: KerasModel = None, teacher: KerasModel = None,
                 student_from_logits: bool = True, teacher_from_logits: bool = True, features: Any = None,
                 cache_teacher: bool = False, alpha: float | None = None, temperature: float | None = None,
                 **kwargs: Any):
        self._check_models(models, student, teacher)
        super().__init__(**kwargs)
        self._init_settings(student, teacher, student_from_logits, teacher_from_logits, features,
                            cache_teacher, alpha, temperature)
        self._trackers = [keras.metrics.Mean(name) for name in ("loss", "student_loss", "distillation_loss")]
        if self.features:
            self._trackers.append(keras.metrics.Mean("feature_loss"))
        self.built = True  # every weight exists already: the student's, teacher's and projections'

    # -- Keras API ------------------------------------------------------------------
    @property
    def metrics(self):
        # The loss trackers first, as Keras lists "loss" first; Keras tracks them already.
        return self._trackers + [m for m in super().metrics if all(m is not t for t in self._trackers)]

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _soft_loss(self, student_out, teacher_out):
        student_logits = as_logits(student_out, self.student_from_logits)
        teacher_logits = as_logits(teacher_out, self.teacher_from_logits)
        if self.distillation_loss_fn is None:
            return soft_target_loss(student_logits, teacher_logits, self.temperature)
        soften = lambda logits: tf.nn.softmax(tf.cast(logits, tf.float32) / self.temperature)  # noqa: E731
        loss = self.distillation_loss_fn(soften(teacher_logits), soften(student_logits))
        return _mean_over_features(loss, student_logits.shape.rank - 1) * self.temperature ** 2

    @staticmethod
    def _outputs(model, features, x, training):
        """`(output, [feature outputs])` of the teacher or the student."""
        if features is None:
            return model(x, training=training), []
        outputs = features(x, training=training)
        return outputs[0], list(outputs[1:])

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.cache_teacher:
            y, teacher_out, teacher_feats = y[0], y[1], list(y[2:])
        else:
            teacher_out, teacher_feats = self._outputs(self.teacher, self._teacher_features, x, False)
        with tf.GradientTape() as tape:
            student_out, student_feats = self._outputs(self.student, self._student_features, x, True)
            hard, soft, per_example = self._loss_terms(y, student_out, teacher_out)
            feature = 0.0
            if self.features:
                feature = tf.add_n([
                    _mean_over_features(tf.square((project(s) if project else s) - t))
                    for project, s, t in zip(self.projections, student_feats, teacher_feats)])
                per_token = feature
                while per_token.shape.rank < per_example.shape.rank:  # per token: each of its tokens
                    per_token = tf.expand_dims(per_token, -1)
                per_example += self.feature_weight * per_token
            # Sequence outputs give one value per token: their mean over the tokens kept (not padding).
            values, weights = per_position(per_example, sample_weight, output_mask(student_out))
            loss = tf.nn.compute_average_loss(values, sample_weight=weights)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        variables = self.student.trainable_variables + [
            v for project in self.projections if project for v in project.trainable_variables]
        self.optimizer.minimize(loss, variables, tape=tape)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft,
                               "feature_loss": feature}, sample_weight, output_mask(student_out))
        return self.compute_metrics(x, y, student_out, sample_weight)

    def _loss_terms(self, y, student_out, teacher_out):
        """`(student loss or None, soft loss, per-example total)`; without labels the total is the
        soft loss."""
        soft = self._soft_loss(student_out, teacher_out)
        if y is None:
            return None, soft, soft
        hard = self.student_loss_fn(y, student_out)
        return hard, soft, self.alpha * hard + (1.0 - self.alpha) * soft

    def _update_trackers(self, values, sample_weight, mask=None):
        for tracker in self._trackers:
            if values.get(tracker.name) is not None:
                value, weights = per_position(values[tracker.name], sample_weight, mask)
                tracker.update_state(value, sample_weight=weights)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_out = self.student(x, training=False)
        teacher_out = self.teacher(x, training=False)
        hard, soft, per_example = self._loss_terms(y, student_out, teacher_out)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft},
                              sample_weight, output_mask(student_out))
        if y is not None:
            self.compiled_metrics.update_state(y, student_out, sample_weight)
        trackers = self._trackers[:3] if y is not None else [self._trackers[0], self._trackers[2]]
        return {m.name: m.result()
                for m in trackers + (self.compiled_metrics.metrics if y is not None else [])}

    def compute_metrics(self, x, y, y_pred, sample_weight):
        if y is None:  # no labels: no student loss, no metrics
            return {m.name: m.result() for m in self._trackers if m.name != "student_loss"}
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def fit(self, x=None, y=None, *args, sample_weight=None, class_weight=None, **kwargs):
        check_flavour_objects(kwargs.get("callbacks") or [], "callbacks", self.flavour)
        self._new_step_if_labels_change("train", x, y)
        if not self.cache_teacher:
            return super().fit(x, y, *args, sample_weight=sample_weight, class_weight=class_weight, **kwargs)
        targets, sample_weight = self._cached_targets(x, y, sample_weight, class_weight,
                                                      kwargs.get("batch_size"))
        return super().fit(x, targets, *args, sample_weight=sample_weight, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._new_step_if_labels_change("test", x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def get_config(self):
        return self._settings_config(keras.layers.serialize)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls._from_settings_config(config, lambda model: keras.layers.deserialize(
            model, custom_objects=custom_objects))
