"""`SearchResult`: every trial, the Pareto front and the best feasible candidate."""

import json
import os

from keras_compress._files import write_atomically
from keras_compress._types import KerasModel, PathLike

__all__ = ["SearchResult", "pareto_front"]


def pareto_front(rows, key):
    """Names of the rows no other row beats on both `key` (lower is better) and accuracy."""
    front = []
    for row in rows:
        dominated = any(other[key] <= row[key] and other["accuracy"] >= row["accuracy"]
                        and (other[key] < row[key] or other["accuracy"] > row["accuracy"]) for other in rows)
        if not dominated:
            front.append(row["trial"])
    return front


class SearchResult:
    """What `search` found.

    Attributes:
        baseline: the float32 starting point's `size_bytes`, `latency_ms` and `accuracy`.
        trials: one dict per completed trial (its hyperparameters, metrics, `feasible`,
            `pareto`, and `folder` with `model.keras` and the artifact).
        best: the best feasible trial's row, or None when no trial kept its accuracy.
        objective: "size" or "latency".
    """

    def __init__(self, baseline: dict, trials: list[dict], objective: str, max_accuracy_drop: float):
        self.baseline, self.objective, self.max_accuracy_drop = baseline, objective, max_accuracy_drop
        key = self.key
        front = set(pareto_front(trials, key))
        self.trials = [dict(row, pareto=row["trial"] in front) for row in trials]
        feasible = [row for row in self.trials if row["feasible"]]
        self.best = min(feasible, key=lambda row: row[key]) if feasible else None

    @property
    def key(self):
        return "size_bytes" if self.objective == "size" else "latency_ms"

    @property
    def best_values(self):
        """The best trial's hyperparameters."""
        return None if self.best is None else dict(self.best["values"])

    @property
    def best_artifact(self):
        """Path of the best trial's artifact."""
        return None if self.best is None else os.path.join(self.best["folder"], self.best["artifact"])

    def best_model(self) -> KerasModel:
        """The best trial's compressed model, loaded from its folder."""
        from keras_compress.model_files import load_model

        return None if self.best is None else load_model(os.path.join(self.best["folder"], "model.keras"))

    def to_markdown(self) -> str:
        """Every trial with its settings and measures; * marks the Pareto front, ✓ feasibility."""
        names = sorted({name for row in self.trials for name in row["values"]
                        if not name.startswith("tuner/")})
        header = (["trial"] + names
                  + ["gzipped KB", "smaller", "latency ms", "accuracy", "drop", "feasible", "pareto"])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in sorted(self.trials, key=lambda r: r[self.key]):
            values = [_cell(row["values"].get(name)) for name in names]
            lines.append("| " + " | ".join(
                [row["trial"]] + values + [f"{row['size_bytes'] / 1024:.1f}",
                                           f"{self.baseline['size_bytes'] / row['size_bytes']:.1f}x",
                                           f"{row['latency_ms']:.3f}", f"{row['accuracy']:.2%}",
                                           f"{100 * row['accuracy_drop']:+.2f} pt",
                                           "✓" if row["feasible"] else "✗",
                                           "*" if row["pareto"] else ""]) + " |")
        lines.append("")
        lines.append(f"baseline (float32): {self.baseline['size_bytes'] / 1024:.1f} KB gzipped, "
                     f"{self.baseline['latency_ms']:.3f} ms, accuracy {self.baseline['accuracy']:.2%}; "
                     f"feasible: accuracy drop <= {100 * self.max_accuracy_drop:.1f} pt.")
        if self.best is not None:
            lines.append(f"best: trial {self.best['trial']}, {self.best_values}")
        return "\n".join(lines)

    def __str__(self):
        return self.to_markdown()

    def to_json(self, path: PathLike) -> PathLike:
        def write(target):
            with open(target, "w") as file:
                json.dump({"baseline": self.baseline, "objective": self.objective, "trials": self.trials,
                           "best": self.best, "max_accuracy_drop": self.max_accuracy_drop}, file, indent=2)

        write_atomically(path, write)
        return path

    def plot(self, path: PathLike) -> PathLike:
        """The trials' objective against accuracy, the Pareto front joined, the baseline marked."""
        import matplotlib.ticker
        from matplotlib.figure import Figure

        key, scale = (self.key, 1024) if self.objective == "size" else (self.key, 1)
        figure = Figure(figsize=(8, 5.5))
        axes = figure.subplots()
        for feasible, marker, label in ((True, "o", "feasible"), (False, "x", "accuracy dropped too far")):
            rows = [r for r in self.trials if bool(r["feasible"]) == feasible]
            axes.scatter([r[key] / scale for r in rows], [100 * r["accuracy"] for r in rows], marker=marker,
                         label=label, s=50)
        front = sorted((r for r in self.trials if r["pareto"]), key=lambda r: r[key])
        axes.plot([r[key] / scale for r in front], [100 * r["accuracy"] for r in front], "--", color="gray",
                  label="Pareto front")
        axes.scatter([self.baseline[key] / scale], [100 * self.baseline["accuracy"]], marker="*", s=200,
                     color="black", label="float32 baseline")
        axes.axhline(100 * (self.baseline["accuracy"] - self.max_accuracy_drop), color="red", linewidth=0.8,
                     label="accuracy limit")
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes.set_xlabel("gzipped artifact (KB, log scale)" if self.objective == "size"
                        else "p50 latency (ms, log)")
        axes.set_ylabel("accuracy (%)")
        axes.set_title("Search trials")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        write_atomically(path, lambda target: figure.savefig(target, dpi=120, format="png"))
        return path


def _cell(value):
    if isinstance(value, float):
        return f"{value:.2f}"
    return "–" if value is None else str(value)
