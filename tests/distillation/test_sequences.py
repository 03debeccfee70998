"""Distillation of sequence models: one KL term per token, averaged over the tokens kept (the
student's Keras mask leaves padding out, as Keras' own losses do), with per-token sample weights;
in both Kerases, and on JAX."""

import numpy as np
import pytest

import keras_compress as kc

TEMPERATURE = 2.0


def _tagger(keras, units, seed, mask_zero=True):
    """Token classification: ids (0 is padding, masked with `mask_zero`) -> 3 classes per token."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((6,)),
                             L.Embedding(20, 8, mask_zero=mask_zero, embeddings_initializer="normal"),
                             L.Dense(units, activation="relu"), L.Dense(3, kernel_initializer="he_normal")])


def _tokens():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (16, 6)).astype("float32")
    lengths = rng.integers(2, 7, 16)
    ids[np.arange(6)[None, :] >= lengths[:, None]] = 0  # padded at the end
    return ids, (ids % 3).astype("int64")


def _kl_per_token(student, teacher, ids):
    def log_softmax(logits):
        logits = np.asarray(logits, "float64") / TEMPERATURE
        return logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1,
                                      keepdims=True)) - logits.max(-1, keepdims=True)
    t, s = log_softmax(teacher.predict(ids, verbose=0)), log_softmax(student.predict(ids, verbose=0))
    return np.sum(np.exp(t) * (t - s), axis=-1) * TEMPERATURE ** 2


def _distiller(keras, mask_zero=True):
    distiller = kc.Distiller(student=_tagger(keras, 4, 1, mask_zero),
                             teacher=_tagger(keras, 16, 2, mask_zero))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=0.0, temperature=TEMPERATURE)
    return distiller


def test_the_soft_loss_is_the_mean_kl_over_the_tokens_kept(keras_flavour):
    ids, labels = _tokens()
    distiller = _distiller(keras_flavour)
    kl = _kl_per_token(distiller.student, distiller.teacher, ids)
    kept = ids != 0
    assert abs(kl[kept].mean() - kl.mean()) > 0.1 * kl.mean()  # padding would change the value
    loss = distiller.evaluate(ids, labels, batch_size=16, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(kl[kept].mean(), rel=1e-3)


def test_per_token_sample_weights_weigh_each_token(keras3):
    # A model without a Keras mask (on any backend): padding and weights come as sample_weight.
    ids, labels = _tokens()
    distiller = _distiller(keras3, mask_zero=False)
    weights = np.where(ids != 0, np.linspace(0.5, 2.0, ids.size).reshape(ids.shape), 0.0).astype("float32")
    kl = _kl_per_token(distiller.student, distiller.teacher, ids)
    loss = distiller.evaluate(ids, labels, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
    assert loss["loss"] == pytest.approx(np.sum(kl * weights) / kl.size, rel=1e-3)  # as Keras weighs


def test_a_sequence_student_learns_from_the_teacher(keras_flavour):
    ids, labels = _tokens()
    distiller = _distiller(keras_flavour)
    before = distiller.evaluate(ids, labels, verbose=0, return_dict=True)["loss"]
    distiller.fit(ids, labels, epochs=30, batch_size=8, verbose=0)
    after = distiller.evaluate(ids, labels, verbose=0, return_dict=True)["loss"]
    assert after < 0.5 * before
