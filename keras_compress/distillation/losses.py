"""Distillation losses: the soft (teacher) term and its classic sum with the hard term."""

import tensorflow as tf

from keras_compress._keras import keras

__all__ = ["distillation_loss", "soft_target_loss", "as_logits"]

_EPSILON = 1e-7


def check_temperature_and_alpha(temperature, alpha, allow_none_alpha=False):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if alpha is None and allow_none_alpha:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def as_logits(outputs, from_logits):
    """Logits for `outputs`: themselves, or log-probabilities (softmax(log p) == p)."""
    outputs = tf.convert_to_tensor(outputs)
    return outputs if from_logits else tf.math.log(tf.clip_by_value(outputs, _EPSILON, 1.0))


def soft_target_loss(student_logits, teacher_logits, temperature):
    """Per-example KL(softmax(teacher / T) || softmax(student / T)) * T**2.

    Scaling by `T**2` keeps the gradients of the soft term the same size whatever
    the temperature (they shrink as 1/T**2 otherwise), so `alpha` weighs the two
    terms the same way at every T.
    """
    teacher = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    student = tf.nn.softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return keras.losses.kl_divergence(teacher, student) * temperature ** 2


def distillation_loss(student_logits, teacher_logits, labels, temperature=3.0, alpha=None):
    """The distillation loss of a batch, averaged over its examples.

    With `alpha=None` it is the classic sum `soft + hard`; otherwise
    `alpha * hard + (1 - alpha) * soft`, as in `Distiller`. `soft` is
    `soft_target_loss` (KL on outputs softened by `temperature`, times `T**2`);
    `hard` is the cross-entropy of the student's logits with `labels`, which are
    class indices (sparse) or one-hot rows.

    Example:
        >>> import numpy as np
        >>> logits = np.array([[2.0, 0.0, -1.0]])
        >>> float(distillation_loss(logits, logits, [0], temperature=2.0))  # soft term is 0
        0.1698...
    """
    check_temperature_and_alpha(temperature, alpha, allow_none_alpha=True)
    student_logits = tf.convert_to_tensor(student_logits, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == student_logits.shape.rank:
        hard = keras.losses.categorical_crossentropy(labels, student_logits, from_logits=True)
    else:
        hard = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    total = hard + soft if alpha is None else alpha * hard + (1.0 - alpha) * soft
    return tf.reduce_mean(total)
