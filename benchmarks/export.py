"""Export benchmark: export time, parity and runner latency per format, against TensorFlow.

Models: the digits CNN, MobileNetV2 (alpha 0.35, 32x32, weights=None) and a small
Embedding+GRU text model. Latency is the median of compiled calls; every runner is
also compared with calling its runtime directly (ONNX Runtime session, LiteRT
signature runner) to show what the `Runner` layer costs. Then the int8 ONNX files of
the digits CNN in plain ONNX Runtime sessions (no keras_compress): the QAT export with
default session options and with `session.disable_quant_qdq=1`, against static int8
and float32. All in one run.

    .venv/bin/python benchmarks/export.py [--quick]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras

import keras_compress as kc  # noqa: E402
from keras_compress.demo import digits_cnn  # noqa: E402
from keras_compress.export.signature import sample_inputs  # noqa: E402

L = keras.layers


def text_gru():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((32,), dtype="int32", name="tokens")
    x = L.GRU(32)(L.Embedding(1000, 16)(tokens))
    return keras.Model(tokens, L.Dense(4, name="logits")(x), name="text_gru")


def mobilenet():
    """Briefly trained: untrained, its logits vanish (~1e-11) and parity would mean nothing."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (x, y), _ = kc.datasets.digits(size=32, channels=3)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model


def median_seconds(*calls, repeats):
    """Median seconds of each call; the calls alternate so machine noise hits them alike."""
    for call in calls:
        for _ in range(3):
            call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) for spent in times]


def direct_call(runner, arrays):
    """The runtime called without the Runner layer."""
    if runner.format == "onnx":
        feed = {info.name: a for info, a in zip(runner.inputs, arrays)}
        return lambda: runner.session.run(None, feed)
    if runner.format == "tflite":
        rows = runner.inputs[0].shape[0] or len(arrays[0])  # fixed-batch (recurrent) models go row by row
        feeds = [{info.name: a[i:i + rows] for info, a in zip(runner.inputs, arrays)}
                 for i in range(0, len(arrays[0]), rows)]
        return lambda: [runner._runner(**feed) for feed in feeds]
    return None


def bench_model(model, data, folder, repeats):
    """Rows of (model, format, batch, ms, speed vs TF, export s, max|diff|, output scale, top-1,
    runner/direct); parity is measured on `data` (real inputs, or None for random ones)."""
    rows = []
    reference = kc.runtime.KerasRunner(model)
    for batch in (1, 32):
        arrays = sample_inputs(model, rows=batch, seed=batch)
        (base,) = median_seconds(lambda arrays=arrays: reference.predict(arrays), repeats=repeats)
        rows.append((model.name, "tensorflow", batch, base * 1e3, 1.0, None, None, None, None, None))
    for suffix in (".onnx", ".tflite", ""):
        path = os.path.join(folder, model.name.replace(".", "_") + suffix)
        start = time.perf_counter()
        artifact = kc.export(model, path, sample_data=sample_inputs(model, rows=64, seed=3) if data is None
                             else data)
        seconds = time.perf_counter() - start
        entry = next(iter(artifact.parity.values()))
        runner = kc.load(path)
        for batch in (1, 32):
            arrays = sample_inputs(model, rows=batch, seed=batch)
            (base,) = median_seconds(lambda arrays=arrays: reference.predict(arrays), repeats=repeats)
            # The runner alternates with its runtime called directly (never with TensorFlow,
            # whose thread pools would disturb both).
            direct = direct_call(runner, arrays)
            x = arrays[0] if len(arrays) == 1 else arrays  # as users call it
            own, *rest = median_seconds(lambda runner=runner, x=x: runner.predict(x),
                                        *([direct] if direct else []), repeats=repeats)
            overhead = own / rest[0] if rest else None
            rows.append((model.name, artifact.format, batch, own * 1e3, base / own, seconds,
                         entry["max_abs_diff"], entry["scale"], entry.get("top1_agreement"), overhead))
    return rows


def plain_onnxruntime_rows(folder, repeats):
    """(file, session options, batch, ms, speed vs float32) of int8 ONNX files in plain ONNX Runtime."""
    import onnxruntime

    (x, y), (x_test, _) = kc.datasets.digits()
    model = digits_cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    qat = kc.quantization.quantize_aware(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    files = {"float32": kc.export(model, os.path.join(folder, "f32.onnx")).path,
             "static int8": kc.export(model, os.path.join(folder, "static.onnx"), quantize="static",
                                      calibration_data=x[:256], compare_speed=False).path,
             "QAT": kc.export(qat, os.path.join(folder, "qat.onnx"), compare_speed=False).path}

    def session(path, disable_quant_qdq=False):
        options = onnxruntime.SessionOptions()
        if disable_quant_qdq:
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    sessions = {("float32", "default"): session(files["float32"]),
                ("static int8", "default"): session(files["static int8"]),
                ("QAT", "default"): session(files["QAT"]),
                ("QAT", "disable_quant_qdq=1"): session(files["QAT"], disable_quant_qdq=True)}
    name = sessions[("float32", "default")].get_inputs()[0].name
    rows = []
    for batch in (1, 32):
        feed = {name: x_test[:batch]}
        times = median_seconds(*[lambda s=s, feed=feed: s.run(None, feed) for s in sessions.values()],
                               repeats=repeats)
        for (label, options), seconds in zip(sessions, times):
            rows.append((label, options, batch, seconds * 1e3, times[0] / seconds))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 20 if args.quick else 200
    (_, _), (x8, _) = kc.datasets.digits()
    (_, _), (x32, _) = kc.datasets.digits(size=32, channels=3)
    print(f"{'model':<22}{'format':<13}{'batch':>6}{'ms':>9}{'vs TF':>8}{'export s':>10}"
          f"{'max|diff|':>11}{'|logit|':>9}{'top-1':>7}{'runner/direct':>15}")
    with tempfile.TemporaryDirectory() as folder:
        for make, data in ((digits_cnn, x8[:64]), (mobilenet, x32[:64]), (text_gru, None)):
            for row in bench_model(make(), data, folder, repeats):
                name, fmt, batch, ms, speed, export_s, diff, scale, top1, overhead = row
                cells = [f"{name:<22}{fmt:<13}{batch:>6}{ms:>9.3f}{speed:>7.2f}x",
                         f"{export_s:>10.1f}" if export_s is not None else f"{'':>10}",
                         f"{diff:>11.2e}{scale:>9.2g}" if diff is not None else f"{'':>20}",
                         f"{top1:>7.0%}" if top1 is not None else f"{'':>7}",
                         f"{overhead:>14.3f}x" if overhead is not None else ""]
                print("".join(cells), flush=True)
        print(f"\n{'digits CNN ONNX':<16}{'ONNX Runtime session':<24}{'batch':>6}{'ms':>9}{'vs float32':>12}")
        for label, options, batch, ms, speed in plain_onnxruntime_rows(folder, repeats):
            print(f"{label:<16}{options:<24}{batch:>6}{ms:>9.3f}{speed:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
