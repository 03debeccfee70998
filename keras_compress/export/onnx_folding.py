"""Folding an ONNX graph the way ONNX Runtime's pre-processing does, before it is saved or quantized.

tf2onnx leaves some of Keras' arithmetic as separate nodes: the BatchNormalization after a
depthwise convolution stays a float `Mul` and `Add`. ONNX Runtime folds them when it loads a
float file, but its quantizer works on the file as written: it wraps each such node in its own
Quantize/Dequantize pair, and the int8 chain can no longer be fused (a MobileNetV2 ran at 0.84x
of float32 time instead of 0.54x). ONNX Runtime asks for its pre-processing before quantizing
(`quant_pre_process`: shape inference and its graph optimizer); the same hardware-independent
("basic") passes are run here on every float graph, so that every file, float32 included, is
as lean as that recipe makes it.
"""

import os
import tempfile

__all__ = ["fold"]


def fold(proto):
    """`proto` after ONNX Runtime's basic, hardware-independent optimizations (constant folding,
    BatchNormalization, Mul and Add folded into the convolution or Gemm before them, redundant
    nodes removed) and ONNX shape inference; the inputs, outputs and their names stay. A graph
    ONNX Runtime cannot load comes back as it was (verification then says why)."""
    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "source.onnx"), os.path.join(folder, "folded.onnx")
        onnx.save(proto, source)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = target
        options.log_severity_level = 3
        try:
            onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - the unfolded graph is still a valid export
            return proto
        folded = onnx.load(target)
    folded = onnx.shape_inference.infer_shapes(folded)
    del folded.metadata_props[:]  # the caller sets its own
    return folded
