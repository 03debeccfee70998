"""TensorRT engines from the ONNX export, and a CPU-side readiness check of ONNX files.

TensorRT 10.1 deprecated, and 11 removed, INT8 calibrators and the FP16/INT8 builder
flags: networks are strongly typed, so precision comes from the ONNX itself. FP16
engines are built from a float16 ONNX; INT8 engines from explicit, symmetric Q/DQ
(a quantization-aware model, or static quantization with calibration data).
"""

import dataclasses
import json
import os
import re

import onnx

from keras_compress._files import write_atomically
from keras_compress._tensorrt import require_tensorrt
from keras_compress._types import PathLike
from keras_compress.errors import ExportError, ModelFileError
from keras_compress.export.checks import refuse_keras_int8_kernels
from keras_compress.export.onnx import export_onnx
from keras_compress.export.qdq import symmetric_activations

__all__ = ["export_tensorrt", "check_tensorrt", "TensorRTCheck", "DEFAULT_TIMING_CACHE"]

DEFAULT_TIMING_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "keras_compress",
                                    "tensorrt.timing-cache")


# Integer operators of ONNX Runtime's dynamic / QOperator quantization; TensorRT takes Q/DQ only.
_INTEGER_OPS = {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear"}


def _layer_precision(layer):
    """"int8", "float16" or "float32" from an engine inspector layer entry."""
    outputs = layer.get("Outputs") or [{}]
    text = json.dumps(outputs[0]).lower()
    for word, precision in (("int8", "int8"), ("half", "float16"), ("fp16", "float16")):
        if word in text:
            return precision
    return "float32"


def _read_timing_cache(config, path):
    data = b""
    if path and os.path.exists(path):
        with open(path, "rb") as file:
            data = file.read()
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=True)


def _write_timing_cache(config, path):
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = memoryview(config.get_timing_cache().serialize())

    def write(target):
        with open(target, "wb") as file:
            file.write(data)

    write_atomically(path, write)


def check_export(model, request):
    """What an engine can be built from: quantize and precision that TensorRT has, a (min, opt, max)
    batch profile, a model without Keras' own int8 kernels, and TensorRT with a GPU here."""
    if request.quantize in ("dynamic", "float16"):
        raise ExportError(f'TensorRT engines take quantize=None or "static", got {request.quantize!r}: for '
                          'FP16 pass precision="fp16"; dynamic quantization has no TensorRT form.')
    int8 = request.quantize_aware or request.quantize == "static"
    allowed = (None, "int8") if int8 else (None, "fp32", "fp16")
    if request.precision not in allowed:
        raise ExportError(f"precision must be one of {allowed} for this model's engine, "
                          f"got {request.precision!r}.")
    refuse_keras_int8_kernels(model, "TensorRT")
    require_tensorrt()
    batch_sizes = request.batch_sizes
    if len(batch_sizes) != 3 or not 1 <= batch_sizes[0] <= batch_sizes[1] <= batch_sizes[2]:
        raise ExportError("batch_sizes must be (min, opt, max) with 1 <= min <= opt <= max, "
                          f"got {batch_sizes!r}")


def export_tensorrt(model, path, metadata, *, opset=None, quantize=None, calibration_data=None,
                    precision=None,
                    batch_sizes=(1, 8, 32), timing_cache=DEFAULT_TIMING_CACHE):
    """Builds a TensorRT engine for `model` at `path`, through its ONNX export.

    Args:
        precision: "fp32" (None) or "fp16" for float models; int8 comes from Q/DQ (a
            quantization-aware model or `quantize="static"`).
        batch_sizes: (min, opt, max) batch of the optimization profile.
        timing_cache: file reused across builds to speed them up; None for none.
    """
    trt = require_tensorrt()
    precision = precision or "fp32"
    onnx_path = path + ".onnx"
    settings = export_onnx(model, onnx_path, metadata, opset=opset,
                           quantize="float16" if precision == "fp16" else quantize,
                           calibration_data=calibration_data)
    proto = onnx.load(onnx_path)
    os.remove(onnx_path)
    int8 = settings.get("quantize") in ("qat", "static")
    if int8:
        settings["symmetric_activation_qdq"] = symmetric_activations(proto)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(proto.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse the ONNX export of {model.name!r}: {errors}")
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # keep float32 engines within float32 tolerance
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, *[(batch, *rest) for batch in batch_sizes])
    config.add_optimization_profile(profile)
    _read_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine for {model.name!r} (see its log above).")
    _write_timing_cache(config, timing_cache)
    with open(path, "wb") as file:
        file.write(memoryview(serialized))

    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    inspector = engine.create_engine_inspector()
    layers = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)).get("Layers", [])
    counts = {}
    for layer in layers:
        if isinstance(layer, dict):
            kind = _layer_precision(layer)
            counts[kind] = counts.get(kind, 0) + 1
    settings.update(precision=precision if not int8 else "int8", batch_sizes=list(batch_sizes),
                    layer_precisions=counts, tensorrt=trt.__version__)
    return settings


@dataclasses.dataclass
class TensorRTCheck:
    """What `check_tensorrt` found; `ready` when nothing stands in the way of a build."""

    path: str
    opset: int
    inputs: list
    precision: str
    quantize_linear: int
    weight_dequantize_per_channel: int
    asymmetric_qdq: int
    problems: list
    notes: list

    @property
    def ready(self):
        return not self.problems

    def __str__(self):
        lines = [f"TensorRT readiness of {self.path}: {'ready' if self.ready else 'NOT ready'}",
                 f"  opset {self.opset}, precision from the graph: {self.precision}",
                 "  inputs: " + ", ".join(f"{name}{list(shape)}" for name, shape in self.inputs),
                 f"  QuantizeLinear nodes: {self.quantize_linear}, per-channel weight DequantizeLinear: "
                 f"{self.weight_dequantize_per_channel}, asymmetric Q/DQ made symmetric at build: "
                 f"{self.asymmetric_qdq}"]
        lines += [f"  problem: {problem}" for problem in self.problems]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def check_tensorrt(path: PathLike) -> "TensorRTCheck":
    """Checks, on any machine, whether an ONNX file is ready for a strongly typed TensorRT build.

    Reports the precision its tensors imply (float16 tensors, Q/DQ for int8), whether the
    batch is dynamic, whether int8 weights sit behind symmetric per-channel Q/DQ, and
    whether TensorRT and a GPU are present here.

    Example:
        >>> import keras_compress as kc
        >>> kc.check_tensorrt("missing.onnx")
        Traceback (most recent call last):
        ...
        FileNotFoundError: No ONNX file at missing.onnx
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No ONNX file at {path}")
    not_onnx = ModelFileError(f"{path} is not an ONNX model (a folder, an empty or corrupt file, or another "
                              "format): check-tensorrt reads .onnx files such as "
                              "kc.export(model, 'm.onnx') writes.")
    if os.path.isdir(path) or not os.path.getsize(path):
        raise not_onnx
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:
        raise not_onnx from None
    graph = proto.graph
    if not graph.node or not proto.opset_import:
        raise not_onnx
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    initializers = {init.name: init for init in graph.initializer}
    names = {init.name for init in graph.initializer}
    inputs = [(i.name, tuple(d.dim_value if d.HasField("dim_value") else None
                             for d in i.type.tensor_type.shape.dim))
              for i in graph.input if i.name not in names]
    problems, notes = [], []
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    per_channel = sum(1 for n in dequantize if n.input[0] in initializers
                      and len(initializers[n.input[1]].dims) == 1 and initializers[n.input[1]].dims[0] > 1)
    asymmetric = 0
    for node in quantize + dequantize:
        if len(node.input) > 2 and node.input[2] in initializers:
            zero = onnx.numpy_helper.to_array(initializers[node.input[2]])
            asymmetric += int(zero.dtype.name != "int8" or bool(zero.any()))
    float16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    integer_ops = sorted({n.op_type for n in graph.node} & _INTEGER_OPS)
    precision = "int8" if dequantize or integer_ops else "float16" if float16 else "float32"
    if precision == "int8" and opset < 13 and per_channel:
        problems.append(f"per-channel Q/DQ needs opset 13 or later, the file has {opset}: "
                        "re-export with opset=17")
    if precision == "int8" and not per_channel:
        notes.append("no per-channel weight Q/DQ: TensorRT will run the weights in float")
    if asymmetric:
        notes.append(f"{asymmetric} Q/DQ nodes have uint8 or nonzero zero points; keras_compress makes them "
                     "symmetric int8 when it builds the engine (TensorRT takes zero point 0 only)")
    if any(shape and shape[0] is not None for _, shape in inputs):
        notes.append("the batch dimension is fixed: the engine's profile will only take that batch")
    if integer_ops:
        problems.append(f"operator-level int8 ({', '.join(integer_ops)}, from dynamic quantization) is not "
                        'something TensorRT builds: use quantize="static" or a quantization-aware model')
    unsupported = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")})
    if unsupported:
        problems.append(f"custom-domain ops TensorRT's ONNX parser does not know: {', '.join(unsupported)}")
    try:
        require_tensorrt()
        notes.append("TensorRT and an NVIDIA GPU are available here: the build can run")
    except ImportError as error:
        notes.append(re.sub(r"\s+", " ", str(error)))
    return TensorRTCheck(path=path, opset=opset, inputs=inputs, precision=precision,
                         quantize_linear=len(quantize), weight_dequantize_per_channel=per_channel,
                         asymmetric_qdq=asymmetric, problems=problems, notes=notes)
