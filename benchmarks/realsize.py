"""Real-size models: keras_compress's files against the recipe by hand with the same libraries.

A 224x224 `keras.applications` model (Keras 3, `weights=None`: nothing is downloaded) is
exported by keras_compress to float32 and static int8 ONNX and TFLite, and the same files are
made by hand: tf2onnx, then ONNX Runtime's `quant_pre_process` and `quantize_static` with the
same settings (QDQ, per-channel, uint8 activations, int8 weights); the TFLite converter with a
representative dataset. Every file runs in its plain runtime (an ONNX Runtime session, a LiteRT
interpreter), timed interleaved in one process at each batch size and thread count: p50 and p90
latency, the ratio to the float32 file of the same runtime, and the ratio to the file by hand.

    .venv/bin/python benchmarks/realsize.py [--models MobileNetV2 ResNet50] [--runs 30]

(`quant_pre_process` runs without its symbolic shape inference, which needs sympy; the graphs
here have static shapes but the batch, which ONNX shape inference handles.)
"""

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras  # noqa: E402
import keras_compress as kc  # noqa: E402

APPLICATIONS = {
    "MobileNetV2": lambda: keras.applications.MobileNetV2(alpha=1.0, input_shape=(224, 224, 3), weights=None),
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), weights=None),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=(224, 224, 3), weights=None),
    "ResNet50": lambda: keras.applications.ResNet50(input_shape=(224, 224, 3), weights=None),
}


def onnx_by_hand(model, folder, calibration):
    """float32 and static int8 ONNX the way ONNX Runtime's documentation teaches it."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")]
    function = tf.function(lambda x: model(x, training=False), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=17)
    float_path, pre_path, int8_path = (os.path.join(folder, f"hand_{name}.onnx")
                                       for name in ("float32", "pre", "int8"))
    onnx.save(proto, float_path)
    quant_pre_process(float_path, pre_path, skip_symbolic_shape=True)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self):
            return next(self.batches, None)

    q.quantize_static(pre_path, int8_path, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)
    return float_path, int8_path


def tflite_by_hand(model, folder, calibration):
    """static int8 TFLite the way the TFLite post-training quantization guide teaches it."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = os.path.join(folder, "hand_int8.tflite")
    with open(path, "wb") as file:
        file.write(converter.convert())
    return path


def plain_call(path, batch, threads):
    """A call of the file in its own runtime, without keras_compress."""
    x = np.random.default_rng(0).random((batch, 224, 224, 3), dtype="float32")
    if path.endswith(".onnx"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Threads that spin after a call would take the cores from the next file's call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        return lambda: session.run(None, feed)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
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
    """`{label: path}`: keras_compress's files and those made by hand."""
    files = {}
    for suffix in (".onnx", ".tflite"):
        files["kc float32" + suffix] = kc.export(model, os.path.join(folder, "f32" + suffix)).path
        files["kc int8" + suffix] = kc.export(model, os.path.join(folder, "int8" + suffix), quantize="static",
                                              calibration_data=calibration, compare_speed=False,
                                              verify="warn").path
    files["hand float32.onnx"], files["hand int8.onnx"] = onnx_by_hand(model, folder, calibration)
    files["hand int8.tflite"] = tflite_by_hand(model, folder, calibration)
    return files


def table_rows(name, batch, threads, timed, files):
    for label, (p50, p90) in timed.items():
        float_p50 = timed["kc float32" + os.path.splitext(label)[1]][0]
        hand = label.replace("kc ", "hand ")
        versus_hand = f"{p50 / timed[hand][0]:.2f}" if label.startswith("kc") and hand in timed else ""
        size = os.path.getsize(files[label]) / 1e6
        yield (f"| {name} | {label} | {batch} | {threads} | {p50:.2f} | {p90:.2f} | {p50 / float_p50:.2f} | "
               f"{versus_hand} | {size:.1f} |")


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
    print("| model | file | batch | threads | p50 ms | p90 ms | vs float32 | vs by hand | MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        keras.utils.set_random_seed(0)
        model = APPLICATIONS[name]()
        with tempfile.TemporaryDirectory() as folder:
            files = make_files(model, folder, calibration)
            for batch in args.batches:
                for threads in args.threads:
                    calls = {label: plain_call(path, batch, threads) for label, path in files.items()}
                    for row in table_rows(name, batch, threads, interleaved(calls, args.runs), files):
                        print(row, flush=True)
        del model


if __name__ == "__main__":
    main()
