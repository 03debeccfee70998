"""`CompressionResult`: what `compress` made, measured against its target and the dense model."""

import dataclasses
import json
from typing import Any

from keras_compress._types import PathLike
from keras_compress.compression.target import QUANTITIES, Target

__all__ = ["CompressionResult"]

_TIMINGS = ("analysis", "allocation", "fine_tuning", "measurement")


def _value(quantity, value):
    if value is None:
        return "n/a"
    return {"ms": f"{value:.3f} ms", "bytes": f"{value / 1024:.1f} KiB", "macs": f"{value:,.0f}",
            "accuracy": f"{value:.4f}"}[quantity]


@dataclasses.dataclass
class CompressionResult:
    """The compressed model, its exported file, the plan that made it and what was measured.

    Attributes:
        model: the compressed, fine-tuned Keras model (float32, or quantization-aware with "qat";
            the artifact is what ships).
        artifact: the exported file (`kc.Artifact`), measured on the target's runtime.
        target: the `kc.Target` asked for.
        precision: "int8" or "float32", the artifact's weights.
        plan: `{channel group: share of its filters removed}`, for the groups that lost any.
        filters: `{channel group: (filters kept, filters before)}`.
        measured, dense: `{"ms", "bytes", "macs", "parameters", "accuracy"}` of the artifact and of
            the dense float32 model exported to the same runtime.
        met: whether every bound of the target held on the artifact (and the accuracy stayed within
            `max_accuracy_drop`, when given).
        iterations: each plan tried before fine-tuning, with its measurement.
        timings: seconds spent on analysis, allocation, fine-tuning and measurement.
        directory: where the run's files are (and from where it resumes).
        sparsity: the share of the prunable weights pruned by one global ranking and stored
            sparse in the TFLite file (0 unless "weights" was allowed and needed).
    """

    model: Any
    artifact: Any
    target: Target
    precision: str
    plan: dict
    filters: dict
    measured: dict
    dense: dict
    met: bool
    iterations: list
    timings: dict
    directory: str
    sparsity: float = 0.0

    def to_dict(self) -> dict:
        return {"target": dataclasses.asdict(self.target), "precision": self.precision, "plan": self.plan,
                "filters": {name: list(pair) for name, pair in self.filters.items()},
                "sparsity": self.sparsity,
                "measured": self.measured, "dense": self.dense, "met": self.met,
                "iterations": self.iterations, "timings": self.timings, "artifact": str(self.artifact.path)}

    def to_json(self, path: PathLike) -> PathLike:
        """Writes `to_dict()` as JSON, atomically. Returns `path`."""
        from keras_compress._files import write_atomically

        def write(target):
            with open(target, "w") as file:
                json.dump(self.to_dict(), file, indent=1)
        write_atomically(path, write)
        return path

    def report(self) -> str:
        """Markdown: the target against the artifact and the dense model, the plan, the time."""
        bounds = self.target.bounds()
        lines = [f"Target: {self.target.describe()}; **{'met' if self.met else 'missed'}** "
                 f"({self.precision} artifact {self.artifact.path})", "",
                 "| | target | compressed | dense float32 | ratio |", "|---|---|---|---|---|"]
        for _, quantity, _ in QUANTITIES:
            limit = bounds.get(quantity)
            ratio = (f"{self.measured[quantity] / self.dense[quantity]:.3f}x"
                     if self.dense.get(quantity) else "")
            values = [_value(quantity, limit) if limit else "", _value(quantity, self.measured[quantity]),
                      _value(quantity, self.dense[quantity]), ratio]
            lines.append(f"| {quantity} | " + " | ".join(values) + " |")
        lines.append(f"| accuracy | | {_value('accuracy', self.measured['accuracy'])} | "
                     f"{_value('accuracy', self.dense['accuracy'])} | "
                     f"{100 * (self.measured['accuracy'] - self.dense['accuracy']):+.2f} pt |")
        if self.filters:
            lines += ["", "| channel group | filters kept | removed |", "|---|---|---|"]
            for name, (kept, before) in self.filters.items():
                lines.append(f"| {name} | {kept}/{before} | {1 - kept / before:.0%} |")
        if self.sparsity:
            lines += ["", f"Weights: {self.sparsity:.1%} pruned (one global magnitude ranking), stored in "
                          "TFLite's sparse encoding."]
        lines += ["", "Time: " + ", ".join(f"{stage.replace('_', '-')} {self.timings.get(stage, 0):.1f} s"
                                           for stage in _TIMINGS)]
        return "\n".join(lines)

    def plot(self, path: PathLike) -> PathLike:
        """A bar chart of the share of filters each channel group lost, as PNG. Returns `path`."""
        from matplotlib.figure import Figure

        from keras_compress._files import write_atomically

        names = list(self.filters)
        removed = [1 - kept / before for kept, before in self.filters.values()]
        figure = Figure(figsize=(7, 1.5 + 0.28 * len(names)))
        axes = figure.subplots()
        axes.barh(range(len(names)), removed, color="tab:red")
        axes.set_yticks(range(len(names)), names, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel("share of filters removed")
        axes.set_title(f"{self.target.describe()}: {'met' if self.met else 'missed'}", fontsize=9)
        figure.tight_layout()
        write_atomically(path, lambda target: figure.savefig(target, dpi=120, format="png"))
        return path
