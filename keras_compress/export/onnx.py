"""ONNX export through tf2onnx, from a `tf.function` with an explicit input signature."""

from keras_compress.export.signature import input_specs, serving_function
from keras_compress.runtime.metadata import KEY, encode

__all__ = ["export_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def export_onnx(model, path, metadata, *, opset=None):
    """Writes `model` to `path` as ONNX with a dynamic batch, outputs in the model's order."""
    import onnx
    import tf2onnx

    opset = opset or DEFAULT_OPSET
    proto, _ = tf2onnx.convert.from_function(serving_function(model), input_signature=input_specs(model),
                                             opset=opset)
    # Signature outputs come back sorted by name; restore the model's order.
    by_name = {output.name: output for output in proto.graph.output}
    ordered = [by_name[name] for name in model.output_names]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    proto.producer_name = "keras_compress"
    entry = proto.metadata_props.add()
    entry.key, entry.value = KEY, encode(dict(metadata, settings=dict(metadata["settings"], opset=opset)))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return {"opset": opset}
