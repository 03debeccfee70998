"""Quantization-aware training, sparsity-preserving when the model is sparse: `tf_keras_qat`
(tfmot) for tf_keras models, `keras3_qat` for Keras 3 models. This module imports neither
Keras: the flavour's road loads when a model of it comes."""

from typing import Any

import numpy as np

from keras_compress._flavour import TF_KERAS, check_graph_model, road, supports
from keras_compress._types import KerasLayer, KerasModel, Preserve
from keras_compress.errors import ModelStateError, UnsupportedModelError
from keras_compress.pruning.prune import pruning_wrappers
from keras_compress.pruning.report import has_sparse_kernel

__all__ = ["quantize_aware", "is_quantize_aware", "quantized_weights", "quantized_kernel_count",
           "weight_quantized_layers"]


def _road(obj):
    """The QAT road of `obj`'s Keras flavour (tf_keras's for objects of neither): its
    check_model, quantize_aware, is_quantize_aware, quantized_weights, weight_quantized_layers and
    quantized_kernel_count."""
    return road(obj, "qat", fallback=TF_KERAS)


def is_quantize_aware(model: KerasModel) -> bool:
    """True when `model` holds quantization-aware layers (it came from `quantize_aware`)."""
    return _road(model).is_quantize_aware(model)


def check_preserve_flag(name, value):
    """Refuses a `preserve_*` argument that is not "auto", True or False (1 and 0 included)."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f'{name} must be "auto", True or False, got {value!r}')


def _preserve_clusters(model, preserve_clusters):
    """Whether quantization-aware training keeps the model's clusters."""
    check_preserve_flag("preserve_clusters", preserve_clusters)
    clustering = supports(model, "clustering")
    if preserve_clusters is False or (not clustering and preserve_clusters == "auto"):
        return False
    if not clustering:
        raise UnsupportedModelError("preserve_clusters=True needs a tf_keras model: clustering and "
                                    "cluster-preserving quantization are built on tfmot.")
    from keras_compress.clustering.report import is_clustered

    clustered = is_clustered(model)
    if preserve_clusters is True and not clustered:
        raise ModelStateError(f"preserve_clusters=True, but model {model.name!r} is not clustered: "
                                 "cluster and strip it first (kc.clustering), or pass \"auto\".")
    return clustered


def quantize_aware(model: KerasModel, *, preserve_sparsity: Preserve = "auto",
                   preserve_clusters: Preserve = "auto", strict: bool = False) -> KerasModel:
    """A copy of `model` that trains with int8 fake quantization.

    Fine-tune the result with `fit` for an epoch or two, then export it: a QAT model
    exports to int8 TFLite and ONNX (explicit Q/DQ) without calibration data.

    Weights are symmetric int8, per output channel for convolutions and per tensor for
    Dense; activations 8-bit over ranges set by the first training batch, then moving averages
    of the batches' ranges. tf_keras models use
    tfmot's default 8-bit scheme; Keras 3 models (TensorFlow or JAX backend) keras_compress's
    own layers (`keras3_qat`), which fold a BatchNormalization that follows a convolution
    into it, with frozen statistics, as TFLite and TensorRT run it.

    On Keras 3 the Dense, EinsumDense and convolution layers that custom layers and
    MultiHeadAttention hold in attributes are quantized too, with their inputs and outputs,
    and the models they nest become quantization-aware whole.

    Layers that are not quantized (e.g. a BatchNormalization that does not directly follow a
    convolution, a LayerNormalization inside a custom layer, named by its path) stay float and
    are listed in one warning; `strict=True` raises instead. Their outputs are quantized where a
    quantized layer reads them, so that layer still runs in int8. With
    `preserve_sparsity="auto"` a sparse model (pruned, then stripped) keeps its zeros zero
    through training; with `preserve_clusters="auto"` a clustered tf_keras model
    (`kc.clustering`, stripped) keeps its kernels on their centroids (tfmot's cluster-preserving
    scheme: the centroids train, and with sparsity too, the zeros stay).

    Args:
        model: a built Sequential or functional model, Keras 3 or tf_keras, without pruning
            wrappers.
        preserve_sparsity: "auto" (when a kernel has 5% zeros or more), True (refused for a
            dense model) or False.
        preserve_clusters: "auto" (when a tf_keras kernel holds few distinct values, each
            repeated four times or more on average over its nonzero weights:
            `kc.clustering.is_clustered`), True (refused for an unclustered or Keras 3 model)
            or False.
        strict: raise `QuantizationError` (its `layers` names them) rather than leave layers float.

    Returns:
        A new, uncompiled model; the weights are copied from `model`.

    Example:
        >>> import keras_compress as kc
        >>> import tf_keras as keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")])
        >>> qat = kc.quantization.quantize_aware(model)
        >>> kc.quantization.is_quantize_aware(qat)
        True
    """
    check_graph_model(model, action="quantize")
    check_preserve_flag("preserve_sparsity", preserve_sparsity)
    if pruning_wrappers(model):
        raise ModelStateError("The model still has pruning wrappers: quantize "
                                 "keras_compress.pruning.strip(model) after pruning.")
    qat = _road(model)
    qat.check_model(model)
    if qat.is_quantize_aware(model):
        raise ModelStateError(f"Model {model.name!r} is already quantization-aware: train it as it is, "
                                 "or quantize the float model it came from.")
    sparse = has_sparse_kernel(model)
    if preserve_sparsity is True and not sparse:
        raise ModelStateError(f"preserve_sparsity=True, but model {model.name!r} is dense (no kernel has "
                                 "5% zeros): prune and strip it first, or leave preserve_sparsity=\"auto\".")
    sparse = sparse and preserve_sparsity is not False
    clusters = _preserve_clusters(model, preserve_clusters)
    return qat.quantize_aware(model, sparse, clusters, strict)


def quantized_weights(layer: KerasLayer) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """`[(variable, fake-quantized value, scale)]` for the quantized weights of a QAT layer.

    `scale` is the symmetric int8 step (per tensor, or per channel along the last axis);
    `value / scale` are integers in [-127, 127].
    """
    return _road(layer).quantized_weights(layer)


def weight_quantized_layers(model: KerasModel) -> list[KerasLayer]:
    """The layers of a QAT model whose weights train on the int8 grid, those inside its layers included."""
    return _road(model).weight_quantized_layers(model)


def quantized_kernel_count(model: KerasModel) -> int:
    """How many kernels of a QAT model train on the int8 grid."""
    return _road(model).quantized_kernel_count(model)
