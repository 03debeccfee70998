"""TFLite export through the TFLite converter: float32, or quantized (dynamic range, full
integer from calibration data or a quantization-aware model, float16)."""

import re
import warnings

from keras_compress._flavour import keras_for
from keras_compress.errors import ExportError
from keras_compress.export.checks import refuse_keras_int8_kernels
from keras_compress.export.int8_weights import tflite_int8_weights
from keras_compress.export.signature import serving_function
from keras_compress.quantization.qat import is_quantize_aware, quantized_kernel_count
from keras_compress.runtime.tflite_metadata import add_metadata

__all__ = ["export_tflite", "convert_to_tflite"]


def check_export(model, request):
    """The TFLite converter takes no integer matmul inputs: refuses Keras' own int8 kernels."""
    refuse_keras_int8_kernels(model, "TFLite")


def _unsupported_ops(message):
    """TensorFlow op types the converter could not lower, from its error message."""
    select = re.search(r"TF Select ops: (.+)", message)
    if select:
        return [op.strip() for op in select.group(1).split(",")]
    return sorted(set(re.findall(r"'tf\.(\w+)' op", message)))


def _layers_with_ops(model, op_types):
    """Names of the model's layers whose graph holds ops of `op_types` (op names read
    "<model>/<layer>/<op>")."""
    graph = serving_function(model).get_concrete_function().graph
    names = {layer.name for layer in model.layers}
    found = []
    for op in graph.get_operations():
        parts = op.name.split("/")
        if op.type in op_types and len(parts) > 2 and parts[1] in names and parts[1] not in found:
            found.append(parts[1])
    return found


def _representative_dataset(batches, names):
    """Calibration rows keyed by signature input name: the converter matches a list to the
    inputs in its own order, which need not be the model's."""
    def rows():
        for batch in batches:
            for i in range(len(batch[0])):
                yield {name: array[i:i + 1] for name, array in zip(names, batch)}

    return rows


def convert_to_tflite(model, batch_size, quantize, calibration, io, sparse_weights=False):
    """The TFLite flatbuffer of `model`. A JAX-backend model is converted through a
    TensorFlow-backend rebuild (`tensorflow_rebuild`): the converter makes slow files of jax2tf's
    graphs; one that does not load on TensorFlow goes through jax2tf, with a warning (a
    quantization-aware one cannot). `sparse_weights` stores weights with many zeros in TFLite's
    sparse encoding."""
    import tensorflow as tf

    if keras_for(model).backend() == "jax":
        from keras_compress.export import tensorflow_rebuild

        try:
            return tensorflow_rebuild.tflite_from_tensorflow_rebuild(model, batch_size, quantize, calibration,
                                                                     io, sparse_weights)
        except tensorflow_rebuild.RebuildUnavailable as error:
            if is_quantize_aware(model):
                raise
            warnings.warn(f"{error} The file is converted from JAX through jax2tf instead, whose graphs "
                          "run several times slower in LiteRT. Where the model's own layers are the cause, "
                          "register them (keras.saving.register_keras_serializable) in an importable module, "
                          "without JAX calls, for the faster file.", stacklevel=5)
    function = serving_function(model, batch_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()],
                                                                function.trackable)
    if quantize or is_quantize_aware(model):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse_weights:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "static":
        names = keras_for(model).input_names(model)
        converter.representative_dataset = _representative_dataset(calibration, names)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io)
    with warnings.catch_warnings():
        # The converter calibrates through tf.lite.Interpreter, whose deprecation notice is not the user's.
        warnings.filterwarnings("ignore", message=r"[\s\S]*tf.lite.Interpreter is deprecated")
        return converter.convert()


def _warn_of_float_kernels(model, int8_kernels):
    """A warning when the converter kept kernels of a QAT model float."""
    quantized = quantized_kernel_count(model)
    if int8_kernels < quantized:
        warnings.warn(f"The TFLite converter kept {quantized - int8_kernels} of the {quantized} quantized "
                      f"kernels of {model.name!r} float (a kernel whose input comes from a layer left float, "
                      "or a Dense layer on inputs of rank 3 or more whose sizes are not all known, runs as a "
                      "float operation): the file is larger than a full int8 one.", stacklevel=5)


def _sparse_tensors(content):
    """How many weight tensors of the flatbuffer `content` are sparse-encoded, and whether LiteRT's
    default XNNPack delegate can run the file."""
    from keras_compress.formats.tflite import litert_interpreter, sparse_tensor_count

    interpreter = litert_interpreter(model_content=content)
    return sparse_tensor_count(interpreter), interpreter.uses_xnnpack


def _warn_of_sparse_encoding(model, count, xnnpack):
    if not count:
        warnings.warn(f"sparse_weights=True encoded no weight of {model.name!r} sparsely: the TFLite "
                      "converter only encodes weights with many zeros (about a third or more). Prune the "
                      "model first (keras_compress.pruning), or export it without sparse_weights.",
                      stacklevel=5)
    elif not xnnpack:
        warnings.warn(f"The sparse TFLite file of {model.name!r} runs on TFLite's builtin kernels only: "
                      "LiteRT's default XNNPack delegate cannot prepare its sparse weights (int8 ones, and "
                      "some fully-connected graphs). keras_compress.load does so by itself; where you serve "
                      "the file yourself, create the interpreter with experimental_op_resolver_type="
                      "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES.", stacklevel=5)


def export_tflite(model, path, metadata, *, quantize=None, calibration_data=None, io="float",
                  sparse_weights=False):
    """Writes `model` to `path` as a TFLite flatbuffer with a `serving_default` signature.

    `quantize`: None (float32, or int8 for a quantization-aware model), "dynamic"
    (int8 weights), "static" (int8 weights and activations, calibrated on `calibration_data`
    batches) or "float16". `io="int8"` / `"uint8"` makes a full-integer model take and give
    that type. `sparse_weights=True` stores weights with many zeros (a pruned model's) in
    TFLite's sparse encoding, which stays small uncompressed, on the device.

    The batch dimension is dynamic, except for models whose recurrent layers TFLite
    only lowers with static shapes (LSTM, GRU; through jax2tf, LSTM): those
    get batch 1, recorded in the settings, and the LiteRT runner feeds them row by row.
    """
    settings = {"quantize": "qat" if is_quantize_aware(model) else quantize, "io": io}
    settings = {key: value for key, value in settings.items() if value not in (None, "float")}
    try:
        try:
            content = convert_to_tflite(model, None, quantize, calibration_data, io, sparse_weights)
        except Exception as error:
            # Recurrent layers: TensorFlow's TensorList ops, or JAX's dynamic gathers (jax2tf).
            if "TensorList" not in str(error) and "dynamic_gather" not in str(error):
                raise
            content = convert_to_tflite(model, 1, quantize, calibration_data, io, sparse_weights)
            settings["batch_size"] = 1
    except Exception as error:
        ops = _unsupported_ops(str(error))
        layers = _layers_with_ops(model, ops)
        where = f"layer(s) {', '.join(layers)}" if layers else "an operation"
        reason = f"no TFLite builtin for {', '.join(ops)}" if ops else str(error).strip()[:300]
        raise ExportError(f"TFLite cannot take {where} of model {model.name!r} ({reason}).") from None
    if settings.get("quantize") in ("qat", "dynamic", "static"):
        settings["int8_weights"] = tflite_int8_weights(content)
        if quantize == "dynamic" and not settings["int8_weights"]["tensors"]:
            settings["precision"] = "float32"  # nothing was quantized
        if settings["quantize"] == "qat":
            _warn_of_float_kernels(model, settings["int8_weights"]["tensors"])
    if sparse_weights:
        count, xnnpack = _sparse_tensors(content)
        settings.update(sparse_tensors=count, xnnpack=xnnpack)
        _warn_of_sparse_encoding(model, count, xnnpack)
    with open(path, "wb") as file:
        file.write(add_metadata(content, dict(metadata, settings=dict(metadata["settings"], **settings))))
    return settings
