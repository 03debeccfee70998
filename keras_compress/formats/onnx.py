"""ONNX, run by ONNX Runtime."""

import collections

from keras_compress.formats.format import Format


def _holds(path):
    import onnx

    try:
        return len(onnx.load_model(path, load_external_data=False).graph.node) > 0
    except Exception:  # not a file ONNX can parse
        return False


# Operator domains ONNX Runtime's CPU build implements (besides functions the file defines).
_RUNTIME_DOMAINS = ("com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
                    "com.ms.internal.nhwc")


def unknown_operators(path):
    """`["domain:Op", ...]`: the file's operators that are neither standard ONNX (for its opset),
    nor ONNX Runtime's own, nor functions the file defines."""
    import onnx

    model = onnx.load_model(path, load_external_data=False)
    local = {(function.domain, function.name) for function in model.functions}
    unknown = []
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        if (node.domain, node.op_type) in local or domain in _RUNTIME_DOMAINS:
            continue
        if domain in ("ai.onnx", "ai.onnx.ml") and onnx.defs.has(node.op_type, node.domain):
            continue
        unknown.append(f"{domain}:{node.op_type}")
    return sorted(set(unknown))


def _weight_counts(path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    params = zeros = 0
    for init in onnx.load(path).graph.initializer:
        if len(init.dims) >= 1 and init.data_type != onnx.TensorProto.INT64:  # skip shapes and indices
            value = numpy_helper.to_array(init)
            params += value.size
            zeros += int(np.count_nonzero(value == 0))
    return params, zeros


def _op_counts(path):
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def _serve(path, arrays, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    session.run(None, arrays)


FORMAT = Format(
    name="onnx", title="ONNX", suffixes=(".onnx",),
    exporter="keras_compress.export.onnx:export_onnx", runner="keras_compress.runtime.onnx_runner:OnnxRunner",
    libraries=("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
    export_options=("opset", "quantize", "calibration_data", "calibrate_method"),
    runner_options=("providers", "threads", "int8_kernels"),
    holds=_holds, weight_counts=_weight_counts, op_counts=_op_counts, serve=_serve)
