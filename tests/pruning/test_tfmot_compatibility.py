"""Code written for tfmot runs on keras_compress after changing an import, or fails loudly."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import keras_compress as kc
from conftest import compile_classifier
from models import small_cnn


def _train(model, data, callbacks, epochs=2):
    (x, y), _ = data
    compile_classifier(model)
    model.fit(x[:512], y[:512], epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
    return model


@pytest.mark.parametrize("kwargs", [dict(scope="global"), dict(granularity="filter")])
@pytest.mark.parametrize("callbacks", [[tfmot.sparsity.keras.UpdatePruningStep()], []])
def test_a_ranked_model_trained_without_our_callback_fails_at_the_start_of_fit(digits, kwargs, callbacks):
    pruned = kc.pruning.prune(small_cnn(), kc.pruning.ConstantSparsity(0.5), **kwargs)
    with pytest.raises(RuntimeError,
                       match="train it with callbacks=\\[keras_compress.pruning.PruningCallback") as refused:
        _train(pruned, digits, callbacks)
    assert "in user code" not in str(refused.value) and len(str(refused.value)) < 400  # not in a graph trace


def test_a_model_pruned_by_tfmot_itself_trains_with_our_callback(digits):
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(small_cnn(), pruning_schedule=schedule)
    _train(pruned, digits, [kc.pruning.PruningCallback()])
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.5, abs=0.01)


def test_a_pruned_model_trained_with_no_callback_names_ours(digits):
    pruned = kc.pruning.prune(small_cnn(), kc.pruning.ConstantSparsity(0.5))
    with pytest.raises(RuntimeError, match="no pruning callback in this fit.*PruningCallback"):
        _train(pruned, digits, [])


def test_tfmot_callback_still_drives_layer_pruning(digits):
    pruned = kc.pruning.prune(small_cnn(), kc.pruning.ConstantSparsity(0.5, 0, -1, 4))
    _train(pruned, digits, [tfmot.sparsity.keras.UpdatePruningStep()])
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("kwargs", [dict(), dict(scope="global"), dict(granularity="filter")])
def test_a_custom_training_loop_drives_pruning_callback_as_tfmot_guide_does(digits, kwargs):
    (x, y), _ = digits
    pruned = kc.pruning.prune(small_cnn(), kc.pruning.PolynomialDecay(0.0, 0.6, 0, 24, 3, 4), **kwargs)
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    callback = kc.pruning.PruningCallback()
    callback.set_model(pruned)
    callback.on_train_begin()  # the guide calls these three hooks only
    for _ in range(3):
        for start in range(0, 512, 64):
            callback.on_train_batch_begin(batch=-1)
            with tf.GradientTape() as tape:
                loss = loss_fn(y[start:start + 64], pruned(x[start:start + 64], training=True))
            grads = tape.gradient(loss, pruned.trainable_variables)
            optimizer.apply_gradients(zip(grads, pruned.trainable_variables))
        callback.on_epoch_end(batch=-1)
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.6, abs=0.05)


def test_schedules_take_tfmot_positional_order_and_end_step_minus_one():
    polynomial = kc.pruning.PolynomialDecay(0.2, 0.8, 0, 1000, 3, 100)
    assert ((polynomial.begin_step, polynomial.end_step, polynomial.power, polynomial.frequency)
            == (0, 1000, 3, 100))
    constant = kc.pruning.ConstantSparsity(0.5, 0, -1, 10)
    assert constant.end_step == -1 and bool(constant(10_000)[0]) and float(constant(10_000)[1]) == 0.5
    with pytest.raises(ValueError, match="needs an end"):
        kc.pruning.PolynomialDecay(0.4, 0.8, 10, -1)


@pytest.mark.parametrize("tfmot_schedule", [tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=4),
                                            tfmot.sparsity.keras.PolynomialDecay(0.1, 0.5, 0, 16,
                                                                                 frequency=4)])
def test_prune_takes_tfmot_keywords_and_schedules(digits, tfmot_schedule):
    pruning_params = {"pruning_schedule": tfmot_schedule, "block_size": (1, 1)}
    pruned = kc.pruning.prune(small_cnn(), **pruning_params)
    _train(pruned, digits, [kc.pruning.PruningCallback()])
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.5, abs=0.02)


def test_block_sparsity_prunes_whole_blocks(digits):
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="fc")])
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, 0, frequency=1), block_size=(4, 2))
    compile_classifier(pruned).fit(np.ones((64, 16)), np.zeros(64), epochs=1, batch_size=16, verbose=0,
                                   callbacks=[kc.pruning.PruningCallback()])
    kernel = kc.pruning.strip(pruned).get_layer("fc").kernel.numpy()
    blocks = np.abs(kernel).reshape(4, 4, 4, 2).transpose(0, 2, 1, 3).reshape(16, 8).sum(axis=1)
    assert np.mean(blocks == 0) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(), TypeError, "Pass one pruning schedule"),
    (dict(schedule=0.5), TypeError, "must be a PolynomialDecay or ConstantSparsity"),
    (dict(schedule=kc.pruning.ConstantSparsity(0.5), block_size=(2, 2), scope="global"), ValueError,
     "block_size applies to"),
    (dict(schedule=kc.pruning.ConstantSparsity(0.5), block_size=(0, 2)), ValueError, "two ints >= 1"),
])
def test_prune_refuses_bad_tfmot_style_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        kc.pruning.prune(small_cnn(), **kwargs)


def test_distiller_models_are_keyword_only(tf_keras_cnn):
    student = small_cnn(seed=1)
    with pytest.raises(TypeError, match="by keyword: Distiller\\(student=..., teacher=...\\)"):
        kc.Distiller(tf_keras_cnn, student)
    assert kc.Distiller(student=student, teacher=tf_keras_cnn).student is student
