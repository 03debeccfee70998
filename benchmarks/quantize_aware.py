"""How long making a model quantization-aware takes: `kc.quantization.quantize_aware` against one
`clone_model` of the same model (what any rebuild of it costs at least) and against tfmot's
`quantize_model` by hand, on tf_keras applications (weights=None, 32x32 inputs, 10 classes), in
one run. Each time is the median of `--repeats` calls; tfmot's is one call, or the error it
raised.

    .venv/bin/python benchmarks/quantize_aware.py [--models DenseNet121 ResNet50 ...] [--repeats N]
"""

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_keras as keras  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress._tfmot import tfmot  # noqa: E402  (imported the way tfmot needs: see _tfmot)

MODELS = ("DenseNet121", "ResNet50", "MobileNetV2", "NASNetMobile")


def application(name):
    return getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)


def median_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        keras.backend.clear_session()
    return statistics.median(times)


def tfmot_seconds(model):
    start = time.perf_counter()
    try:
        tfmot.quantization.keras.quantize_model(model)
    except Exception as error:  # tfmot refuses several applications: report what it said
        return f"fails ({type(error).__name__})"
    finally:
        keras.backend.clear_session()
    return f"{time.perf_counter() - start:.1f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| model | layers | clone_model | quantize_aware | ratio | difference | tfmot quantize_model |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = application(name)
        clone = median_seconds(lambda model=model: keras.models.clone_model(model), args.repeats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the layers left float, named once per call
            aware = median_seconds(lambda model=model: kc.quantization.quantize_aware(model), args.repeats)
        print(f"| {name} | {len(model.layers)} | {clone:.1f} s | {aware:.1f} s | {aware / clone:.1f}x "
              f"| {aware - clone:+.1f} s | {tfmot_seconds(model)} |", flush=True)


if __name__ == "__main__":
    main()
