"""ONNX, run by ONNX Runtime."""

import collections

from keras_compress.formats.format import Format


def _holds(path):
    import onnx

    with open(path, "rb") as file:
        if file.read(1) != b"\x08":  # a ModelProto starts with its ir_version field
            return False
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


# Operators that multiply-accumulate: the input that holds their weights (or right-hand side).
_CONVOLUTIONS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
_MATRIX_PRODUCTS = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "Gemm": 1, "FusedMatMul": 1}


def _mac_count(path):
    """Multiply-accumulates per input row: each output element of a convolution or matrix product
    (each input element of a transposed convolution) costs one per weight it reduces over."""
    import math

    import onnx

    model = onnx.load(path)
    for tensor in model.graph.input:  # one row: shape inference then knows every size
        dims = tensor.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {info.name: [d.dim_value if d.HasField("dim_value") else None for d in
                          info.type.tensor_type.shape.dim]
              for info in (*graph.value_info, *graph.input, *graph.output)}
    shapes.update({init.name: list(init.dims) for init in graph.initializer})
    total = 0
    for node in graph.node:
        weight = _CONVOLUTIONS.get(node.op_type, _MATRIX_PRODUCTS.get(node.op_type))
        if weight is None:
            continue
        elements = shapes.get(node.input[0] if node.op_type == "ConvTranspose" else node.output[0])
        weights = shapes.get(node.input[weight])
        if not elements or not weights or None in elements or None in weights:
            return None
        if node.op_type in _CONVOLUTIONS:
            reduction = math.prod(weights[1:])
        else:
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            reduction = weights[-1] if transposed else weights[-2] if len(weights) > 1 else weights[0]
        total += math.prod(elements) * reduction
    return total


def _serve(path, arrays, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    session.run(None, arrays)


def _slow_reason(path, precision, settings):
    if precision == "int8_dynamic" and _op_counts(path).get("ConvInteger"):
        return ("ONNX Runtime runs dynamically quantized convolutions as ConvInteger, slower than float "
                'convolutions: quantize="static" makes int8 convolutions fast')
    return ""


FORMAT = Format(
    name="onnx", title="ONNX", suffixes=(".onnx",),
    exporter="keras_compress.export.onnx:export_onnx", runner="keras_compress.runtime.onnx_runner:OnnxRunner",
    libraries=("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
    export_options=("opset", "quantize", "calibration_data", "calibrate_method"),
    runner_options=("providers", "threads", "int8_kernels"),
    holds=_holds, weight_counts=_weight_counts, op_counts=_op_counts, mac_count=_mac_count, serve=_serve,
    after_export="keras_compress.export.onnx:after_export", slow_reason=_slow_reason,
    nothing_quantized="ONNX Runtime quantizes only the weights of MatMul, Conv, Gather and a few other "
                      "operators")
