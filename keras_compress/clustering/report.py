"""How many distinct values each clusterable kernel holds."""

import dataclasses

import numpy as np

from keras_compress._types import KerasModel
from keras_compress.clustering.cluster import check_model_to_cluster, clustering_wrappers, strip
from keras_compress.pruning.report import kernels

__all__ = ["ClusteringReport", "distinct_values", "is_clustered"]

# A kernel is clustered when each of its distinct values (two or more) repeats this many times
# on average, counting nonzero weights (a trained or pruned kernel repeats almost none).
_REPEATS = 4


@dataclasses.dataclass
class ClusteringReport:
    """Distinct values per clusterable layer: `layers` holds one dict per layer with `layer`,
    `type`, `params`, `distinct` (distinct values in its kernel) and `zeros`."""

    layers: list

    @property
    def most_distinct(self):
        """The most distinct values any one layer holds."""
        return max((row["distinct"] for row in self.layers), default=0)

    def to_dict(self) -> dict:
        return {"layers": [dict(row) for row in self.layers], "most_distinct": self.most_distinct}

    def __str__(self):
        width = max([len("layer")] + [len(row["layer"]) for row in self.layers])
        lines = [f"{'layer':<{width}}  {'type':<20} {'params':>10} {'distinct':>9} {'zeros':>10}"]
        lines += [f"{row['layer']:<{width}}  {row['type']:<20} {row['params']:>10,} {row['distinct']:>9,} "
                  f"{row['zeros']:>10,}" for row in self.layers]
        return "\n".join(lines)


def _kernel_rows(model):
    rows = []
    for layer in model.layers:
        for weight in kernels(layer):
            value = weight.numpy()
            rows.append({"layer": layer.name, "type": type(layer).__name__, "params": int(value.size),
                         "distinct": int(np.unique(value).size),
                         "zeros": int(value.size - np.count_nonzero(value))})
    return rows


def distinct_values(model: KerasModel) -> "ClusteringReport":
    """Reports the distinct values of each clusterable kernel of a tf_keras model (a clustered
    model is read as `strip` would leave it).

    Example:
        >>> import numpy as np, tf_keras as keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False, name="fc")])
        >>> model.set_weights([np.array([[0.5, 0.5], [0.0, 0.5]])])
        >>> kc.clustering.distinct_values(model).layers[0]["distinct"]
        2
    """
    check_model_to_cluster(model, "report on")
    return ClusteringReport(_kernel_rows(strip(model) if clustering_wrappers(model) else model))


def is_clustered(model: KerasModel) -> bool:
    """Whether a kernel of the model holds few distinct values (two or more), each repeated four
    times or more on average over its nonzero weights: it was clustered."""
    return any(2 <= row["distinct"] and _REPEATS * row["distinct"] <= row["params"] - row["zeros"]
               for row in _kernel_rows(model))
