"""`cluster` wraps a tf_keras model's layers in tfmot's clustering wrappers; `strip` removes them."""

import warnings

from keras_compress._flavour import KERAS3, TF_KERAS, check_graph_model, flavour_of
from keras_compress._keras import copy_model, keras
from keras_compress._tfmot import ClusterWeights, clusterable_weights, tfmot
from keras_compress.errors import KerasCompressError, UnsupportedModelError
from keras_compress.pruning.prune import excluded_names, pruning_wrappers
from keras_compress.pruning.report import has_sparse_kernel

__all__ = ["cluster", "strip", "check_model_to_cluster", "clustering_wrappers"]

_clustering = tfmot.clustering.keras
INITS = {"kmeans++": _clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
         "linear": _clustering.CentroidInitialization.LINEAR,
         "density": _clustering.CentroidInitialization.DENSITY_BASED,
         "random": _clustering.CentroidInitialization.RANDOM}


def clustering_wrappers(model):
    """The clustering wrappers of a model, in layer order."""
    return [layer for layer in model.layers if isinstance(layer, ClusterWeights)]


def check_model_to_cluster(model, action):
    if flavour_of(model) == KERAS3:
        raise UnsupportedModelError(
            f"Cannot {action} Keras 3 model {model.name!r}: weight clustering is built on tfmot and works "
            "on tf_keras models only. Keras 3 models can be pruned (kc.pruning) and trained "
            "quantization-aware (kc.quantization.quantize_aware).")
    check_graph_model(model, action=action, flavours=(TF_KERAS,))


def cluster(model, number_of_clusters=16, *, init="kmeans++", exclude=None, preserve_sparsity="auto"):
    """A copy of `model` whose clusterable layers (Conv, Dense, ...) train with clustered kernels.

    Each wrapped kernel holds `number_of_clusters` centroid values, trained in `fit`; call
    `strip` afterwards for an ordinary model whose kernels hold at most that many distinct
    values per layer (plus zero, when sparsity is preserved). Fine-tune for a few epochs
    with a small learning rate. Layers tfmot cannot cluster stay as they are and are named
    in one warning.

    Args:
        model: a built Sequential or functional tf_keras model, without pruning wrappers
            (strip a pruned model first).
        number_of_clusters: centroids per layer, at least 2.
        init: how centroids start: "kmeans++", "linear", "density" or "random".
        exclude: layer names, or a predicate on layers; those stay unclustered.
        preserve_sparsity: "auto" (when a kernel has 5% zeros or more: a pruned model keeps
            its zeros), True (refused for a dense model) or False.

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
    if preserve_sparsity not in ("auto", True, False):
        raise ValueError(f'preserve_sparsity must be "auto", True or False, got {preserve_sparsity!r}.')
    if pruning_wrappers(model):
        raise KerasCompressError("The model still has pruning wrappers: cluster "
                                 "keras_compress.pruning.strip(model) after pruning.")
    if clustering_wrappers(model):
        raise KerasCompressError(f"Model {model.name!r} is already clustered: train it as it is, or strip it "
                                 "(kc.clustering.strip) and cluster the result.")
    sparse = has_sparse_kernel(model)
    if preserve_sparsity is True and not sparse:
        raise KerasCompressError(f"preserve_sparsity=True, but model {model.name!r} is dense (no kernel has "
                                 "5% zeros): prune and strip it first, or leave preserve_sparsity=\"auto\".")
    excluded = excluded_names(model, exclude)
    chosen, left_alone = set(), []
    for layer in model.layers:
        weights = clusterable_weights(layer)
        if layer.name in excluded or weights == []:
            continue
        if weights is None:
            if layer.weights:
                left_alone.append(layer.name)
            continue
        size = min(int(weight.shape.num_elements()) for weight in weights)
        if size < number_of_clusters:
            raise ValueError(f"Layer {layer.name!r} has {size} weights, fewer than number_of_clusters="
                             f"{number_of_clusters}: pass exclude=[{layer.name!r}] or fewer clusters.")
        chosen.add(layer.name)
    if not chosen:
        where = " outside `exclude`." if excluded else " (Conv, Dense, ... layers with weights)."
        raise ValueError(f"Model {model.name!r} has no layer to cluster{where}")
    if left_alone:
        warnings.warn(f"These layers of {model.name!r} stay unclustered (tfmot cannot cluster them): "
                      f"{', '.join(left_alone)}.", stacklevel=2)
    options = {"number_of_clusters": number_of_clusters, "cluster_centroids_init": INITS[init],
               "preserve_sparsity": bool(sparse and preserve_sparsity is not False)}

    def wrap(layer):  # the layers of a private copy, so the wrappers share nothing with `model`
        return _clustering.cluster_weights(layer, **options) if layer.name in chosen else layer

    return keras.models.clone_model(copy_model(model), clone_function=wrap)


def strip(model):
    """An ordinary tf_keras model with the clustering wrappers removed and the clustered kernels
    in place. The result shares nothing with `model`; a model without wrappers is copied as is."""
    check_model_to_cluster(model, "strip")
    if not clustering_wrappers(model):
        return copy_model(model)
    return copy_model(_clustering.strip_clustering(model))
