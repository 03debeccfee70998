"""Distillation losses: the soft (teacher) term and its classic sum with the hard term.

One formula serves both Keras flavours: it is written on a small set of array operations,
TensorFlow's for tf_keras models and `keras.ops` for Keras 3 ones (so it runs on the
TensorFlow and the JAX backend alike).
"""

import types
from typing import Any

__all__ = ["distillation_loss", "soft_target_loss", "as_logits", "per_position", "tensorflow_ops",
           "keras_ops"]

_EPSILON = 1e-7


def tensorflow_ops():
    """The operations the losses need, from TensorFlow (inside tf_keras training steps)."""
    import tensorflow as tf

    return types.SimpleNamespace(
        convert=lambda x: tf.cast(tf.convert_to_tensor(x), tf.float32), log_softmax=tf.nn.log_softmax,
        softmax=tf.nn.softmax, sum=tf.reduce_sum, mean=tf.reduce_mean, log=tf.math.log, clip=tf.clip_by_value,
        rank=lambda x: x.shape.rank, one_hot=lambda labels, n: tf.one_hot(tf.cast(labels, tf.int32), n),
        reshape=tf.reshape, expand_dims=tf.expand_dims, ones_like=tf.ones_like, maximum=tf.maximum)


def keras_ops():
    """The operations the losses need, from Keras 3 (`keras.ops`, any backend)."""
    from keras import ops

    return types.SimpleNamespace(
        convert=lambda x: ops.cast(ops.convert_to_tensor(x), "float32"), log_softmax=ops.log_softmax,
        softmax=ops.softmax, sum=ops.sum, mean=ops.mean, log=ops.log, clip=ops.clip,
        rank=lambda x: len(x.shape), one_hot=lambda labels, n: ops.one_hot(ops.cast(labels, "int32"), n),
        reshape=ops.reshape, expand_dims=ops.expand_dims, ones_like=ops.ones_like, maximum=ops.maximum)


def _ops_for(*values):
    """TensorFlow's operations for TensorFlow tensors and variables, Keras 3's for anything else."""
    for value in values:
        if (type(value).__module__ or "").startswith("tensorflow"):
            return tensorflow_ops()
    return keras_ops()


def check_temperature_and_alpha(temperature, alpha, allow_none_alpha=False):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if alpha is None and allow_none_alpha:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def as_logits(outputs, from_logits, ops=None):
    """Logits for `outputs`: themselves, or log-probabilities (softmax(log p) == p)."""
    ops = ops or _ops_for(outputs)
    outputs = ops.convert(outputs)
    return outputs if from_logits else ops.log(ops.clip(outputs, _EPSILON, 1.0))


def soft_target_loss(student_logits: Any, teacher_logits: Any, temperature: float, ops: Any = None) -> Any:
    """Per-example KL(softmax(teacher / T) || softmax(student / T)) * T**2.

    Scaling by `T**2` keeps the gradients of the soft term the same size whatever
    the temperature (they shrink as 1/T**2 otherwise), so `alpha` weighs the two
    terms the same way at every T. Computed from log-softmaxes, exactly (no clipping).
    """
    ops = ops or _ops_for(student_logits, teacher_logits)
    teacher_log = ops.log_softmax(ops.convert(teacher_logits) / temperature, axis=-1)
    student_log = ops.log_softmax(ops.convert(student_logits) / temperature, axis=-1)
    teacher = ops.softmax(ops.convert(teacher_logits) / temperature, axis=-1)
    kl = ops.sum(teacher * (teacher_log - student_log), axis=-1)
    return kl * temperature ** 2


def per_position(values: Any, sample_weight: Any = None, mask: Any = None, ops: Any = None) -> tuple:
    """`(values, weights)` of a loss computed per example, `(batch,)`, returned as they are, or per
    position (the tokens of sequences, `(batch, tokens)`), flattened to one value per token and
    weighted as Keras weighs a masked loss: by `sample_weight` (per example or per token) and,
    with `mask` (the student output's Keras mask: False at padding), by `mask * tokens / kept`, so
    that the mean over all values is the mean over the tokens kept. `weights` is None when
    neither is given."""
    ops = ops or _ops_for(values)
    if ops.rank(values) <= 1:  # one value per example: per-token weights become their mean
        if sample_weight is None:
            return values, None
        weights = ops.convert(sample_weight)
        rank = ops.rank(weights)
        return values, weights if rank <= 1 else ops.mean(weights, axis=list(range(1, rank)))
    weights = None
    if sample_weight is not None:
        weights = ops.convert(sample_weight)
        while ops.rank(weights) < ops.rank(values):  # one weight per example: the same for its tokens
            weights = ops.expand_dims(weights, -1)
        weights = weights * ops.ones_like(values)
    if mask is not None:
        kept = ops.convert(mask) * ops.ones_like(values)
        scale = ops.sum(ops.ones_like(values)) / ops.maximum(ops.sum(kept), 1.0)
        weights = kept * scale if weights is None else weights * kept * scale
    flat = lambda tensor: None if tensor is None else ops.reshape(tensor, (-1,))  # noqa: E731
    return flat(values), flat(weights)


def hard_loss(labels, student_logits, ops):
    """Per-example cross-entropy of logits with class indices or one-hot rows."""
    student_logits = ops.convert(student_logits)
    labels = ops.convert(labels)
    if ops.rank(labels) != ops.rank(student_logits):  # class indices
        labels = ops.one_hot(labels, student_logits.shape[-1])
    return -ops.sum(labels * ops.log_softmax(student_logits, axis=-1), axis=-1)


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float = 3.0,
                      alpha: float | None = None) -> Any:
    """The distillation loss of a batch, averaged over its examples.

    With `alpha=None` it is the classic sum `soft + hard`; otherwise
    `alpha * hard + (1 - alpha) * soft`, as in `Distiller`. `soft` is
    `soft_target_loss` (KL on outputs softened by `temperature`, times `T**2`);
    `hard` is the cross-entropy of the student's logits with `labels`, which are
    class indices (sparse) or one-hot rows. Takes NumPy arrays, TensorFlow tensors
    or the tensors of the Keras 3 backend.

    Example:
        >>> import numpy as np
        >>> logits = np.array([[2.0, 0.0, -1.0]])
        >>> float(distillation_loss(logits, logits, [0], temperature=2.0))  # soft term is 0
        0.1698...
    """
    check_temperature_and_alpha(temperature, alpha, allow_none_alpha=True)
    ops = _ops_for(student_logits, teacher_logits, labels)
    hard = hard_loss(labels, student_logits, ops)
    soft = soft_target_loss(student_logits, teacher_logits, temperature, ops)
    total = hard + soft if alpha is None else alpha * hard + (1.0 - alpha) * soft
    return ops.mean(total)
