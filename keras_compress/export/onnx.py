"""ONNX export through tf2onnx, from a `tf.function` with an explicit input signature,
with post-training quantization by ONNX Runtime and Q/DQ for quantization-aware models."""

import collections
import contextlib
import logging
import re
import warnings

import tensorflow as tf

from keras_compress._environment import has_vnni
from keras_compress._flavour import keras_for
from keras_compress.errors import ExportError
from keras_compress.export.int8_weights import onnx_int8_weights
from keras_compress.export.onnx_folding import fold
from keras_compress.export.qdq import quantize_qat_weights
from keras_compress.export.signature import input_specs, serving_function
from keras_compress.quantization.qat import is_quantize_aware
from keras_compress.runtime.metadata import KEY, decode, encode

__all__ = ["export_onnx", "after_export", "rewrite_settings", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
# A QAT ONNX file this much slower in ONNX Runtime's default session than with Q/DQ as float
# math gets a warning.
_PLAIN_RUNTIME_SLOWER = 1.5


def convert_to_onnx(model, opset):
    """The float ONNX proto of `model`, outputs in the model's order. JAX-backend Keras 3 models
    are converted through a TensorFlow-backend rebuild (`tensorflow_rebuild`)."""
    import tf2onnx

    if keras_for(model).backend() == "jax":
        from keras_compress.export.tensorflow_rebuild import onnx_from_tensorflow_rebuild

        return onnx_from_tensorflow_rebuild(model, opset)
    function, specs = serving_function(model), input_specs(model)
    concrete = function.get_concrete_function()
    with _optimizer_failures_as_notes():
        if all(capture.dtype == tf.resource for capture in concrete.captured_inputs) \
                and not _compiled_functions(concrete):
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset,
                                                     custom_op_handlers=_OP_HANDLERS)
        else:
            proto = _from_inlined_graph(concrete, len(specs), opset)
    _refuse_function_calls(proto, model)
    # Signature outputs come back sorted by name; restore the model's order.
    by_name = {output.name: output for output in proto.graph.output}
    ordered = [by_name[name] for name in keras_for(model).output_names(model)]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    return proto


def _erfc_as_one_minus_erf(graph, node, name, args):
    """tf2onnx handler for TensorFlow's Erfc (exact GELU, e.g. in ConvNeXt), which ONNX lacks:
    1 - Erf(x)."""
    import numpy as np
    from tf2onnx import utils

    node.type = "Erf"
    dtype = utils.map_onnx_to_numpy_type(graph.get_dtype(node.output[0]))
    one = graph.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=dtype))
    graph.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]],
                                    name=utils.make_name(f"{name}_one_minus"))


# TensorFlow ops tf2onnx has no converter for, and ours.
_OP_HANDLERS: dict[str, tuple] = {"Erfc": (_erfc_as_one_minus_erf, [])}


def _refuse_function_calls(proto, model):
    """An ExportError naming the layers whose TensorFlow function calls tf2onnx left in `proto`
    (ONNX has no operator for them)."""
    kinds = ("StatefulPartitionedCall", "PartitionedCall")
    calls = [node for node in proto.graph.node if node.op_type in kinds]
    if not calls:
        return
    # Node names read "<model>/<layer>_<n>/...".
    scopes = {node.name.split("/")[1] for node in calls if node.name.count("/") > 1}
    layers = sorted({layer.name for layer in model.layers for scope in scopes
                     if re.fullmatch(rf"{re.escape(layer.name)}(_\d+)?", scope)})
    raise ExportError(f"ONNX cannot take layer(s) {', '.join(layers) or '(unnamed)'} of model "
                      f"{model.name!r}: tf2onnx left {calls[0].op_type} nodes (TensorFlow function calls) "
                      "it could not convert.")


def _compiled_functions(concrete):
    """Whether the graph of `concrete` calls functions marked for XLA, which tf2onnx does not inline."""
    library = concrete.graph.as_graph_def().library
    return any(function.attr["_XlaMustCompile"].b for function in library.function
               if "_XlaMustCompile" in function.attr)


def _from_inlined_graph(concrete, input_count, opset):
    """The frozen graph of `concrete`, with every function in it inlined, converted by tf2onnx.

    tf2onnx's `from_function` makes every captured tensor a graph input: constants a layer
    computed outside the graph (Normalization's mean and variance, e.g. in EfficientNet) would
    become inputs the caller must feed; freezing them into the graph keeps the inputs the model's.
    And it leaves calls of functions marked for XLA (Keras 3 compiles grouped convolutions so on
    TensorFlow's CPU, e.g. in ConvNeXt) as nodes ONNX has no operator for; unmarked, they are
    inlined like any other function."""
    import tf2onnx

    inputs = [tensor.name for tensor in concrete.inputs[:input_count]]
    outputs = [tensor.name for tensor in concrete.outputs]
    graph_def = tf2onnx.tf_loader.from_function(concrete, inputs, outputs)
    for function in graph_def.library.function:
        for key in ("_noinline", "_XlaMustCompile"):
            if key in function.attr:
                function.attr[key].b = False
    inner = [node for function in graph_def.library.function for node in function.node_def]
    for node in list(graph_def.node) + inner:
        if "_XlaMustCompile" in node.attr:
            node.attr["_XlaMustCompile"].b = False
    proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, name=concrete.name, input_names=inputs, output_names=outputs, opset=opset,
        tensors_to_rename=tf2onnx.convert.tensor_names_from_structed(concrete, inputs, outputs),
        custom_op_handlers=_OP_HANDLERS)
    return proto


def _set_metadata(proto, metadata, settings):
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = KEY, encode(dict(metadata, settings=dict(metadata["settings"], **settings)))
    proto.producer_name = "keras_compress"


def rewrite_settings(path, settings):
    """Replaces the settings recorded in the metadata of the ONNX file at `path`."""
    import onnx

    proto = onnx.load(path)
    metadata = decode(next(entry.value for entry in proto.metadata_props if entry.key == KEY))
    _set_metadata(proto, metadata, settings)
    onnx.save(proto, path)


def after_export(model, path, settings, samples):
    """A QAT ONNX file, timed in ONNX Runtime with default session options (its int8 kernels)
    against Q/DQ run as float math (`session.disable_quant_qdq=1`): the figures go into its
    metadata, and a warning where the default is much slower."""
    if not is_quantize_aware(model):
        return settings
    from keras_compress.export.speed import figures, median_ms
    from keras_compress.runtime.onnx_runner import OnnxRunner

    speed = median_ms({"default_ms": OnnxRunner(path, int8_kernels=True),
                       "disable_quant_qdq_ms": OnnxRunner(path, int8_kernels=False)}, samples)
    settings = dict(settings, onnxruntime_speed=speed)
    rewrite_settings(path, settings)
    ratios = {batch: ms / speed["disable_quant_qdq_ms"][batch] for batch, ms in speed["default_ms"].items()}
    slow = [batch for batch, ratio in ratios.items() if ratio > _PLAIN_RUNTIME_SLOWER]
    if slow:
        warnings.warn(f"The QAT ONNX export of {model.name!r} runs {max(ratios.values()):.0f}x slower in "
                      "ONNX Runtime with default session options than with the session option "
                      "session.disable_quant_qdq=1 on this CPU "
                      f"({figures(speed['default_ms'], speed['disable_quant_qdq_ms'], slow)}). "
                      "keras_compress.load sets it; where you serve the file yourself, set "
                      "options.add_session_config_entry('session.disable_quant_qdq', '1'). The file's "
                      "metadata records these figures.", stacklevel=4)
    return settings


def _sort_topologically(graph):
    """Orders `graph.node` so every node comes after the nodes producing its inputs
    (the float16 converter appends its input casts at the end)."""
    producers = {output: i for i, node in enumerate(graph.node) for output in node.output}
    waiting = [{producers[name] for name in node.input if name in producers} for node in graph.node]
    consumers = collections.defaultdict(list)
    for i, needs in enumerate(waiting):
        for j in needs:
            consumers[j].append(i)
    ready = collections.deque(i for i, needs in enumerate(waiting) if not needs)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for k in consumers[i]:
            waiting[k].discard(i)
            if not waiting[k]:
                ready.append(k)
    nodes = [type(graph.node[i]).FromString(graph.node[i].SerializeToString()) for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


class _OptimizerFailureNote(logging.Filter):
    """Turns tf2onnx's "Failed to apply <optimizer>" warning and its traceback into a one-line
    note: the optimizer left the graph as it was, which the export then verifies."""

    def filter(self, record):
        if record.exc_info and str(record.msg).startswith("Failed to apply"):
            record.msg = f"{record.getMessage()}: tf2onnx kept the graph as it was (the export is verified)"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


@contextlib.contextmanager
def _optimizer_failures_as_notes():
    logger, note = logging.getLogger("tf2onnx.optimizer"), _OptimizerFailureNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs advice through the root logger; keep the console clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _CalibrationReader:
    """ONNX Runtime's calibration interface over keras_compress calibration batches."""

    def __init__(self, batches, names):
        self._feeds = iter([dict(zip(names, batch)) for batch in batches])

    def get_next(self):
        return next(self._feeds, None)


def _quantize_onnx(proto, path, quantize, calibration, calibrate_method):
    """Post-training quantization of the float `proto` into `path`; returns the settings used."""
    import onnx
    from onnxruntime import quantization as ort_quantization

    # Without VNNI, u8 x s8 products can saturate int16 accumulators: 7-bit weights avoid it.
    vnni = has_vnni()
    settings = {"quantize": quantize, "reduce_range": not vnni,
                "reduce_range_reason": "CPU with VNNI" if vnni else "CPU without VNNI"}
    source = path + ".float.onnx"  # beside the artifact, in export's temporary folder
    onnx.save(proto, source)
    with _quiet_root_logger():
        if quantize == "dynamic":
            ort_quantization.quantize_dynamic(source, path, per_channel=True,
                                              reduce_range=settings["reduce_range"],
                                              weight_type=ort_quantization.QuantType.QInt8)
        else:
            names = [i.name for i in proto.graph.input]
            method = {"minmax": ort_quantization.CalibrationMethod.MinMax,
                      "entropy": ort_quantization.CalibrationMethod.Entropy,
                      "percentile": ort_quantization.CalibrationMethod.Percentile}[calibrate_method]
            try:
                ort_quantization.quantize_static(
                    source, path, _CalibrationReader(calibration, names),
                    quant_format=ort_quantization.QuantFormat.QDQ, per_channel=True,
                    reduce_range=settings["reduce_range"], activation_type=ort_quantization.QuantType.QUInt8,
                    weight_type=ort_quantization.QuantType.QInt8, calibrate_method=method)
            except AssertionError as error:  # ONNX Runtime's check of the ranges it calibrated
                if "scale issue" not in str(error):
                    raise
                raise ExportError("Calibration found NaN or Inf activations inside the model (ONNX Runtime "
                                  "cannot make int8 scales of them): check the model (a diverged training, "
                                  "inputs it was not trained for) before quantizing it.") from None
            settings.update(calibration_method=calibrate_method,
                            calibration_rows=sum(len(batch[0]) for batch in calibration))
    return settings


def export_onnx(model, path, metadata, *, opset=None, quantize=None, calibration_data=None,
                calibrate_method="minmax"):
    """Writes `model` to `path` as ONNX with a dynamic batch, outputs in the model's order.

    `quantize`: None (float32, or int8 Q/DQ for a quantization-aware model), "dynamic",
    "static" (QDQ, calibrated on `calibration_data` batches) or "float16" (float32 I/O).
    """
    import onnx

    opset = opset or DEFAULT_OPSET
    proto = convert_to_onnx(model, opset)
    settings = {"opset": opset}
    if not is_quantize_aware(model):
        proto = fold(proto)  # what ONNX Runtime's pre-processing does, before any quantizer sees it
    if is_quantize_aware(model):
        # Weights trained on the full int8 grid: the runner avoids saturating kernels.
        settings.update(quantize="qat", full_range_int8_weights=True, **quantize_qat_weights(proto, model))
    elif quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = convert_float_to_float16(proto, keep_io_types=True)
        _sort_topologically(proto.graph)
        settings["quantize"] = "float16"
    elif quantize in ("dynamic", "static"):
        settings.update(_quantize_onnx(proto, path, quantize, calibration_data, calibrate_method))
        proto = onnx.load(path)
    if settings.get("quantize") in ("qat", "dynamic", "static"):
        settings["int8_weights"] = onnx_int8_weights(proto)
        if quantize == "dynamic" and not settings["int8_weights"]["tensors"]:
            settings["precision"] = "float32"  # nothing was quantized
    _set_metadata(proto, metadata, settings)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return settings
