"""`sensitivity`: how far a model's accuracy (or another metric) falls when one layer alone, or
one group of channels that `Add`-like joins tie together, is pruned or put on the int8 grid,
without fine-tuning: the one-shot scan that shows which layers can take compression.

Every cell of the table changes the weights of one private copy of the model in place and puts
them back afterwards, so the copy's forward pass is compiled once for the whole scan.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_compress._types import Arrays, KerasModel, PathLike
from keras_compress.analysis._scan import INT8, UNITS, check_model_and_ratios

__all__ = ["sensitivity", "SensitivityTable", "GRANULARITIES", "argmax_accuracy"]

GRANULARITIES = tuple(UNITS)


@dataclasses.dataclass
class SensitivityTable:
    """What compressing each layer (or channel group) alone does to the metric.

    Attributes:
        granularity: "filter", "weight" or "int8".
        metric: the metric's name; higher is better.
        baseline: the metric of the model as given.
        columns: the ratios scanned (share of filters or weights removed), or ("int8",).
        rows: one dict per layer or group: `name`, `layers` (the layers it changes),
            `parameters` (the weights it covers) and `scores` ({column: metric}).
    """

    granularity: str
    metric: str
    baseline: float
    columns: tuple
    rows: list

    def drop(self, name: str, column: float | str) -> float:
        """How far the metric falls when `name` alone is compressed at `column`."""
        row = next((row for row in self.rows if row["name"] == name), None)
        if row is None:
            raise KeyError(f"No row {name!r}; the rows are {[row['name'] for row in self.rows]}")
        return self.baseline - row["scores"][column]

    def to_dict(self) -> dict:
        return {"granularity": self.granularity, "metric": self.metric, "baseline": self.baseline,
                "columns": [str(column) for column in self.columns],
                "rows": [{**row, "scores": {str(c): s for c, s in row["scores"].items()}}
                         for row in self.rows]}

    def _label(self, column):
        return column if column == INT8 else f"{column:.0%}"

    def to_markdown(self) -> str:
        """The metric's drop per row and column, in points (baseline in the title)."""
        header = [f"{self.granularity} ({self.metric} {self.baseline:.4f})", "parameters",
                  *(self._label(c) for c in self.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            drops = [f"{100 * (self.baseline - row['scores'][c]):+.2f}" for c in self.columns]
            lines.append(f"| {row['name']} | {row['parameters']:,} | " + " | ".join(drops) + " |")
        return "\n".join(lines)

    def plot(self, path: PathLike) -> PathLike:
        """A heat map of the drops (rows by columns), written atomically as PNG. Returns `path`."""
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

        from keras_compress._files import write_atomically

        drops = np.array([[100 * (self.baseline - row["scores"][c]) for c in self.columns]
                          for row in self.rows])
        figure = Figure(figsize=(2.5 + 1.1 * len(self.columns), 1.5 + 0.3 * len(self.rows)))
        axes = figure.subplots()
        image = axes.imshow(drops, cmap="Reds", aspect="auto", vmin=0)
        axes.set_xticks(range(len(self.columns)), [self._label(c) for c in self.columns])
        axes.set_yticks(range(len(self.rows)), [row["name"] for row in self.rows], fontsize=8)
        axes.set_title(f"{self.metric} drop (points), {self.granularity}")
        figure.colorbar(image, ax=axes)
        figure.tight_layout()
        write_atomically(path, lambda target: figure.savefig(target, dpi=120, format="png"))
        return path


def argmax_accuracy(y_true, y_pred) -> float:
    """The share of rows whose largest output is the label (integer or one-hot)."""
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true)
    predicted = np.argmax(y_pred, axis=-1) if y_pred.shape[-1] > 1 else (y_pred[..., 0] > 0.5)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1] > 1:
        y_true = np.argmax(y_true, axis=-1)  # one-hot labels
    return float(np.mean(predicted.reshape(-1) == y_true.reshape(-1)))


def _check(model, validation_data, granularity, ratios, metric, batch_size):
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    flavour = check_model_and_ratios(model, ratios)
    if not (metric == "accuracy" or callable(metric)):
        raise ValueError(f'metric must be "accuracy" or a function (y_true, y_pred) -> float (higher is '
                         f"better), got {metric!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise ValueError("validation_data must be (x, y): inputs and the labels the metric reads.")
    x, y = validation_data
    rows = {len(a) for a in (x if isinstance(x, (list, tuple)) else [x])} | {len(y)}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(f"validation_data's inputs and labels must have the same number of rows (at "
                         f"least one), got {sorted(rows)}.")
    return flavour


def sensitivity(model: KerasModel, validation_data: tuple[Arrays, Any], *, granularity: str = "filter",
                ratios: Sequence[float] = (0.25, 0.5, 0.75), metric: str | Callable = "accuracy",
                exclude: Sequence[str] = (), batch_size: int = 256, verbose: int = 1) -> SensitivityTable:
    """Scores `model` on `validation_data` with one layer (or channel group) compressed at a time.

    For "filter", each group of output channels filter pruning can remove (one layer's, or the
    layers an `Add` ties together) loses each ratio of its filters, smallest L2 norm first, as
    `prune(granularity="filter")` would rank them; for "weight", each layer's kernels lose each
    ratio of their smallest weights; for "int8", each kernel is put on the symmetric int8 grid
    that quantized kernels use (per output channel; one scale for Dense), its activations left
    float. Nothing is trained; the model is not changed.

    Args:
        model: a built Sequential or functional model, tf_keras or Keras 3.
        validation_data: `(x, y)` arrays.
        granularity: "filter", "weight" or "int8".
        ratios: shares of filters or weights removed (ignored for "int8").
        metric: "accuracy" (argmax of the outputs against integer or one-hot labels) or a
            function `(y_true, y_pred) -> float`, higher being better.
        exclude: layer names left out of the scan.
        batch_size: rows per forward pass.
        verbose: 1 shows a progress bar.

    Example:
        >>> import numpy as np, keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"),
        ...                           keras.layers.Dense(3, name="scores")])
        >>> x, y = np.random.default_rng(0).random((32, 4)), np.zeros(32, int)
        >>> table = kc.analysis.sensitivity(model, (x, y), granularity="weight", verbose=0)
        >>> [row["name"] for row in table.rows], table.columns
        (['hidden', 'scores'], (0.25, 0.5, 0.75))
    """
    flavour = _check(model, validation_data, granularity, ratios, metric, batch_size)
    columns = (INT8,) if granularity == "int8" else tuple(float(r) for r in ratios)
    copy = flavour.copy_model(model)
    units = UNITS[granularity](copy, set(exclude))
    if not units:
        raise ValueError(f"Model {model.name!r} has nothing {granularity} compression can reach"
                         + (" outside `exclude`." if exclude else "."))
    baseline, rows = scan(copy, units, columns, validation_data, metric, batch_size, verbose)
    name = metric if metric == "accuracy" else getattr(metric, "__name__", "metric")
    return SensitivityTable(granularity, name, baseline, columns, rows)


def scan(model, units, columns, validation_data, metric, batch_size, verbose):
    """`(baseline score, rows)`: `model` scored with each unit compressed alone at each column;
    its weights are put back after each."""
    from keras_compress._flavour import keras_for
    from keras_compress.runtime.keras_runner import KerasRunner

    x, y = validation_data
    score = argmax_accuracy if metric == "accuracy" else metric
    runner = KerasRunner(model)

    def evaluate():
        return float(score(y, runner.predict(x, batch_size=batch_size)))

    baseline = evaluate()
    progress = keras_for(model).keras.utils.Progbar(len(units) * len(columns)) if verbose else None
    rows = []
    for unit in units:
        scores = {}
        for column in columns:
            changed = unit.compressed(column)
            saved = [(variable, np.asarray(variable.numpy())) for variable, _ in changed]
            for variable, value in changed:
                variable.assign(value)
            scores[column] = evaluate()
            for variable, value in saved:
                variable.assign(value)
            if progress is not None:
                progress.add(1)
        rows.append({"name": unit.name, "layers": unit.layers, "parameters": unit.parameters,
                     "scores": scores})
    return baseline, rows
