"""Real-size models: keras_compress's files against the recipe by hand with the same libraries.

A 224x224 `keras.applications` model (Keras 3, `weights=None`: nothing is downloaded) is
exported by keras_compress to ONNX and TFLite: float32, dynamic int8, static int8, float16,
quantization-aware int8 (after one short fit), 50% of the filters pruned and removed
(`shrink`), and 2:4 / 80% weight sparsity in TFLite's sparse encoding. The same files are made
by hand where a recipe exists: tf2onnx, then ONNX Runtime's `quant_pre_process` and
`quantize_static` (or `quantize_dynamic`) with the same settings (QDQ, per-channel, uint8
activations, int8 weights); the TFLite converter with a representative dataset, or with
float16 weights. Every file runs in its plain runtime (an ONNX Runtime session, a LiteRT
interpreter with its default XNNPack delegate where it can), timed interleaved in one process
at each batch size and thread count: p50 and p90 latency, the ratio to the float32 file of the
same runtime and to the file by hand, million multiply-accumulates per row, size and gzipped
size. Then the targets, and whether each holds.

    .venv/bin/python benchmarks/realsize.py [--models MobileNetV2 ResNet50] [--runs 30]

(`quant_pre_process` runs without its symbolic shape inference, which needs sympy; the graphs
here have static shapes but the batch, which ONNX shape inference handles.)
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.benchmark.macs import mac_count  # noqa: E402
from keras_compress.benchmark.weights import gzipped_bytes  # noqa: E402
from keras_compress.formats.tflite import litert_interpreter  # noqa: E402

APPLICATIONS = {
    "MobileNetV2": lambda: keras.applications.MobileNetV2(alpha=1.0, input_shape=(224, 224, 3), weights=None),
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), weights=None),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=(224, 224, 3), weights=None),
    "ResNet50": lambda: keras.applications.ResNet50(input_shape=(224, 224, 3), weights=None),
}


def onnx_by_hand(model, folder, calibration):
    """float32, static and dynamic int8 ONNX the way ONNX Runtime's documentation teaches it."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")]
    function = tf.function(lambda x: model(x, training=False), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=17)
    paths = {name: os.path.join(folder, f"hand_{name}.onnx")
             for name in ("float32", "pre", "int8", "dynamic")}
    onnx.save(proto, paths["float32"])
    if len(proto.graph.input) > 1:
        # from_function made captured constants inputs (EfficientNet's Normalization): tf2onnx's
        # command on the SavedModel of Keras' `model.export` freezes them, as its README teaches.
        saved = os.path.join(folder, "hand_saved_model")
        model.export(saved, verbose=False)
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--output",
                        paths["float32"], "--opset", "17"], check=True, capture_output=True)
    quant_pre_process(paths["float32"], paths["pre"], skip_symbolic_shape=True)
    name = onnx.load(paths["pre"]).graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calibration[i:i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.batches, None)

    q.quantize_static(paths["pre"], paths["int8"], Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    q.quantize_dynamic(paths["pre"], paths["dynamic"], per_channel=True, weight_type=q.QuantType.QInt8)
    return {f"hand {name}.onnx": paths[name] for name in ("float32", "int8", "dynamic")}


def tflite_by_hand(model, folder, calibration):
    """static int8, dynamic int8 and float16 TFLite the way the TFLite post-training quantization
    guides teach them."""
    import tensorflow as tf

    files = {}
    for name in ("int8", "dynamic", "float16"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if name == "int8":
            converter.representative_dataset = lambda: ([row[None]] for row in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if name == "float16":
            converter.target_spec.supported_types = [tf.float16]
        files[f"hand {name}.tflite"] = os.path.join(folder, f"hand_{name}.tflite")
        with open(files[f"hand {name}.tflite"], "wb") as file:
            file.write(converter.convert())
    return files


def trained_briefly(model, calibration, pruning=False):
    """`model` after one short fit (a few steps on the calibration images): what a pruning or QAT
    fine-tune leaves, for timing only (the weights do not matter)."""
    labels = np.zeros(len(calibration), "int64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(calibration, labels, batch_size=8, epochs=1, verbose=0,
              callbacks=[kc.pruning.PruningCallback()] if pruning else [])
    return model


def plain_call(path, x, threads):
    """A call of the file on the float32 batch `x` in its own runtime, without keras_compress."""
    if path.endswith(".onnx"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Threads that spin after a call would take the cores from the next file's call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        return lambda: session.run(None, feed)
    # LiteRT with its default XNNPack delegate, or its builtin kernels where XNNPack cannot run the
    # file (sparse int8 weights).
    interpreter = litert_interpreter(model_path=path, threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    if detail["dtype"] != np.float32:  # a full-integer input
        scale, zero = detail["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(detail["dtype"])

    def call():
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    return call


def interleaved(calls, runs):
    """p50 and p90 milliseconds of each call; the calls alternate so machine noise hits them alike."""
    for call in calls.values():
        for _ in range(3):
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (float(np.percentile(spent, 50)), float(np.percentile(spent, 90)))
            for name, spent in times.items()}


def make_files(model, folder, calibration):
    """`{label: path}`: keras_compress's files and those made by hand; `{label: MACs per row}`."""
    def export(label, source, **options):
        files[label] = kc.export(source, os.path.join(folder, label.replace(" ", "_").replace(":", "")),
                                 compare_speed=False, verify="warn", **options).path

    files = {}
    for suffix in (".onnx", ".tflite"):
        export("kc float32" + suffix, model)
        export("kc int8" + suffix, model, quantize="static", calibration_data=calibration)
        export("kc dynamic" + suffix, model, quantize="dynamic")
        export("kc float16" + suffix, model, quantize="float16")
    files.update(onnx_by_hand(model, folder, calibration))
    files.update(tflite_by_hand(model, folder, calibration))
    qat = trained_briefly(kc.quantization.quantize_aware(model), calibration)
    export("kc qat.onnx", qat)
    export("kc qat.tflite", qat)
    del qat
    filters = trained_briefly(kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter"),
                              calibration, pruning=True)
    shrunk = kc.pruning.shrink(kc.pruning.strip(filters))
    del filters
    export("kc filters50 float32.onnx", shrunk)
    export("kc filters50 int8.onnx", shrunk, quantize="static", calibration_data=calibration)
    export("kc filters50 int8.tflite", shrunk, quantize="static", calibration_data=calibration)
    del shrunk
    # 2:4 patterns fit Dense and Conv2D kernels whose inputs come in fours (not the first convolution's 3).
    odd = [layer.name for layer in model.layers if type(layer).__name__ not in ("Dense", "Conv2D")
           or layer.kernel.shape[-2] % 4]
    for pattern, schedule, options in (("2:4", kc.pruning.ConstantSparsity(0.5),
                                        {"granularity": "2:4", "exclude": odd}),
                                       ("w80", kc.pruning.ConstantSparsity(0.8), {})):
        sparse = kc.pruning.strip(trained_briefly(kc.pruning.prune(model, schedule, **options), calibration,
                                                  pruning=True))
        export(f"kc {pattern} float32.tflite", sparse)
        export(f"kc {pattern} sparse float32.tflite", sparse, sparse_weights=True)
        export(f"kc {pattern} sparse int8.tflite", sparse, quantize="static", calibration_data=calibration,
               sparse_weights=True)
        del sparse
    return files


def table_rows(name, batch, threads, timed, files, macs):
    for label, (p50, p90) in timed.items():
        float_p50 = timed["kc float32" + os.path.splitext(label)[1]][0]
        hand = label.replace("kc ", "hand ")
        versus_hand = f"{p50 / timed[hand][0]:.2f}" if label.startswith("kc") and hand in timed else ""
        count = "–" if macs[label] is None else f"{macs[label] / 1e6:.0f}"
        yield (f"| {name} | {label} | {batch} | {threads} | {p50:.2f} | {p90:.2f} | {p50 / float_p50:.2f} | "
               f"{versus_hand} | {count} | {os.path.getsize(files[label]) / 1e6:.1f} | "
               f"{gzipped_bytes(files[label]) / 1e6:.1f} |")


def targets(name, batch, threads, timed, macs, vnni):
    """`(target, measured, holds)` for each of the targets this benchmark checks."""
    p50 = {label: times[0] for label, times in timed.items()}
    where = f"{name}, batch {batch}, {threads} thread(s)"
    for label in p50:
        hand = label.replace("kc ", "hand ")
        if label.startswith("kc") and hand in p50:
            ratio = p50[label] / p50[hand]
            yield f"{where}: {label} within 1.05x of {hand}", f"{ratio:.2f}x", ratio <= 1.05
    if vnni:
        speedup = p50["kc float32.onnx"] / p50["kc int8.onnx"]
        by_hand = p50["hand float32.onnx"] / p50["hand int8.onnx"]
        yield (f"{where}: static int8 ONNX at least 1.8x faster than float32 (by hand: {by_hand:.2f}x)",
               f"{speedup:.2f}x", speedup >= 1.8 or speedup >= by_hand / 1.05)
    speedup = p50["kc float32.tflite"] / p50["kc int8.tflite"]
    yield f"{where}: static int8 TFLite at least 2x faster than float32", f"{speedup:.2f}x", speedup >= 2
    for suffix, base in ((" float32.onnx", "kc float32.onnx"), (" int8.onnx", "kc int8.onnx"),
                         (" int8.tflite", "kc int8.tflite")):
        label = "kc filters50" + suffix
        if macs[base] is None or macs[label] is None:
            continue
        speedup, fewer = p50[base] / p50[label], macs[base] / macs[label]
        yield (f"{where}: {label} faster in proportion to the MACs removed ({fewer:.2f}x fewer)",
               f"{speedup:.2f}x", speedup >= fewer / 1.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["MobileNetV2"], choices=sorted(APPLICATIONS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with open("/proc/cpuinfo") as file:
        cpuinfo = file.read()
    flags = [flag for flag in ("avx512_vnni", "avx_vnni", "avx512f", "avx2") if flag in cpuinfo]
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, flags {flags}")
    calibration = np.random.default_rng(1).random((32, 224, 224, 3), dtype="float32")
    print("| model | file | batch | threads | p50 ms | p90 ms | vs float32 | vs by hand | MMACs | MB | "
          "gzip MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checked = []
    for name in args.models:
        keras.utils.set_random_seed(0)
        model = APPLICATIONS[name]()
        with tempfile.TemporaryDirectory() as folder:
            files = make_files(model, folder, calibration)
            macs = {label: mac_count(path) for label, path in files.items()}
            for batch in args.batches:
                for threads in args.threads:
                    x = np.random.default_rng(0).random((batch, 224, 224, 3), dtype="float32")
                    calls = {label: plain_call(path, x, threads) for label, path in files.items()}
                    timed = interleaved(calls, args.runs)
                    del calls
                    for row in table_rows(name, batch, threads, timed, files, macs):
                        print(row, flush=True)
                    checked += targets(name, batch, threads, timed, macs, "vnni" in " ".join(flags))
        del model
    print("\n| target | measured | holds |\n|---|---|---|")
    for target, measured, holds in checked:
        print(f"| {target} | {measured} | {'yes' if holds else 'NO'} |")


if __name__ == "__main__":
    main()
