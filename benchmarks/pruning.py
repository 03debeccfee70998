"""Pruning benchmark: fit overhead, and filter pruning + shrink against the dense model.

The shrunk model is a small ResNet (residual Add joins, BatchNormalization) on the
digits resized to 32x32, trained briefly from scratch, pruned to 50% of its
filters while fine-tuning, then shrunk.

Every number is a ratio against a baseline measured in the same run, on this machine.

    .venv/bin/python benchmarks/pruning.py [--quick]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras
from common import EpochTimer, compile_classifier  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.demo import digits_cnn  # noqa: E402


def fit_overhead(x, y, epochs):
    """Median epoch time of fit with pruning over the same fit without (first epoch dropped)."""
    def epoch_time(model, callbacks):
        timer = EpochTimer()
        compile_classifier(model).fit(x, y, epochs=epochs, batch_size=32, verbose=0,
                                      callbacks=[timer, *callbacks])
        return float(np.median(timer.times[1:]))

    dense = epoch_time(digits_cnn(), [])
    schedule = kc.pruning.PolynomialDecay(0.0, 0.8, begin_epoch=0, end_epoch=epochs)
    results = {"dense_epoch_s": dense}
    for scope in ("layer", "global"):
        pruned = kc.pruning.prune(digits_cnn(), schedule, scope=scope)
        results[f"weight_{scope}_epoch_s"] = epoch_time(pruned, [kc.pruning.PruningCallback()])
        results[f"weight_{scope}_overhead"] = results[f"weight_{scope}_epoch_s"] / dense
    return results


def macs(model):
    """Multiply-accumulates of Conv2D, DepthwiseConv2D and Dense layers for one input."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel = layer.get_weights()[0]
            out = layer.output_shape
            positions = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            total += positions * int(np.prod(kernel.shape))
    return total


def latency(model, batch, repeats):
    """Median seconds per call of a compiled forward pass."""
    forward = tf.function(lambda inputs: model(inputs, training=False))
    inputs = tf.constant(np.random.default_rng(0).random((batch, *model.input_shape[1:]), dtype="float32"))
    for _ in range(5):
        forward(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(inputs).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def small_resnet(width=32, seed=0, keras=keras):
    """A small ResNet for 32x32 digits: two stages of residual blocks with BatchNormalization,
    built with `keras` (tf_keras by default, or Keras 3)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv_bn(x, filters, relu=True):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # A short run: the default momentum (0.99) leaves the moving variance far from the
        # batch variance after a few hundred steps, and inference collapses to chance.
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU()(x) if relu else x

    inputs = keras.Input((32, 32, 3))
    x = conv_bn(inputs, width)
    for stage, filters in enumerate((width, 2 * width)):
        if stage:
            x = layers.MaxPooling2D()(conv_bn(x, filters))
        residual = conv_bn(conv_bn(x, filters), filters, relu=False)
        x = layers.ReLU()(layers.Add()([x, residual]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x), name="small_resnet")


def filter_shrink(epochs, fine_tune_epochs, repeats):
    (x, y), (x_test, y_test) = kc.datasets.digits(size=32, channels=3)
    dense = compile_classifier(small_resnet())
    dense.fit(x, y, epochs=epochs, batch_size=32, verbose=2)
    dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)[1]
    schedule = kc.pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=fine_tune_epochs - 1)
    pruned = compile_classifier(kc.pruning.prune(dense, schedule, granularity="filter"))
    pruned.fit(x, y, epochs=fine_tune_epochs, batch_size=32, verbose=2,
               callbacks=[kc.pruning.PruningCallback()])
    small = compile_classifier(kc.pruning.shrink(kc.pruning.strip(pruned)))
    results = {
        "dense_accuracy": dense_accuracy,
        "shrunk_accuracy": small.evaluate(x_test, y_test, verbose=0)[1],
        "param_ratio": dense.count_params() / small.count_params(),
        "mac_ratio": macs(dense) / macs(small),
    }
    for batch in (1, 32):
        base, fast = latency(dense, batch, repeats), latency(small, batch, repeats)
        results[f"batch{batch}_dense_ms"] = base * 1e3
        results[f"batch{batch}_shrunk_ms"] = fast * 1e3
        results[f"batch{batch}_speedup"] = base / fast
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    args = parser.parse_args()
    (x, y), _ = kc.datasets.digits()
    overhead = fit_overhead(x, y, epochs=3 if args.quick else 6)
    shrink = filter_shrink(epochs=2 if args.quick else 8, fine_tune_epochs=2 if args.quick else 5,
                           repeats=20 if args.quick else 100)
    print("\n## Pruning overhead in fit (digits CNN, batch 32)")
    for key, value in overhead.items():
        print(f"{key:<28}{value:10.3f}")
    print("\n## 50% filter pruning + shrink (small ResNet, 32x32 digits)")
    for key, value in shrink.items():
        print(f"{key:<28}{value:10.3f}")


if __name__ == "__main__":
    main()
