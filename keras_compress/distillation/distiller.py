"""`Distiller`: a Keras model that trains a student on a frozen teacher's softened outputs.

`Distiller(student=..., teacher=...)` gives a model of the students' Keras flavour: this
tf_keras class, or `keras3_distiller.Distiller` for Keras 3 models.
"""

import tensorflow as tf

from keras_compress._flavour import KERAS3, TF_KERAS, flavour_of
from keras_compress._keras import keras
from keras_compress.distillation._settings import DistillerSettings, check_flavour_objects, per_example
from keras_compress.distillation.losses import as_logits, soft_target_loss

__all__ = ["Distiller"]


def _mean_over_features(values):
    rank = values.shape.rank
    return tf.reduce_mean(values, axis=list(range(1, rank))) if rank and rank > 1 else values


@keras.utils.register_keras_serializable(package="keras_compress")
class Distiller(DistillerSettings, keras.Model):
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
    """

    flavour = TF_KERAS

    def __new__(cls, *models, student=None, teacher=None, **kwargs):
        if cls is Distiller and flavour_of(student) == KERAS3:
            from keras_compress.distillation.keras3_distiller import Distiller as Keras3Distiller

            return Keras3Distiller(*models, student=student, teacher=teacher, **kwargs)
        return super().__new__(cls)

    def __init__(self, *models, student=None, teacher=None, student_from_logits=True,
                 teacher_from_logits=True,
                 features=None, cache_teacher=False, alpha=None, temperature=None, **kwargs):
        self._check_models(models, student, teacher)
        super().__init__(**kwargs)
        self._init_settings(student, teacher, student_from_logits, teacher_from_logits, features,
                            cache_teacher, alpha, temperature)
        self._trackers = [keras.metrics.Mean(name) for name in ("loss", "student_loss", "distillation_loss")]
        if self.features:
            self._trackers.append(keras.metrics.Mean("feature_loss"))
        self.built = True  # every weight exists already: the student's, teacher's and projections'

    # -- Keras API ------------------------------------------------------------------
    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None,
                alpha=None, temperature=None, feature_weight=1.0, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            metrics: metrics of the student's outputs against the labels.
            student_loss_fn: the hard loss; default sparse categorical cross-entropy
                matching `student_from_logits`.
            distillation_loss_fn: `fn(teacher_soft_probs, student_soft_probs)`; default KL
                divergence. Its value is multiplied by `temperature**2`.
            alpha: weight of the student loss, in [0, 1]; the soft term gets `1 - alpha`.
                None: the saved Distiller's, else 0.1.
            temperature: softening temperature, > 0. None: the saved Distiller's, else 3.0.
            feature_weight: weight of the feature MSE term (with `features`).
        """
        self._compile_settings(optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha, temperature,
                               feature_weight, kwargs)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = per_example(student_loss_fn or keras.losses.SparseCategoricalCrossentropy(
            from_logits=self.student_from_logits), keras)
        self.distillation_loss_fn = (None if distillation_loss_fn is None
                                     else per_example(distillation_loss_fn, keras))

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
        return _mean_over_features(loss) * self.temperature ** 2

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
                per_example += self.feature_weight * feature
            loss = tf.nn.compute_average_loss(per_example, sample_weight=sample_weight)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        variables = self.student.trainable_variables + [
            v for project in self.projections if project for v in project.trainable_variables]
        self.optimizer.minimize(loss, variables, tape=tape)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft,
                     "feature_loss": feature}, sample_weight)
        return self.compute_metrics(x, y, student_out, sample_weight)

    def _loss_terms(self, y, student_out, teacher_out):
        """`(student loss or None, soft loss, per-example total)`; without labels the total is the
        soft loss."""
        soft = self._soft_loss(student_out, teacher_out)
        if y is None:
            return None, soft, soft
        hard = self.student_loss_fn(y, student_out)
        return hard, soft, self.alpha * hard + (1.0 - self.alpha) * soft

    def _update_trackers(self, values, sample_weight):
        for tracker in self._trackers:
            if values.get(tracker.name) is not None:
                tracker.update_state(values[tracker.name], sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_out = self.student(x, training=False)
        teacher_out = self.teacher(x, training=False)
        hard, soft, per_example = self._loss_terms(y, student_out, teacher_out)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft},
                              sample_weight)
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
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.layers.deserialize(config["student"])
        config["teacher"] = keras.layers.deserialize(config["teacher"])
        return cls(**config)
