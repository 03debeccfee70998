import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_compress as kc
from conftest import compile_classifier, fit_pruned
from keras_compress.pruning.prune import pruning_wrappers
from models import small_cnn


def _stop_after_epoch(keras, stop):
    """A callback of `keras` that interrupts training after epoch `stop`."""
    class StopAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == stop:
                raise KeyboardInterrupt("simulated interruption")

    return StopAfterEpoch()


def _step(model):
    return int(pruning_wrappers(model)[0].pruning_step.numpy())


@pytest.mark.parametrize("granularity", ["weight", "filter"])
def test_backup_and_restore_resumes_the_schedule_where_it_stopped(trained_cnn, digits, tmp_path, granularity,
                                                                  keras_flavour):
    keras = keras_flavour
    (x, y), _ = digits
    steps_per_epoch = int(np.ceil(len(x) / 64))
    schedule = kc.pruning.PolynomialDecay(0.0, 0.6, begin_epoch=0, end_epoch=4)
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, schedule, granularity=granularity))
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        pruned.fit(x, y, epochs=4, batch_size=64, verbose=0,
                   callbacks=[backup, kc.pruning.PruningCallback(), _stop_after_epoch(keras, 1)])
    interrupted = kc.pruning.sparsity(pruned).total_sparsity
    assert 0.0 < interrupted < 0.6

    fresh = compile_classifier(kc.pruning.prune(trained_cnn, schedule, granularity=granularity))
    history = fresh.fit(x, y, epochs=4, batch_size=64, verbose=0,
                        callbacks=[backup, kc.pruning.PruningCallback()])
    assert len(history.epoch) == 2  # epochs 3 and 4 only
    assert _step(fresh) == 4 * steps_per_epoch
    assert kc.pruning.sparsity(fresh).total_sparsity == pytest.approx(0.6, abs=0.02)


def test_resume_from_a_model_checkpoint_file_continues_the_schedule(trained_cnn, digits, tmp_path,
                                                                    keras_flavour):
    keras = keras_flavour
    (x, y), _ = digits
    steps_per_epoch = int(np.ceil(len(x) / 64))
    schedule = kc.pruning.PolynomialDecay(0.0, 0.6, begin_epoch=0, end_epoch=4)
    pruned = kc.pruning.prune(trained_cnn, schedule)
    fit_pruned(pruned, digits, epochs=2,
               callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.keras"))])
    restored = kc.load_model(str(tmp_path / "ckpt.keras"), compile=True)
    assert _step(restored) == 2 * steps_per_epoch
    restored.fit(x, y, epochs=4, initial_epoch=2, batch_size=64, verbose=0,
                 callbacks=[kc.pruning.PruningCallback()])
    assert _step(restored) == 4 * steps_per_epoch
    assert kc.pruning.sparsity(restored).total_sparsity == pytest.approx(0.6, abs=0.01)


def _checkpoint_sparsity(keras, folder):
    """A callback that checks, for every saved checkpoint, that weights are zero wherever masks are."""
    class CheckpointSparsity(keras.callbacks.Callback):
        checked = 0

        def on_train_batch_end(self, batch, logs=None):
            for path in glob.glob(os.path.join(folder, "*.keras")):
                model = kc.load_model(path)
                for wrapper in pruning_wrappers(model):
                    for weight, mask, _ in wrapper.pruning_vars:
                        assert np.all(weight.numpy()[mask.numpy() == 0] == 0), path
                os.remove(path)
                CheckpointSparsity.checked += 1

    return CheckpointSparsity()


def test_checkpoints_written_mid_epoch_are_as_sparse_as_their_masks(trained_cnn, digits, tmp_path,
                                                                    keras_flavour):
    keras = keras_flavour
    schedule = kc.pruning.PolynomialDecay(0.0, 0.6, begin_epoch=0, end_epoch=2)
    pruned = kc.pruning.prune(trained_cnn, schedule, granularity="filter")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{batch}.keras"), save_freq=3)
    checker = _checkpoint_sparsity(keras, str(tmp_path))
    # The checkpoint comes first in the list: the callback's place must not matter.
    (x, y), _ = digits
    compile_classifier(pruned)
    pruned.fit(x[:640], y[:640], epochs=2, batch_size=64, verbose=0,
               callbacks=[checkpoint, checker, kc.pruning.PruningCallback()])
    assert checker.checked >= 5


def test_global_ranking_meets_its_target_with_several_steps_per_execution(trained_cnn, digits):
    (x, y), _ = digits
    schedule = kc.pruning.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=20, frequency=5)
    pruned = kc.pruning.prune(trained_cnn, schedule, scope="global")
    compile_classifier(pruned, steps_per_execution=3)
    pruned.fit(x[:64 * 21], y[:64 * 21], epochs=1, batch_size=64, verbose=0,
               callbacks=[kc.pruning.PruningCallback()])
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.6, abs=0.005)


def test_log_dir_writes_per_layer_sparsity_for_tensorboard(trained_cnn, digits, tmp_path):
    pruned = kc.pruning.prune(trained_cnn, kc.pruning.ConstantSparsity(0.5))
    (x, y), _ = digits
    compile_classifier(pruned)
    pruned.fit(x[:256], y[:256], epochs=1, verbose=0,
               callbacks=[kc.pruning.PruningCallback(log_dir=str(tmp_path / "logs"))])
    import tensorflow as tf

    tags = set()
    for path in glob.glob(str(tmp_path / "logs" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"sparsity/conv_a", "sparsity/logits", "sparsity/total"} <= tags


def test_callback_on_a_model_that_was_not_pruned_says_what_to_do(trained_cnn, digits, keras_flavour):
    (x, y), _ = digits
    model = compile_classifier(keras_flavour.models.clone_model(trained_cnn))
    with pytest.raises(ValueError, match="keras_compress.pruning.prune"):
        model.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])


def test_epoch_schedule_with_unknown_steps_per_epoch_is_a_clear_error(trained_cnn, digits):
    import tensorflow as tf

    (x, y), _ = digits
    data = tf.data.Dataset.from_tensor_slices((x[:128], y[:128])).batch(32).repeat().take(4)
    data = data.filter(lambda *_: True)  # unknown cardinality
    pruned = compile_classifier(kc.pruning.prune(
        trained_cnn, kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=1)))
    with pytest.raises(ValueError, match="pass steps_per_epoch to fit"):
        pruned.fit(data, epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])


@pytest.mark.slow
@pytest.mark.parametrize("granularity, scope", [("weight", "layer"), ("filter", "global")])
def test_pruning_under_mirrored_strategy_with_two_cpu_devices(granularity, scope):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras_compress as kc
        from conftest import compile_classifier
        from models import small_cnn
        (x, y), _ = kc.datasets.digits()
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            schedule = kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=2)
            pruned = compile_classifier(kc.pruning.prune(small_cnn(), schedule,
                                        granularity="{granularity}", scope="{scope}"))
        pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[kc.pruning.PruningCallback()])
        report = kc.pruning.sparsity(kc.pruning.strip(pruned))
        print("SPARSITY", report.total_sparsity)
    """)
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tests, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    value = float(result.stdout.split("SPARSITY")[-1])
    assert value == pytest.approx(0.5, abs=0.03)


def test_hooks_resolve_epoch_schedules_and_unhook_the_train_function_without_a_fit(trained_cnn):
    schedule = kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=1, end_epoch=3)
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, schedule))
    pruned.make_train_function()
    callback = kc.pruning.PruningCallback()
    callback.set_model(pruned)
    callback.set_params({"steps": 10, "epochs": 3, "verbose": 0})
    callback.on_train_begin()
    resolved = pruning_wrappers(pruned)[0].pruning_schedule
    assert (resolved.begin_step, resolved.end_step, resolved.frequency) == (10, 30, 2)
    assert _step(pruned) == 0 and hasattr(pruned.train_function, "_pruning_original")
    callback.on_train_end()
    assert not hasattr(pruned.train_function, "_pruning_original")


def test_a_fit_that_raises_gives_the_model_its_own_functions_back(trained_cnn, digits, keras_flavour):
    (x, y), _ = digits
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, kc.pruning.ConstantSparsity(0.5)))

    def batches():
        yield x[:32], y[:32]
        yield x[32:64], y[32:64]
        raise ValueError("a broken batch")

    with pytest.raises(Exception, match="a broken batch"):
        pruned.fit(batches(), steps_per_epoch=4, epochs=1, verbose=0,
                   callbacks=[kc.pruning.PruningCallback()])
    assert not hasattr(pruned.train_function, "_pruning_original")
    assert not hasattr(pruned.train_step, "_pruning_original_step")


@pytest.mark.parametrize("kwargs", [dict(), dict(scope="global"), dict(granularity="filter")])
def test_prune_zero_sparsity_is_noop(trained_cnn, digits, kwargs, keras_flavour):
    keras = keras_flavour
    (x, y), _ = digits
    dense = compile_classifier(keras.models.clone_model(trained_cnn))
    dense.set_weights(trained_cnn.get_weights())
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, kc.pruning.ConstantSparsity(0.0), **kwargs))
    for model, callbacks in ((dense, []), (pruned, [kc.pruning.PruningCallback()])):
        keras.utils.set_random_seed(0)
        model.fit(x[:256], y[:256], epochs=1, batch_size=64, shuffle=False, verbose=0, callbacks=callbacks)
    for want, got in zip(dense.get_weights(), kc.pruning.strip(pruned).get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_last_call_of_an_epoch_ranks_only_for_the_steps_it_runs(trained_cnn, digits):
    """10 steps per epoch, 3 per call: the epoch's last call runs one step, so after the epoch
    the global ranking holds the schedule's sparsity at step 10 (0.70), not at step 12 (0.75)."""
    (x, y), _ = digits
    schedule = kc.pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=20, frequency=2)
    pruned = compile_classifier(kc.pruning.prune(trained_cnn, schedule, scope="global"),
                                steps_per_execution=3)
    pruned.fit(x[:640], y[:640], epochs=1, batch_size=64, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    assert _step(pruned) == 10
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(schedule.sparsity_at(10), abs=0.005)


def test_a_custom_loop_with_keras_own_callback_list_prunes(digits):
    """Keras' CallbackList gives callbacks `params` in custom loops too: the callback still drives
    the masks through the batch hooks (TensorFlow: a GradientTape loop)."""
    import keras as keras3
    import tensorflow as tf
    import tf_keras

    (x, y), _ = digits
    for keras in (tf_keras, keras3):
        pruned = kc.pruning.prune(small_cnn(keras=keras), kc.pruning.ConstantSparsity(0.5), scope="global")
        optimizer, loss_fn = keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(True)
        callbacks = keras.callbacks.CallbackList([kc.pruning.PruningCallback()], model=pruned, epochs=1,
                                                 steps=4)
        callbacks.on_train_begin()
        for step in range(4):
            callbacks.on_train_batch_begin(step)
            rows = slice(step * 64, (step + 1) * 64)
            with tf.GradientTape() as tape:
                loss = loss_fn(y[rows], pruned(x[rows], training=True))
            gradients = tape.gradient(loss, pruned.trainable_weights)
            optimizer.apply_gradients(zip(gradients, pruned.trainable_weights))
            callbacks.on_train_batch_end(step)
        callbacks.on_epoch_end(0)
        callbacks.on_train_end()
        assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.5, abs=0.005), keras.__name__


def test_pruning_many_models_in_one_process_prints_no_retracing_warning(tf_keras_cnn, digits, caplog):
    (x, y), _ = digits
    for _ in range(7):  # TensorFlow warns from the sixth trace of functions sharing one code object
        pruned = compile_classifier(kc.pruning.prune(tf_keras_cnn, kc.pruning.ConstantSparsity(0.5)))
        pruned.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    # (tf_keras itself warns about its own train functions, one per model, as for unpruned models)
    assert not [r for r in caplog.records if "retracing" in r.getMessage() and "_remask" in r.getMessage()]


def test_fit_keeps_keras_asynchronous_step_ends_with_pruning(digits, keras3):
    """On JAX, Keras 3's `fit` runs batch-end callbacks on a worker thread (so it need not wait
    for each step's logs before the next step) unless a callback in the list needs the main
    thread: `PruningCallback` must not. TensorFlow's backend always runs them in line."""
    import threading

    (x, y), _ = digits

    class ThreadProbe(keras3.callbacks.Callback):
        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            self.threads.add(threading.current_thread())

    probe = ThreadProbe()
    probe.threads = set()
    pruned = kc.pruning.prune(small_cnn(keras=keras3), kc.pruning.ConstantSparsity(0.5))
    fit_pruned(pruned, digits, epochs=1, callbacks=[probe])
    asynchronous = threading.main_thread() not in probe.threads
    assert asynchronous == (keras3.backend.backend() == "jax")
    assert kc.pruning.sparsity(pruned).total_sparsity == pytest.approx(0.5, abs=0.005)
