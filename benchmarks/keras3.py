"""Keras 3 benchmark: pruning in fit, filter pruning + shrink and quantization-aware training,
per Keras and backend.

Three lanes run in one invocation, each in its own process (the Keras 3 backend is chosen
per process): tf_keras (tfmot underneath), Keras 3 on TensorFlow and Keras 3 on JAX. Each
lane measures, against its own baseline in the same process:

- the digits CNN: epoch time of `fit` with 80% weight pruning (fine-tuning the trained model)
  over plain `fit`, the sparsity reached (total, and the largest gap of a layer in "layer"
  scope), and the accuracy of the pruned model against the dense one;
- MobileNetV2 (alpha 0.35, 32x32 digits): the same epoch-time ratio and sparsity;
- the small ResNet of `benchmarks/pruning.py`: 50% filter pruning + `shrink`, the
  parameter ratio and the speed-up at batch 32 of the shrunk model over the dense one;
- the digits CNN again: epoch time of quantization-aware `fit` over plain `fit`, the test
  accuracy of the float and the QAT model, and the size of the int8 TFLite file over the
  float32 one.

    .venv/bin/python benchmarks/keras3.py [--quick]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LANES = [("tf_keras", "tensorflow"), ("keras3", "tensorflow"), ("keras3", "jax")]


def _keras(flavour):
    if flavour == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def _epoch_timer(keras):
    """A callback of `keras` recording every epoch's wall-clock seconds in `times`."""
    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    timer.times = []
    return timer


def _compile(keras, model):
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _epoch_seconds(keras, model, x, y, epochs, callbacks=()):
    """Median epoch time (the first, which compiles, dropped)."""
    import numpy as np

    timer = _epoch_timer(keras)
    _compile(keras, model).fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[timer, *callbacks])
    return float(np.median(timer.times[1:]))


def _pruning_in_fit(keras, model_fn, data, epochs, target=0.8):
    import keras_compress as kc

    (x, y), (x_test, y_test) = data
    dense = model_fn()
    dense_epoch = _epoch_seconds(keras, dense, x, y, epochs)
    # Pruning fine-tunes the trained model for as many epochs as it was trained.
    schedule = kc.pruning.PolynomialDecay(0.0, target, begin_epoch=0, end_epoch=epochs - 1)
    pruned = kc.pruning.prune(dense, schedule)
    pruned_epoch = _epoch_seconds(keras, pruned, x, y, epochs, [kc.pruning.PruningCallback()])
    report = kc.pruning.sparsity(pruned)
    return {"dense_epoch_s": dense_epoch, "pruned_epoch_s": pruned_epoch,
            "epoch_overhead": pruned_epoch / dense_epoch, "sparsity": report.total_sparsity,
            "worst_layer_gap": max(abs(row["sparsity"] - target) for row in report.layers),
            "dense_accuracy": dense.evaluate(x_test, y_test, verbose=0)[1],
            "pruned_accuracy": _compile(keras, kc.pruning.strip(pruned)).evaluate(x_test, y_test,
                                                                                  verbose=0)[1]}


def _speed(model, x, repeats):
    import numpy as np

    from keras_compress.runtime import KerasRunner
    from keras_compress.runtime.timing import latencies

    return float(np.median(latencies(KerasRunner(model), x, warmup=5, runs=repeats)))


def _filter_shrink(keras, epochs, repeats):
    from pruning import small_resnet

    import keras_compress as kc

    (x, y), _ = kc.datasets.digits(size=32, channels=3)
    dense = _compile(keras, small_resnet(keras=keras))
    dense.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    schedule = kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=max(1, epochs - 1))
    pruned = _compile(keras, kc.pruning.prune(dense, schedule, granularity="filter"))
    pruned.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    small = kc.pruning.shrink(kc.pruning.strip(pruned))
    batch = x[:32]
    return {"param_ratio": dense.count_params() / small.count_params(),
            "batch32_speedup": _speed(dense, batch, repeats) / _speed(small, batch, repeats)}


def _qat_in_fit(keras, data, epochs, folder):
    import keras_compress as kc
    from keras_compress.demo import digits_cnn

    (x, y), (x_test, y_test) = data
    dense = digits_cnn(keras=keras)
    dense_epoch = _epoch_seconds(keras, dense, x, y, epochs)
    qat = kc.quantization.quantize_aware(dense)  # fine-tunes the trained model
    qat_epoch = _epoch_seconds(keras, qat, x, y, epochs)
    sizes = [kc.export(model, os.path.join(folder, f"{name}.tflite"), sample_data=x_test,
                       compare_speed=False).size_bytes for name, model in (("float", dense), ("qat", qat))]
    return {"dense_epoch_s": dense_epoch, "qat_epoch_s": qat_epoch, "epoch_overhead": qat_epoch / dense_epoch,
            "dense_accuracy": dense.evaluate(x_test, y_test, verbose=0)[1],
            "qat_accuracy": qat.evaluate(x_test, y_test, verbose=0)[1],
            "tflite_size_ratio": sizes[1] / sizes[0]}


def run_lane(flavour, quick):
    """The figures of one lane, in this process."""
    import keras_compress as kc
    from keras_compress.demo import digits_cnn

    keras = _keras(flavour)
    epochs = 3 if quick else 6
    digits = kc.datasets.digits()
    figures = {"digits_cnn": _pruning_in_fit(keras, lambda: digits_cnn(keras=keras), digits, epochs)}
    (x, y), test = kc.datasets.digits(size=32, channels=3)
    count = 256 if quick else 1024

    def mobilenet():
        keras.utils.set_random_seed(0)
        return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                              classifier_activation=None)

    figures["mobilenet_v2"] = _pruning_in_fit(keras, mobilenet, ((x[:count], y[:count]), test), epochs)
    figures["small_resnet"] = _filter_shrink(keras, epochs=2 if quick else 6, repeats=20 if quick else 100)
    with tempfile.TemporaryDirectory() as folder:
        figures["digits_cnn_qat"] = _qat_in_fit(keras, digits, epochs, folder)
    return figures


def _table(results):
    lanes = list(results)
    rows = [("digits_cnn", key) for key in ("epoch_overhead", "sparsity", "worst_layer_gap", "dense_accuracy",
                                            "pruned_accuracy")]
    rows += [("mobilenet_v2", key) for key in ("epoch_overhead", "sparsity")]
    rows += [("small_resnet", key) for key in ("param_ratio", "batch32_speedup")]
    rows += [("digits_cnn_qat", key) for key in ("epoch_overhead", "dense_accuracy", "qat_accuracy",
                                                 "tflite_size_ratio")]
    lines = ["| model | figure | " + " | ".join(lanes) + " |", "|---|---|" + "---|" * len(lanes)]
    for model, key in rows:
        cells = " | ".join(f"{results[lane][model][key]:.3f}" for lane in lanes)
        lines.append(f"| {model} | {key} | {cells} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, samples and repeats")
    parser.add_argument("--lane", help=argparse.SUPPRESS)  # a child process: flavour to run
    args = parser.parse_args()
    if args.lane:
        print("RESULT " + json.dumps(run_lane(args.lane, args.quick)))
        return
    results = {}
    for flavour, backend in LANES:
        name = f"{flavour} ({backend})"
        print(f"running {name}...", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--lane", flavour]
        command += ["--quick"] if args.quick else []
        done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True,
                              text=True)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.split("RESULT ")[-1])
    print("\n" + _table(results))


if __name__ == "__main__":
    main()
