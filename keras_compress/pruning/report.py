"""`sparsity(model)`: how many of a model's prunable weights are zero."""

import dataclasses

import numpy as np

from keras_compress._flavour import check_model
from keras_compress._types import KerasModel
from keras_compress.layer_kinds import SPARSE_WEIGHTS
from keras_compress.pruning._channels import unwrap

__all__ = ["sparsity", "SparsityReport", "kernels"]


_PRUNING_STATE = ("mask", "threshold", "pruning_step")  # the pruning wrappers' own variables


def _kind(variable):
    return variable.name.split("/")[-1].split(":")[0]


@dataclasses.dataclass
class SparsityReport:
    """Per-layer and total sparsity of a model's prunable weights.

    Attributes:
        layers: one dict per layer with prunable weights: `layer`, `type`,
            `params` (prunable weights), `zeros` and `sparsity`.
        total_params: every parameter of the model (trainable or not).
        nonzero_params: parameters that are not zero.
    """

    layers: list
    total_params: int
    nonzero_params: int

    @property
    def prunable_params(self):
        return sum(row["params"] for row in self.layers)

    @property
    def total_sparsity(self):
        """Zeros over all prunable weights: the parameter-weighted mean of the layers."""
        params = self.prunable_params
        return sum(row["zeros"] for row in self.layers) / params if params else 0.0

    def to_dict(self) -> dict:
        return {"layers": [dict(row) for row in self.layers], "total_params": self.total_params,
                "nonzero_params": self.nonzero_params, "prunable_params": self.prunable_params,
                "total_sparsity": self.total_sparsity}

    def __str__(self):
        width = max([len("layer")] + [len(row["layer"]) for row in self.layers])
        lines = [f"{'layer':<{width}}  {'type':<20} {'params':>10} {'zeros':>10} {'sparsity':>8}"]
        for row in self.layers:
            lines.append(f"{row['layer']:<{width}}  {row['type']:<20} {row['params']:>10,} "
                         f"{row['zeros']:>10,} {row['sparsity']:>8.1%}")
        lines.append(f"{'total':<{width}}  {'':<20} {self.prunable_params:>10,} "
                     f"{sum(r['zeros'] for r in self.layers):>10,} {self.total_sparsity:>8.1%}")
        lines.append(f"model parameters: {self.total_params:,} ({self.nonzero_params:,} nonzero)")
        return "\n".join(lines)


def kernels(layer):
    """A layer's kernels: (depthwise, pointwise, recurrent) kernels and embeddings."""
    return [variable for variable in layer.weights if _kind(variable) in SPARSE_WEIGHTS]


def has_sparse_kernel(model, threshold=0.05):
    """Whether a kernel of the model has at least `threshold` exact zeros (it was pruned)."""
    for layer in model.layers:
        for weight in layer.weights:  # frozen layers too
            if "kernel" in weight.name and len(weight.shape) >= 2:
                if np.mean(weight.numpy() == 0) >= threshold:
                    return True
    return False


def _effective_weights(layer):
    """`{id(variable): value}` with pruning masks applied where the layer is wrapped."""
    values = {}
    for weight, mask, _ in getattr(layer, "pruning_vars", []):
        values[id(weight)] = weight.numpy() * mask.numpy()
    return values


def sparsity(model: KerasModel) -> SparsityReport:
    """Reports per-layer and total sparsity of a (pruned, stripped or plain) model.

    Pruned models are read through their masks. Prunable weights are kernels,
    depthwise and pointwise kernels, recurrent kernels and embeddings.

    Example:
        >>> import numpy as np, keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[0, 1], [0, 1], [1, 1], [1, 1]])])
        >>> kc.pruning.sparsity(model).total_sparsity
        0.25
    """
    check_model(model)
    rows, nonzero = [], 0
    seen = set()
    for outer in model.layers:
        layer = unwrap(outer)
        masked = _effective_weights(outer)
        params = zeros = 0
        for variable in layer.weights:
            if id(variable) in seen or _kind(variable) in _PRUNING_STATE:  # masks held inside custom layers
                continue
            seen.add(id(variable))
            value = masked.get(id(variable))
            value = variable.numpy() if value is None else value
            nonzero += int(np.count_nonzero(value))
            if _kind(variable) in SPARSE_WEIGHTS:
                params += value.size
                zeros += value.size - int(np.count_nonzero(value))
        if params:
            rows.append({"layer": layer.name, "type": type(layer).__name__, "params": params,
                         "zeros": zeros, "sparsity": zeros / params})
    total = int(sum(np.prod(v.shape) for v in model.weights
                    if _kind(v) not in _PRUNING_STATE))
    return SparsityReport(rows, total, nonzero)
