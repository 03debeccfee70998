import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import keras_compress as kc
from conftest import compile_classifier
from keras_compress._flavour import keras_for
from models import reloaded

# Tests build their models with the teacher's Keras: the `teacher` fixture is the trained CNN
# of each Keras flavour.


def tiny_student(keras, seed=1, softmax=False):
    L = keras.layers
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="relu", name="s_conv"),
        L.Flatten(name="s_flat"),
        L.Dense(16, activation="relu", name="s_dense"),
        L.Dense(10, activation="softmax" if softmax else None, name="s_out"),
    ], name="student")


@pytest.fixture(scope="module")
def teacher(trained_cnn):
    return trained_cnn


def _keras(model):
    return keras_for(model).keras


def _distiller(teacher, student=None, compile_kwargs=None, **kwargs):
    keras = _keras(teacher)
    distiller = kc.Distiller(student=student or tiny_student(keras), teacher=teacher, **kwargs)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                      **(compile_kwargs or {}))
    return distiller


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_training_loss_is_the_documented_mix_and_matches_numpy(teacher, digits):
    """alpha*CE + (1-alpha)*T^2*KL(softmax(t/T) || softmax(s/T)), against a NumPy reference."""
    (x, y), _ = digits
    distiller = _distiller(teacher, compile_kwargs=dict(alpha=0.3, temperature=4.0))
    batch_x, batch_y = x[:32], y[:32]
    s = np.asarray(distiller.student.predict(batch_x, verbose=0), "float64")
    t = np.asarray(teacher.predict(batch_x, verbose=0), "float64")
    p, q = _softmax(t / 4.0), _softmax(s / 4.0)
    soft = np.sum(p * np.log(p / q), axis=-1) * 16.0
    hard = -np.log(_softmax(s)[np.arange(32), batch_y])
    scores = distiller.evaluate(batch_x, batch_y, batch_size=32, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(np.mean(0.3 * hard + 0.7 * soft), abs=1e-5)
    assert scores["student_loss"] == pytest.approx(np.mean(hard), abs=1e-5)
    assert scores["distillation_loss"] == pytest.approx(np.mean(soft), abs=1e-5)
    before = [w.numpy() for w in distiller.student.weights]
    distiller.fit(batch_x, batch_y, epochs=1, batch_size=32, verbose=0)
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(before, distiller.student.weights))


def test_teacher_stays_frozen_and_evaluate_predict_use_the_student(teacher, digits):
    (x, y), (x_test, y_test) = digits
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = _distiller(teacher)
    history = distiller.fit(x, y, epochs=3, batch_size=64, verbose=0, validation_data=(x_test, y_test))
    for old, new in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert {"loss", "student_loss", "distillation_loss", "accuracy", "val_loss", "val_accuracy"} <= set(
        history.history)
    scores = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert sorted(scores) == ["accuracy", "distillation_loss", "loss", "student_loss"]
    assert scores["loss"] == pytest.approx(0.1 * scores["student_loss"] + 0.9 * scores["distillation_loss"],
                                           rel=1e-4)
    student_loss, accuracy = compile_classifier(distiller.student).evaluate(x_test, y_test, verbose=0)
    assert scores["student_loss"] == pytest.approx(student_loss, rel=1e-5)
    assert scores["accuracy"] == pytest.approx(accuracy)
    np.testing.assert_allclose(distiller.predict(x_test[:8], verbose=0),
                               distiller.student.predict(x_test[:8], verbose=0), rtol=1e-6)
    assert history.history["val_accuracy"][-1] > 0.5  # it learns (chance is 0.1)


def test_probability_outputs_give_the_same_loss_as_logits(teacher, digits):
    keras = _keras(teacher)
    (x, y), _ = digits
    logits_student = tiny_student(keras, seed=3)
    probs_student = tiny_student(keras, seed=3, softmax=True)
    probs_teacher = keras.Sequential([keras.Input((8, 8, 1)), teacher, keras.layers.Softmax()])
    losses = []
    for student, teacher_model, from_logits in ((logits_student, teacher, True),
                                                (probs_student, probs_teacher, False)):
        distiller = kc.Distiller(student=student, teacher=teacher_model, student_from_logits=from_logits,
                                 teacher_from_logits=from_logits)
        distiller.compile(optimizer=keras.optimizers.SGD(0.0))
        losses.append(distiller.evaluate(x[:32], y[:32], batch_size=32, verbose=0, return_dict=True)["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


def test_pruned_student_prunes_inside_distiller_fit(teacher, digits):
    (x, y), _ = digits
    schedule = kc.pruning.PolynomialDecay(0.0, 0.6, begin_epoch=0, end_epoch=2)
    student = kc.pruning.prune(tiny_student(_keras(teacher)), schedule, granularity="filter")
    distiller = _distiller(teacher, student)
    distiller.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    plain = kc.pruning.strip(distiller.student)
    assert kc.pruning.sparsity(plain).layers[0]["sparsity"] == pytest.approx(0.5)  # 2 of 4 filters
    assert kc.pruning.shrink(plain).get_layer("s_conv").filters == 2


def test_class_weights_and_tf_data_inputs(teacher, digits):
    (x, y), _ = digits
    distiller = _distiller(teacher)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512, seed=0).batch(64)
    distiller.fit(data, epochs=1, verbose=0)
    # A class weight scales that class's examples in the loss, as in Keras' own fit.
    batch = x[:64], y[:64]
    weights = {c: (5.0 if c == 3 else 1.0) for c in range(10)}
    plain = _distiller(teacher, compile_kwargs=dict(alpha=1.0))
    weighted = _distiller(teacher, compile_kwargs=dict(alpha=1.0))
    weighted.student.set_weights(plain.student.get_weights())
    logits = plain.student.predict(batch[0], verbose=0)
    expected = -np.log(_softmax(logits.astype("float64"))[np.arange(64), batch[1]])
    per_class = np.where(batch[1] == 3, 5.0, 1.0)
    expected = float(np.sum(expected * per_class) / np.sum(per_class))  # the tracker's weighted mean
    history = weighted.fit(*batch, epochs=1, batch_size=64, shuffle=False, verbose=0, class_weight=weights)
    assert history.history["student_loss"][0] == pytest.approx(expected, rel=1e-4)


def test_teacher_cache_gives_the_same_training_as_no_cache(teacher, digits):
    (x, y), _ = digits
    results = []
    for cache in (False, True):
        distiller = _distiller(teacher, tiny_student(_keras(teacher), seed=5), cache_teacher=cache)
        _keras(teacher).utils.set_random_seed(0)
        history = distiller.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0, shuffle=True)
        results.append((history.history["loss"], [w.numpy() for w in distiller.student.weights]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_teacher_cache_refuses_datasets_that_may_change_between_epochs(teacher, digits):
    (x, y), _ = digits
    distiller = _distiller(teacher, cache_teacher=True)
    data = tf.data.Dataset.from_tensor_slices((x, y)).map(
        lambda a, b: (tf.image.random_flip_left_right(a), b)).batch(64)
    with pytest.raises(ValueError, match="random augmentation"):
        distiller.fit(data, epochs=1, verbose=0)


def test_feature_distillation_adds_a_projected_mse_not_part_of_the_student(teacher, digits):
    (x, y), _ = digits
    distiller = _distiller(teacher, features=[("conv_b", "s_conv"), ("dense_a", "s_dense")])
    history = distiller.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert history.history["feature_loss"][0] > 0
    assert [p.name for p in distiller.projections] == ["project_s_conv", "project_s_dense"]
    student_weights = {id(w) for w in distiller.student.weights}
    assert not any(id(w) in student_weights for p in distiller.projections for w in p.weights)


def test_checkpoints_and_resume(teacher, digits, tmp_path):
    keras = _keras(teacher)
    (x, y), _ = digits

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    distiller = _distiller(teacher, tiny_student(keras, seed=7))
    with pytest.raises(KeyboardInterrupt):
        distiller.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[backup, Stop()])
    resumed = _distiller(teacher, tiny_student(keras, seed=8))
    history = resumed.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[backup])
    assert len(history.epoch) == 2
    assert int(resumed.optimizer.iterations.numpy()) == 3 * int(np.ceil(len(x) / 64))


def test_weights_checkpoint_restores_the_distiller(teacher, digits, tmp_path):
    keras = _keras(teacher)
    (x, y), _ = digits
    # tf_keras writes TensorFlow checkpoints; Keras 3 writes .weights.h5 files.
    path = str(tmp_path / "weights" / ("ckpt" if keras is tf_keras else "ckpt.weights.h5"))
    trained = _distiller(teacher, tiny_student(keras, seed=7))
    trained.fit(x[:128], y[:128], epochs=1, verbose=0,
                callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    fresh = _distiller(teacher, tiny_student(keras, seed=9))
    status = fresh.load_weights(path)
    if keras is tf_keras:
        status.expect_partial()
    np.testing.assert_allclose(fresh.predict(x[:8], verbose=0), trained.predict(x[:8], verbose=0), rtol=1e-5)


def test_student_saves_alone(teacher, digits, tmp_path):
    distiller = _distiller(teacher)
    distiller.fit(*digits[0], epochs=1, batch_size=64, verbose=0)
    distiller.student.save(str(tmp_path / "student.keras"))
    loaded = _keras(teacher).models.load_model(str(tmp_path / "student.keras"))
    assert not isinstance(loaded, kc.Distiller) and len(loaded.weights) == len(distiller.student.weights)
    x = digits[1][0][:16]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.student.predict(x, verbose=0),
                               rtol=1e-6)


@pytest.mark.parametrize("make_student, kwargs, compile_kwargs, message", [
    (lambda keras: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(7)]),
     {}, {}, "output shape .* differs from the teacher's"),
    (lambda keras: keras.Sequential([keras.layers.Dense(10)]), {}, {}, "`student` is not built"),
    (tiny_student, dict(features=[("nope", "s_conv")]), {}, "Teacher layer 'nope' does not exist"),
    (tiny_student, dict(features=[("conv_b", "nope")]), {}, "Student layer 'nope' does not exist"),
    (tiny_student, {}, dict(temperature=0.0), "temperature must be a number > 0"),
    (tiny_student, {}, dict(alpha=-0.1), r"alpha must be in \[0, 1\]"),
])
def test_bad_input_is_refused_before_training(teacher, make_student, kwargs, compile_kwargs, message):
    with pytest.raises(ValueError, match=message):
        _distiller(teacher, make_student(_keras(teacher)), compile_kwargs=compile_kwargs, **kwargs)


def test_a_teacher_of_the_other_keras_is_refused(teacher):
    import keras as keras3

    other_keras = tf_keras if _keras(teacher) is keras3 else keras3
    other = other_keras.Sequential([other_keras.Input((8, 8, 1)), other_keras.layers.Flatten(),
                                    other_keras.layers.Dense(10)])
    with pytest.raises(kc.UnsupportedModelError, match="works on .* models only"):
        kc.Distiller(student=tiny_student(_keras(teacher)), teacher=other)


@pytest.mark.slow
def test_distiller_under_mirrored_strategy_matches_one_device():
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras_compress as kc
        import tf_keras as keras
        (x, y), _ = kc.datasets.digits()
        x, y = x[:128], y[:128]

        def small_cnn(seed):  # no BatchNormalization: its per-replica statistics differ
            keras.utils.set_random_seed(seed)
            return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                                     keras.layers.Flatten(), keras.layers.Dense(10)])

        def train(strategy):
            with strategy.scope():
                distiller = kc.Distiller(student=small_cnn(seed=3), teacher=small_cnn(seed=4))
                distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5)
            history = distiller.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
            return history.history["loss"], distiller.student.get_weights()

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        (loss_a, weights_a), (loss_b, weights_b) = train(mirrored), train(tf.distribute.get_strategy())
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4)
        for a, b in zip(weights_a, weights_b):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        print("SAME")
    """)
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tests,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SAME" in result.stdout


def test_distiller_round_trips_through_a_keras_file(teacher, digits, tmp_path):
    distiller = _distiller(teacher, features=[("dense_a", "s_dense")])
    distiller.fit(*[a[:128] for a in digits[0]], epochs=1, verbose=0)
    distiller.save(str(tmp_path / "distiller.keras"))
    loaded = _keras(teacher).models.load_model(str(tmp_path / "distiller.keras"), compile=False)
    assert type(loaded) is type(distiller) and loaded.features == [("dense_a", "s_dense")]
    x = digits[1][0][:8]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(loaded.projections[0].get_weights()[0],
                               distiller.projections[0].get_weights()[0])


def test_either_flavours_distiller_is_a_distiller_and_its_config_round_trips(teacher):
    distiller = kc.Distiller(student=tiny_student(_keras(teacher)), teacher=teacher, alpha=0.2,
                             features=[("dense_a", "s_dense")])
    assert isinstance(distiller, kc.Distiller) and issubclass(type(distiller), kc.Distiller)
    assert not isinstance(teacher, kc.Distiller)
    rebuilt = kc.Distiller.from_config(distiller.get_config())
    assert type(rebuilt) is type(distiller)
    assert (rebuilt.alpha, rebuilt.features) == (0.2, [("dense_a", "s_dense")])
    assert [layer.name for layer in rebuilt.teacher.layers] == [layer.name for layer in teacher.layers]
    other = (kc.distillation.TfKerasDistiller if type(distiller) is kc.distillation.Keras3Distiller
             else kc.distillation.Keras3Distiller)
    with pytest.raises(ValueError, match="use keras_compress.Distiller.from_config"):
        other.from_config(distiller.get_config())
    with pytest.raises(ValueError, match="names no Keras flavour keras_compress knows \\('keras4'"):
        kc.Distiller.from_config({"flavour": "keras4", "student": {}})
    with pytest.raises(TypeError, match="subclass keras_compress.distillation.TfKerasDistiller"):
        type("MyDistiller", (kc.Distiller,), {})


def test_unlabeled_data_trains_on_the_teacher_alone(teacher, digits):
    (x, y), (x_test, _) = digits
    distiller = _distiller(teacher)
    agreement = lambda: np.mean(distiller.predict(x_test, verbose=0).argmax(-1)  # noqa: E731
                                == teacher.predict(x_test, verbose=0).argmax(-1))
    before = agreement()
    history = distiller.fit(x, epochs=3, batch_size=64, verbose=0)
    assert sorted(history.history) == ["distillation_loss", "loss"]
    assert history.history["loss"] == history.history["distillation_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0] and agreement() > max(before, 0.6)
    assert sorted(distiller.evaluate(x_test, verbose=0, return_dict=True)) == ["distillation_loss", "loss"]
    distiller.fit(x[:128], y[:128], epochs=1, verbose=0)  # then labeled data, as semi-supervised runs do
    assert "accuracy" in distiller.evaluate(x_test, digits[1][1], verbose=0, return_dict=True)


def test_alpha_and_temperature_survive_saving(teacher, digits, tmp_path):
    distiller = _distiller(teacher, compile_kwargs=dict(alpha=0.4, temperature=7.0))
    distiller.fit(*[a[:64] for a in digits[0]], epochs=1, verbose=0)
    loaded = reloaded(distiller, tmp_path)  # in safe mode: a saved Distiller names no code
    assert (loaded.alpha, loaded.temperature) == (0.4, 7.0)
    loaded.compile(optimizer="adam")
    assert (loaded.alpha, loaded.temperature) == (0.4, 7.0)


@pytest.mark.parametrize("compile_kwargs", [
    lambda other: dict(optimizer=other.optimizers.Adam()),
    lambda other: dict(student_loss_fn=other.losses.SparseCategoricalCrossentropy(from_logits=True)),
    lambda other: dict(metrics=[other.metrics.SparseCategoricalAccuracy()]),
])
def test_objects_of_the_other_keras_are_named_as_the_mix_up(teacher, compile_kwargs):
    import keras as keras3

    other = tf_keras if _keras(teacher) is keras3 else keras3
    distiller = kc.Distiller(student=tiny_student(_keras(teacher)), teacher=teacher)
    with pytest.raises(TypeError, match="is a .* object .* but the models are"):
        distiller.compile(**compile_kwargs(other))


def test_a_callback_of_the_other_keras_is_refused_before_training(teacher, digits):
    import keras as keras3

    other = tf_keras if _keras(teacher) is keras3 else keras3
    distiller = _distiller(teacher)
    with pytest.raises(TypeError, match="callbacks is a .* object"):
        distiller.fit(*digits[0], epochs=1, verbose=0, callbacks=[other.callbacks.History()])


def _subclassed_student(keras):
    class SubclassedStudent(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten, self.out = keras.layers.Flatten(), keras.layers.Dense(10)

        def call(self, x):
            return self.out(self.flatten(x))

    return SubclassedStudent()


def test_a_built_subclassed_student_distills(teacher, digits):
    (x, y), _ = digits
    student = _subclassed_student(_keras(teacher))
    student(x[:1])
    distiller = _distiller(teacher, student)
    history = distiller.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_distilling_leaves_the_callers_teacher_trainable_and_prunable_after(digits, keras_flavour):
    from models import small_cnn

    (x, y), _ = digits
    teacher = compile_classifier(small_cnn(seed=5, keras=keras_flavour))
    teacher.fit(x[:256], y[:256], epochs=1, verbose=0)
    _distiller(teacher).fit(x[:128], y[:128], epochs=1, verbose=0)
    assert teacher.trainable and len(teacher.trainable_weights) == 10
    pruned = compile_classifier(kc.pruning.prune(teacher, kc.pruning.ConstantSparsity(0.5)))
    before = [w.numpy().copy() for w in pruned.trainable_weights]
    pruned.fit(x[:256], y[:256], epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    assert before and any(not np.array_equal(b, w.numpy()) for b, w in zip(before, pruned.trainable_weights))


def test_pruning_a_frozen_model_warns_and_gives_a_trainable_copy(trained_cnn):
    frozen = _keras(trained_cnn).models.clone_model(trained_cnn)
    frozen.trainable = False
    with pytest.warns(UserWarning,
                      match="is frozen \\(trainable=False\\): its pruned copy is made trainable"):
        pruned = kc.pruning.prune(frozen, kc.pruning.ConstantSparsity(0.5))
    assert pruned.trainable and pruned.trainable_weights and not frozen.trainable
