"""`cluster` wraps a tf_keras model's layers in tfmot's clustering wrappers; `strip` removes them."""

import warnings

import numpy as np

from keras_compress._flavour import TF_KERAS, check_graph_model, flavour_of, supports
from keras_compress._keras import copy_model, keras
from keras_compress._tfmot import ClusterWeights, clusterable_weights, is_quantization_layer, tfmot
from keras_compress._types import Exclude, KerasModel, Preserve
from keras_compress.errors import ModelStateError, UnsupportedModelError
from keras_compress.pruning.prune import excluded_names, pruning_wrappers
from keras_compress.pruning.report import has_sparse_kernel, kernels
from keras_compress.quantization.qat import check_preserve_flag

__all__ = ["cluster", "strip", "check_model_to_cluster", "clustering_wrappers"]

_clustering = tfmot.clustering.keras
INITS = {"kmeans++": _clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
         "linear": _clustering.CentroidInitialization.LINEAR,
         "density": _clustering.CentroidInitialization.DENSITY_BASED,
         "random": _clustering.CentroidInitialization.RANDOM}
SPARSE = 0.05  # a kernel with this share of exact zeros or more was pruned: it keeps them


def clustering_wrappers(model):
    """The clustering wrappers of a model, in layer order."""
    return [layer for layer in model.layers if isinstance(layer, ClusterWeights)]


def check_model_to_cluster(model, action):
    """Refuses what clustering cannot take: Keras 3 models (with the scope), subclassed models,
    pruning wrappers, quantization-aware models."""
    if flavour_of(model) is not None and not supports(model, "clustering"):
        raise UnsupportedModelError(
            f"Cannot {action} Keras 3 model {model.name!r}: weight clustering is built on tfmot and works "
            "on tf_keras models only. Keras 3 models can be pruned (kc.pruning) and trained "
            "quantization-aware (kc.quantization.quantize_aware).")
    check_graph_model(model, action=action, flavours=(TF_KERAS,))
    if pruning_wrappers(model):
        raise ModelStateError(f"Model {model.name!r} still has pruning wrappers: {action} "
                                 "keras_compress.pruning.strip(model) after pruning.")
    if any(is_quantization_layer(layer) for layer in model.layers):
        raise ModelStateError(f"Model {model.name!r} is quantization-aware: {action} the float model, "
                                 "then call quantize_aware on the stripped clustered model.")


def _is_sparse(layer):
    return any(np.mean(weight.numpy() == 0) >= SPARSE for weight in kernels(layer))


def cluster(model: KerasModel, number_of_clusters: int = 16, *, init: str = "kmeans++",
            exclude: Exclude = None, preserve_sparsity: Preserve = "auto") -> KerasModel:
    """A copy of `model` whose clusterable layers (Conv, Dense, ...) train with clustered kernels.

    Each wrapped kernel holds `number_of_clusters` centroid values, trained in `fit`; call
    `strip` afterwards for an ordinary model whose kernels hold at most that many distinct
    values per layer (zero among them, in a layer whose zeros are kept). Fine-tune for a few
    epochs with a small learning rate. Layers tfmot cannot cluster, and frozen layers, stay as
    they are and are named in one warning.

    Args:
        model: a built Sequential or functional tf_keras model, without pruning wrappers
            (strip a pruned model first).
        number_of_clusters: centroids per layer, at least 2 (3 where zeros are kept: one of
            them is the zero).
        init: how centroids start: "kmeans++", "linear", "density" or "random".
        exclude: layer names, or a predicate on layers; those stay unclustered.
        preserve_sparsity: "auto" (layers whose kernel has 5% zeros or more keep them: a
            pruned model stays sparse), True (the same; refused for a dense model) or False.

    Example:
        >>> import tf_keras as keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
        >>> clustered = kc.clustering.cluster(model, number_of_clusters=4)
        >>> [layer.name for layer in kc.clustering.strip(clustered).layers]
        ['fc']
    """
    check_model_to_cluster(model, "cluster")
    if type(number_of_clusters) is not int or number_of_clusters < 2:
        raise ValueError(f"number_of_clusters must be an integer of at least 2, got {number_of_clusters!r}.")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(repr(name) for name in INITS)}, got {init!r}.")
    check_preserve_flag("preserve_sparsity", preserve_sparsity)
    if clustering_wrappers(model):
        raise ModelStateError(f"Model {model.name!r} is already clustered: train it as it is, or strip it "
                                 "(kc.clustering.strip) and cluster the result.")
    if preserve_sparsity is True and not has_sparse_kernel(model):
        raise ModelStateError(f"preserve_sparsity=True, but model {model.name!r} is dense (no kernel has "
                                 "5% zeros): prune and strip it first, or leave preserve_sparsity=\"auto\".")
    excluded = excluded_names(model, exclude)
    chosen, left_alone = {}, []
    for layer in model.layers:
        if layer.name in excluded or not layer.weights:
            continue
        weights = clusterable_weights(layer)
        if not layer.trainable and kernels(layer):
            left_alone.append(f"{layer.name} (frozen)")
            continue
        if weights is None:
            left_alone.append(layer.name)
            continue
        if not weights:
            continue
        keep_zeros = preserve_sparsity is not False and _is_sparse(layer)
        size = min(int(weight.shape.num_elements()) for weight in weights)
        if size < number_of_clusters:
            raise ValueError(f"Layer {layer.name!r} has {size} weights, fewer than number_of_clusters="
                             f"{number_of_clusters}: pass exclude=[{layer.name!r}] or fewer clusters.")
        if keep_zeros and number_of_clusters < 3:
            raise ValueError(f"Layer {layer.name!r} is sparse, and keeping its zeros takes one cluster: "
                             "number_of_clusters must be at least 3 (or pass preserve_sparsity=False).")
        chosen[layer.name] = keep_zeros
    if not chosen:
        where = " outside `exclude`." if excluded else " (Conv, Dense, ... layers with trainable weights)."
        raise ValueError(f"Model {model.name!r} has no layer to cluster{where}")
    if left_alone:
        warnings.warn(f"These layers of {model.name!r} stay unclustered (frozen, or tfmot cannot cluster "
                      f"them): {', '.join(left_alone)}.", stacklevel=2)

    def wrap(layer):  # the layers of a private copy, so the wrappers share nothing with `model`
        if layer.name not in chosen:
            return layer
        return _clustering.cluster_weights(layer, number_of_clusters=number_of_clusters,
                                           cluster_centroids_init=INITS[init],
                                           preserve_sparsity=chosen[layer.name])

    return keras.models.clone_model(copy_model(model), clone_function=wrap)


def strip(model: KerasModel) -> KerasModel:
    """An ordinary tf_keras model with the clustering wrappers removed and the clustered kernels
    in place. The result shares nothing with `model`; a model without wrappers is copied as is."""
    check_model_to_cluster(model, "strip")
    if not clustering_wrappers(model):
        return copy_model(model)
    return copy_model(_clustering.strip_clustering(model))
