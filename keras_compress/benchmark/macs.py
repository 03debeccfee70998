"""Multiply-accumulates per input row: how much arithmetic a model or artifact does, so that a
smaller file and a faster one can be told apart (pruned zeros still count; removed filters do not).

Counted: convolutions (depthwise, separable and transposed included) and dense or fully-connected
layers and matrix products, the layers that hold nearly all of a convolutional network's
arithmetic; element-wise operations, pooling and normalization are left out. Attention's
weight-free matrix products are counted in ONNX and TFLite files, not in Keras models.
"""

import math
import os

from keras_compress._flavour import flavour_module
from keras_compress.formats import for_path

__all__ = ["mac_count"]


def _spatial(shape, data_format):
    """The product of a layer output's spatial (or time) sizes; None where one is unknown."""
    dims = list(shape[1:-1] if data_format != "channels_first" else shape[2:])
    return None if any(d is None for d in dims) else math.prod(dims)


def _layer_macs(layer):
    """Multiply-accumulates of one layer's kernels per call on one row; 0 for a layer without
    kernels; None where the count would be wrong: a recurrent layer (its kernels run at every
    step), a layer called more than once or with several outputs, an output shape not known."""
    kernels = [weight for weight in layer.weights if weight.name.split("/")[-1].split(":")[0]
               in ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel")]
    if not kernels:
        return 0
    if any(weight.name.split("/")[-1].startswith("recurrent_kernel") for weight in kernels) \
            or _called_more_than_once(layer):
        return None
    try:
        # A transposed convolution applies its kernel at each input position.
        tensor = layer.input if "Transpose" in type(layer).__name__ else layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(tensor, (list, tuple, dict)):
        return None
    positions = _spatial(tuple(tensor.shape), getattr(layer, "data_format", "channels_last"))
    if positions is None:
        return None
    # Each place a kernel applies at multiplies the whole kernel once (a depthwise one per channel).
    return sum(math.prod(kernel.shape) for kernel in kernels) * positions


def _called_more_than_once(layer):
    flavour = flavour_module(layer)
    return flavour is not None and flavour.call_count(layer) > 1


def _keras_macs(model):
    if _called_more_than_once(model):  # a nested model
        return None
    total = 0
    for layer in model.layers:
        macs = _keras_macs(layer) if hasattr(layer, "layers") and hasattr(layer, "inputs") \
            else _layer_macs(layer)
        if macs is None:
            return None
        total += macs
    return total


def mac_count(source):
    """Multiply-accumulates per input row of a Keras model (Keras 3 or tf_keras) or of an artifact
    file (ONNX, TFLite); None where they cannot be counted (a SavedModel, an engine, a layer whose
    output shape is unknown, a recurrent layer, a layer called more than once)."""
    if not isinstance(source, (str, os.PathLike)):
        return _keras_macs(source)
    fmt = for_path(os.fspath(source))
    return fmt.mac_count(os.fspath(source)) if fmt is not None and fmt.mac_count else None
