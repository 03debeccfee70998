import numpy as np
import pytest
import tensorflow as tf

import keras_compress as kc
from keras_compress.distillation.losses import as_logits

rng = np.random.default_rng(0)
STUDENT = rng.standard_normal((6, 5)).astype("float32")
TEACHER = rng.standard_normal((6, 5)).astype("float32")
LABELS = rng.integers(0, 5, 6)


def _reference(student, teacher, labels, temperature):
    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p, q = softmax(teacher / temperature), softmax(student / temperature)
    soft = np.sum(p * np.log(p / q), axis=-1) * temperature ** 2
    hard = -np.log(softmax(student)[np.arange(len(labels)), labels])
    return soft, hard


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
def test_classic_form_is_soft_plus_hard(temperature):
    soft, hard = _reference(STUDENT, TEACHER, LABELS, temperature)
    value = kc.distillation.distillation_loss(STUDENT, TEACHER, LABELS, temperature=temperature)
    assert float(value) == pytest.approx(np.mean(soft + hard), rel=1e-4)


def test_alpha_weighs_hard_against_soft_and_one_hot_labels_work():
    soft, hard = _reference(STUDENT, TEACHER, LABELS, 4.0)
    one_hot = np.eye(5)[LABELS]
    value = kc.distillation.distillation_loss(STUDENT, TEACHER, one_hot, temperature=4.0, alpha=0.3)
    assert float(value) == pytest.approx(np.mean(0.3 * hard + 0.7 * soft), rel=1e-4)


def test_soft_term_gradient_keeps_its_size_across_temperatures():
    student = tf.Variable(STUDENT)

    def gradient_norm(temperature):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(kc.distillation.soft_target_loss(student, TEACHER * 3, temperature))
        return float(tf.norm(tape.gradient(loss, student)))

    norms = [gradient_norm(t) for t in (4.0, 8.0, 16.0)]
    assert max(norms) / min(norms) < 1.5  # without T**2 they would shrink 16-fold


def test_probabilities_become_equivalent_logits():
    probabilities = tf.nn.softmax(TEACHER)
    np.testing.assert_allclose(tf.nn.softmax(as_logits(probabilities, from_logits=False)),
                               probabilities, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [(dict(temperature=0), "temperature must be a number > 0"),
                                             (dict(alpha=1.5), r"alpha must be in \[0, 1\]")])
def test_bad_temperature_or_alpha_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kc.distillation.distillation_loss(STUDENT, TEACHER, LABELS, **kwargs)
