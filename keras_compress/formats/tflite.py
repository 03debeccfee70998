"""TFLite flatbuffers, run by LiteRT."""

import collections

from keras_compress.formats.format import Format

# TFLite tensor type codes and their NumPy types.
_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16",
           10: "float64"}


def _holds(path):
    with open(path, "rb") as file:
        return file.read(8)[4:8] == b"TFL3"


_CUSTOM = 32  # the builtin code of custom operators


def unknown_operators(path):
    """`["custom:Op", ...]`: the file's custom operators, which LiteRT's interpreter lacks unless
    they are registered with it."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    return sorted({f"custom:{code.customCode.decode(errors='replace')}" for code in model.operatorCodes
                   if max(code.builtinCode, code.deprecatedBuiltinCode) == _CUSTOM})


def _weight_counts(path):
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    params = zeros = 0
    seen = set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer]
            dtype = _DTYPES.get(tensor.type)
            if buffer.data is None or not len(buffer.data) or dtype is None or tensor.buffer in seen:
                continue
            if dtype in ("int32", "int64") and len(tensor.shape) <= 1:
                continue  # shapes, axes and int32 biases of int8 kernels count with their kernel
            seen.add(tensor.buffer)
            value = np.frombuffer(bytes(buffer.data), dtype=dtype)
            params += value.size
            zeros += int(np.count_nonzero(value == 0))
    return params, zeros


def _op_counts(path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    return collections.Counter(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                               for graph in model.subgraphs for op in graph.operators)


def _call_on_zeros(interpreter):
    """Allocates `interpreter`'s tensors and runs it once on zeros of its inputs' shapes."""
    import numpy as np

    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()


def sparse_tensor_count(interpreter):
    """How many tensors of `interpreter`'s model are stored in TFLite's sparse encoding."""
    return sum(1 for detail in interpreter.get_tensor_details() if detail["sparsity_parameters"])


# Operators whose arithmetic the count below cannot see: loops, branches, fused recurrent layers.
_UNCOUNTED = {"WHILE", "IF", "CALL_ONCE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
              "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "CUSTOM", "DELEGATE"}


def _mac_count(path):
    """Multiply-accumulates per input row of the convolutions and matrix products, with the tensor
    sizes of a call on one row of zeros (a file stores sizes computed at run time as
    placeholders); None for graphs with loops, branches or fused recurrent layers, and for inputs
    with sizes other than the batch left open."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=path,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    if any(-1 in list(detail["shape_signature"])[1:] for detail in interpreter.get_input_details()):
        return None
    _call_on_zeros(interpreter)
    operators = interpreter._get_ops_details()
    if any(op["op_name"] in _UNCOUNTED for op in operators):
        return None
    shapes = {detail["index"]: detail["shape"] for detail in interpreter.get_tensor_details()}
    return sum(_operator_macs(op["op_name"], [shapes.get(i) for i in op["inputs"]], shapes[op["outputs"][0]])
               for op in operators)


def _operator_macs(name, inputs, output):
    """Multiply-accumulates of one TFLite operator, from its tensors' shapes; 0 for an operator
    without any. Counted in Python ints: LiteRT's int32 shapes overflow past 2**31 (ResNet50)."""
    import math

    inputs = [None if shape is None else [int(size) for size in shape] for shape in inputs]
    out = math.prod(int(size) for size in output)
    if name == "CONV_2D":  # filter [out, height, width, in]
        return out * math.prod(inputs[1][1:])
    if name == "CONV_3D":  # filter [depth, height, width, in, out]
        return out * math.prod(inputs[1][:-1])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, height, width, out]
        return out * math.prod(inputs[1][1:-1])
    if name == "FULLY_CONNECTED":  # weights [out, in]
        return out * inputs[1][-1]
    if name == "BATCH_MATMUL":  # the converter leaves both operands untransposed
        return out * inputs[0][-1]
    if name == "TRANSPOSE_CONV":  # (output shape, filter [out, height, width, in], input)
        return math.prod(inputs[2]) * math.prod(inputs[1][:-1])
    return 0


def _xnnpack_prepares(interpreter):
    """Whether `interpreter`'s XNNPack delegate prepares a graph with sparse-encoded weights: it
    fails on sparse int8 weights (and on some fully-connected graphs), in some graphs only at the
    first call; the probe's call leaves no state behind."""
    if not sparse_tensor_count(interpreter):
        return True
    try:
        _call_on_zeros(interpreter)
    except RuntimeError as error:
        if "xnnpack" not in str(error).lower():
            raise
        return False
    interpreter.reset_all_variables()
    return True


def litert_interpreter(*, threads=None, **source):
    """A LiteRT interpreter of `model_path=` or `model_content=`, tensors allocated: with its
    default XNNPack delegate, or TFLite's builtin kernels where XNNPack cannot prepare the graph.
    Its `uses_xnnpack` says which."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(num_threads=threads, **source)
    xnnpack = _xnnpack_prepares(interpreter)
    if not xnnpack:
        interpreter = Interpreter(num_threads=threads, **source,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    interpreter.uses_xnnpack = xnnpack
    return interpreter


def _serve(path, arrays, threads):
    runner = litert_interpreter(model_path=path, threads=threads).get_signature_runner("serving_default")
    details = runner.get_input_details()
    feed = {}
    for name, value in arrays.items():
        if details[name]["shape_signature"][0] > 0:  # a fixed-batch (recurrent) model: one row at a time
            value = value[:details[name]["shape_signature"][0]]
        feed[name] = value.astype(details[name]["dtype"])
    runner(**feed)


def _slow_reason(path, precision, settings):
    if settings.get("xnnpack") is False:
        return ("it runs on TFLite's builtin kernels: LiteRT's XNNPack delegate cannot take its sparse "
                "weights; export without sparse_weights for speed")
    return ""


FORMAT = Format(
    name="tflite", title="TFLite", suffixes=(".tflite",),
    exporter="keras_compress.export.tflite:export_tflite",
    runner="keras_compress.runtime.tflite_runner:TFLiteRunner",
    libraries=("tensorflow", "ai-edge-litert"),
    export_options=("quantize", "calibration_data", "io", "sparse_weights"),
    runner_options=("threads",),
    holds=_holds, weight_counts=_weight_counts, op_counts=_op_counts, mac_count=_mac_count, serve=_serve,
    check_export="keras_compress.export.tflite:check_export", slow_reason=_slow_reason,
    nothing_quantized="the TFLite converter quantizes only weights of 1,024 elements or more")
