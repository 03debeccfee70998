"""`Report`: benchmark rows as a table, machine-readable JSON and one figure."""

import datetime
import json
import os

from keras_compress._environment import cpu_flags, cpu_model, environment
from keras_compress._files import write_atomically
from keras_compress._types import PathLike

__all__ = ["Report", "environment_summary"]

_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def environment_summary(threads, tensorflow_threads):
    """Versions, CPU model and the flags that matter for int8/float16 speed, thread counts."""
    return dict(environment(), cpu=cpu_model(), cpu_flags=sorted(cpu_flags() & set(_FLAGS)),
                cpu_count=os.cpu_count(), threads=threads, tensorflow_threads=tensorflow_threads,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _fmt(value, pattern, missing="–"):
    return missing if value is None else format(value, pattern)


class Report:
    """What `benchmark` measured.

    Attributes:
        rows: one dict per variant (name, format, precision, params, sparsity, macs (per row;
            None where not counted), size_bytes,
            gzipped_bytes, accuracy, agreement, latency_ms {batch: {p50, p90, p99}},
            throughput {batch: rows/s}, memory_bytes).
        environment: versions, CPU model and flags, threads.
        settings: batch sizes, warm-up and timed runs, rows of data.
    """

    def __init__(self, rows: list[dict], environment: dict, settings: dict):
        self.rows, self.environment, self.settings = rows, environment, settings

    def to_dict(self) -> dict:
        return {"rows": self.rows, "environment": self.environment, "settings": self.settings}

    def to_json(self, path: PathLike) -> PathLike:
        """Writes the report as JSON (atomically); returns `path`."""
        def write(target):
            with open(target, "w") as file:
                json.dump(self.to_dict(), file, indent=2, default=str)

        write_atomically(path, write)
        return path

    def to_markdown(self) -> str:
        """A markdown table, latency at every batch size, with ratios against the first row."""
        batches = [str(b) for b in self.settings["batch_sizes"]]
        header = (["variant", "format", "precision", "params", "sparsity", "MMACs", "size KB", "gzipped KB",
                   "smaller", "accuracy", "agreement"] + [f"p50 ms @{b}" for b in batches]
                  + [f"rows/s @{batches[-1]}", "memory MB"])
        base = self.rows[0]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [row["name"], row["format"], row["precision"], _fmt(row["params"], ","),
                     _fmt(row["sparsity"], ".1%"),
                     _fmt(None if row["macs"] is None else row["macs"] / 1e6, ".3g"),
                     f"{row['size_bytes'] / 1024:.1f}",
                     f"{row['gzipped_bytes'] / 1024:.1f}",
                     f"{base['gzipped_bytes'] / row['gzipped_bytes']:.1f}x",
                     _fmt(row["accuracy"], ".2%"), _fmt(row["agreement"], ".2%")]
            cells += [f"{row['latency_ms'][b]['p50']:.3f}" for b in batches]
            cells += [f"{row['throughput'][batches[-1]]:,.0f}",
                      _fmt(None if row["memory_bytes"] is None else row["memory_bytes"] / 2**20, ".0f")]
            lines.append("| " + " | ".join(cells) + " |")
        env = self.environment
        lines.append("")
        lines.append(f"{env['cpu']} ({', '.join(env['cpu_flags']) or 'no SIMD flags listed'}), "
                     f"{env['threads']} threads; {self.settings['warmup']} warm-up and "
                     f"{self.settings['runs']} timed calls per batch; "
                     f"accuracy and agreement on {self.settings['rows']} rows; "
                     "agreement = top-1 agreement with the first row; MMACs = million multiply-accumulates "
                     "per row in convolutions and matrix products.")
        return "\n".join(lines)

    def __str__(self):
        return self.to_markdown()

    def plot(self, path: PathLike) -> PathLike:
        """One figure (written atomically): gzipped size against accuracy, and p50 latency per
        variant at the smallest and largest batch. Returns `path`."""
        import matplotlib.ticker
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

        batches = [str(b) for b in self.settings["batch_sizes"]]
        figure = Figure(figsize=(13, 5.5))
        left, right = figure.subplots(1, 2)
        for i, row in enumerate(self.rows):
            accuracy = row["accuracy"] if row["accuracy"] is not None else row["agreement"]
            left.scatter(row["gzipped_bytes"] / 1024, 100 * (accuracy or 0), s=60)
            left.annotate(row["name"], (row["gzipped_bytes"] / 1024, 100 * (accuracy or 0)),
                          textcoords="offset points", xytext=(6, 4 if i % 2 else -12), fontsize=9)
        left.set_xscale("log")
        left.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        left.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        left.set_xlabel("gzipped size (KB, log scale)")
        left.set_ylabel("accuracy (%)" if self.rows[0]["accuracy"] is not None else "top-1 agreement (%)")
        left.set_title("Size against accuracy")
        left.grid(True, alpha=0.3)
        names = [row["name"] for row in self.rows]
        positions = range(len(names))
        shown = [batches[0], batches[-1]] if len(batches) > 1 else batches
        height = 0.8 / len(shown)
        for i, batch in enumerate(shown):
            right.barh([p + i * height for p in positions],
                       [row["latency_ms"][batch]["p50"] for row in self.rows],
                       height=height, label=f"batch {batch}")
        right.set_yticks([p + height * (len(shown) - 1) / 2 for p in positions])
        right.set_yticklabels(names, fontsize=9)
        right.invert_yaxis()
        right.set_xscale("log")
        right.set_xlabel("p50 latency (ms, log scale)")
        right.set_title(f"Latency, {self.environment['threads']} threads")
        right.legend()
        right.grid(True, axis="x", alpha=0.3)
        figure.tight_layout()
        write_atomically(path, lambda target: figure.savefig(target, dpi=120, format="png"))
        return path
