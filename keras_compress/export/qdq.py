"""Explicit, symmetric Q/DQ in ONNX graphs: QAT weights after tf2onnx, int8 activations for TensorRT.

tf2onnx folds a QAT model's weight fake-quant into plain float constants. TensorRT
(and ONNX Runtime's int8 kernels) need the weights behind DequantizeLinear with a
symmetric int8 grid, zero point 0, per output channel, so `quantize_qat_weights`
puts them back, on exactly the grid the QAT model trained with.
"""

import numpy as np
from onnx import helper, numpy_helper

from keras_compress.quantization.qat import quantized_weights, weight_quantized_layers

__all__ = ["quantize_qat_weights", "symmetric_activations"]

# op type -> (output-channel axis of the weight input, given the node)
_WEIGHT_AXIS = {
    "Conv": lambda node: 0,
    "MatMul": lambda node: 1,
    "Gemm": lambda node: 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1,
}


def _layer_scales(model):
    """`{QAT layer name: (scale array, its fake-quantized kernel's values sorted)}` for the layers
    whose kernel is quantized, those inside the model's layers included; a name that several such
    layers have (the attention of every block) is theirs with a number."""
    scales, count = {}, {}
    for layer in weight_quantized_layers(model):
        for variable, value, scale in quantized_weights(layer):
            if "kernel" in variable.name:
                count[layer.name] = count.get(layer.name, 0) + 1
                key = layer.name if count[layer.name] == 1 else f"{layer.name}#{count[layer.name]}"
                scales[key] = (scale.ravel(), np.sort(value.ravel()))
    return scales


def _layer_of(node, weight, scales_by_layer):
    """The QAT layer whose kernel `node` multiplies by: of those whose fake-quantized kernel holds the
    same values (names alone mislead, as tf2onnx suffixes them "_1"), the one named in the node's
    name, or else the first; with none, the one named in it, when no other layer has that name."""
    values = np.sort(weight.ravel())
    holding = [name for name, (_, kernel) in scales_by_layer.items()
               if kernel.shape == values.shape and np.allclose(kernel, values, rtol=0, atol=1e-6)]
    named = [name for name in node.name.split("/")
             if name in scales_by_layer and f"{name}#2" not in scales_by_layer]
    return next((name for name in named if name in holding), None) or next(iter(holding), None) or \
        next(iter(named), None)


def _channel_scales(weight, axis, layer_scale):
    """Per-output-channel steps putting `weight` on a symmetric int8 grid; how many channels
    had to be requantized (BN folded with a channel that never reached the clip, e.g.)."""
    moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)
    n = moved.shape[0]
    trained = None
    if layer_scale is not None and layer_scale.size in (1, n):
        trained = np.broadcast_to(layer_scale, (n,))
    peak = np.abs(moved).max(axis=1) / 127.0
    scales, requantized = np.empty(n, np.float32), 0
    for c in range(n):
        for candidate in ((trained[c],) if trained is not None else ()) + (peak[c],):
            levels = moved[c] / candidate if candidate > 0 else None
            if levels is not None and np.abs(levels - np.round(levels)).max() < 1e-3 \
                    and np.abs(levels).max() <= 127.5:
                scales[c] = candidate
                break
        else:
            scales[c] = peak[c] if peak[c] > 0 else 1.0
            requantized += 1
    return scales, requantized


def quantize_qat_weights(proto, model):
    """Rewrites `proto` (tf2onnx output of QAT `model`) in place: every Conv/MatMul/Gemm weight
    of a quantized layer becomes int8 + DequantizeLinear (zero point 0, per output channel).

    Returns `{"quantized_weights": n, "requantized_channels": k}`.
    """
    scales_by_layer = _layer_scales(model)
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    done, new_nodes, requantized = {}, [], 0
    for node in graph.node:
        if node.op_type not in _WEIGHT_AXIS or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        name = node.input[1]
        weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
        layer = _layer_of(node, weight, scales_by_layer)
        if layer is None:
            continue  # a layer left float
        if name not in done:
            axis = _WEIGHT_AXIS[node.op_type](node)
            scales, count = _channel_scales(weight, axis, scales_by_layer[layer][0])
            requantized += count
            shape = [1] * weight.ndim
            shape[axis] = -1
            levels = np.clip(np.round(weight / scales.reshape(shape)), -127, 127).astype(np.int8)
            graph.initializer.extend([
                numpy_helper.from_array(levels, name + "_int8"),
                numpy_helper.from_array(scales, name + "_scale"),
                numpy_helper.from_array(np.zeros(len(scales), np.int8), name + "_zero_point")])
            new_nodes.append(helper.make_node(
                "DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero_point"],
                [name + "_dequantized"], name=name + "_DequantizeLinear", axis=axis))
            done[name] = name + "_dequantized"
        node.input[1] = done[name]
    still_used = {i for node in graph.node for i in node.input}
    for name in done:
        if name not in still_used:
            graph.initializer.remove(initializers[name])
    # Dequantized weights first, so the graph stays topologically sorted.
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return {"quantized_weights": len(done), "requantized_channels": requantized}


def symmetric_activations(proto):
    """Rewrites `proto` in place so every Q/DQ pair with a uint8 or nonzero zero point becomes
    symmetric int8 (zero point 0) covering the same range, as TensorRT requires.

    Returns the number of Q/DQ nodes changed.
    """
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    replaced, changed = {}, 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        if zero_name not in initializers or scale_name not in initializers:
            continue
        zero = numpy_helper.to_array(initializers[zero_name])
        if zero.dtype == np.int8 and not zero.any():
            continue
        key = (scale_name, zero_name)
        if key not in replaced:
            scale = numpy_helper.to_array(initializers[scale_name]).astype(np.float32)
            info = np.iinfo(zero.dtype)
            low = (info.min - zero.astype(np.float32)) * scale
            high = (info.max - zero.astype(np.float32)) * scale
            new_scale = (np.maximum(np.abs(low), np.abs(high)) / 127.0).astype(np.float32)
            suffix = f"_symmetric_{len(replaced)}"
            new_zero = np.zeros_like(zero, np.int8)
            graph.initializer.extend([numpy_helper.from_array(new_scale, scale_name + suffix),
                                      numpy_helper.from_array(new_zero, zero_name + suffix)])
            replaced[key] = (scale_name + suffix, zero_name + suffix)
        node.input[1], node.input[2] = replaced[key]
        changed += 1
    return changed
