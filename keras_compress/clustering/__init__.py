"""Weight clustering (tf_keras models, through tfmot): each layer's kernel comes to share a few
centroid values, so the saved file compresses far better. `cluster`, train, `strip`, then
`quantize_aware` keeps both the clusters and the zeros of a pruned model.

Names load on first use.
"""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "ClusteringReport": "report:ClusteringReport",
    "cluster": "cluster:cluster",
    "distinct_values": "report:distinct_values",
    "is_clustered": "report:is_clustered",
    "strip": "cluster:strip",
})

__all__ = ["ClusteringReport", "cluster", "distinct_values", "is_clustered", "strip"]
