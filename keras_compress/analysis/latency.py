"""`latency`: what removing each layer's filters buys on a runtime, measured (NetAdapt's empirical
lookup table). One channel group at a time loses each ratio of its filters, is removed for real
(`shrink`), exported and timed in the runtime; every cell is saved as it is measured, so a scan
resumes where it stopped and a second scan of the same model reads the first's.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from keras_compress._types import KerasModel, PathLike
from keras_compress.analysis._scan import check_model_and_ratios, filter_units, shrunk

__all__ = ["latency", "LatencyTable", "RUNTIMES", "measure"]

# Runtimes a scan times, by the suffix of the file exported for them.
RUNTIMES = {"tflite": ".tflite", "onnx": ".onnx"}


@dataclasses.dataclass
class LatencyTable:
    """Measured latency, multiply-accumulates and parameters with each channel group shrunk alone.

    Attributes:
        runtime, batch_size, threads: where and how the files were timed.
        baseline: `{"ms", "macs", "parameters"}` of the model as given.
        columns: the ratios of filters removed.
        rows: one dict per channel group: `name`, `layers` (the layers making its channels) and
            `cells` ({ratio: {"ms", "macs", "parameters"}}); ms is the median of the timed calls.
    """

    runtime: str
    batch_size: int
    threads: int
    baseline: dict
    columns: tuple
    rows: list

    def saved_ms(self, name: str, ratio: float) -> float:
        """Milliseconds a call saves with `name`'s group shrunk alone by `ratio`."""
        row = next((row for row in self.rows if row["name"] == name), None)
        if row is None:
            raise KeyError(f"No row {name!r}; the rows are {[row['name'] for row in self.rows]}")
        return self.baseline["ms"] - row["cells"][ratio]["ms"]

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "batch_size": self.batch_size, "threads": self.threads,
                "baseline": self.baseline, "columns": list(self.columns),
                "rows": [{**row, "cells": {str(r): cell for r, cell in row["cells"].items()}}
                         for row in self.rows]}

    def to_markdown(self) -> str:
        """Milliseconds saved (and the share of MACs left) per group and ratio."""
        header = [f"{self.runtime}, batch {self.batch_size}, {self.threads} thread(s): "
                  f"{self.baseline['ms']:.3f} ms", *(f"{r:.0%}" for r in self.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = []
            for ratio in self.columns:
                cell = row["cells"][ratio]
                macs = (f", {cell['macs'] / self.baseline['macs']:.0%} MACs"
                        if cell["macs"] and self.baseline["macs"] else "")
                cells.append(f"{self.baseline['ms'] - cell['ms']:+.3f} ms{macs}")
            lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def measure(model, runtime, batch_size, threads, warmup, runs, folder, *, quantize=None,
            calibration_data=None, sparse_weights=False):
    """`({"ms", "macs", "parameters", "bytes"}, artifact)`: `model` exported into `folder` for
    `runtime` (quantized as `quantize` says, its zeros sparse-encoded with `sparse_weights`) and
    timed there."""
    from keras_compress.export import export
    from keras_compress.export.artifact import path_size
    from keras_compress.export.signature import sample_inputs
    from keras_compress.formats import FORMATS
    from keras_compress.runtime.load import load
    from keras_compress.runtime.timing import latencies

    path = os.path.join(folder, f"model{RUNTIMES[runtime]}")
    artifact = export(model, path, overwrite=True, compare_speed=False, quantize=quantize,
                      calibration_data=calibration_data, verify="warn" if quantize else True,
                      sparse_weights=sparse_weights)
    runner = load(artifact.path, threads=threads)
    inputs = sample_inputs(model, rows=batch_size)
    seconds = latencies(runner, inputs if len(inputs) > 1 else inputs[0], warmup=warmup, runs=runs)
    return {"ms": float(np.median(seconds) * 1000), "macs": FORMATS[runtime].mac_count(artifact.path),
            "parameters": int(sum(np.prod(w.shape) for w in model.weights)),
            "bytes": path_size(artifact.path)}, artifact


def _key(model, runtime, batch_size, threads):
    """What the measurements depend on: the architecture, weight shapes, runtime and settings."""
    described = json.dumps({"config": model.get_config(), "shapes": [list(w.shape) for w in model.weights],
                            "runtime": runtime, "batch_size": batch_size, "threads": threads},
                           sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:20]


def _check(runtime, batch_size, threads, warmup, runs, directory):
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
    for name, value, least in (("batch_size", batch_size, 1), ("threads", threads, 1), ("warmup", warmup, 0),
                               ("runs", runs, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    if directory is not None and os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"directory {directory} is a file: pass a folder for the measurements.")


def latency(model: KerasModel, *, runtime: str = "tflite", ratios: Sequence[float] = (0.25, 0.5, 0.75),
            batch_size: int = 1, threads: int = 1, warmup: int = 5, runs: int = 30,
            exclude: Sequence[str] = (), directory: PathLike | None = None, verbose: int = 1) -> LatencyTable:
    """Times `model` on `runtime` with each channel group's filters shrunk alone, ratio by ratio.

    The groups are those filter pruning removes together (one layer's filters, or the layers an
    `Add` ties together); each loses its filters of least L2 norm, is removed with `shrink`,
    exported with `kc.export` and timed with the runtime's runner (the median of `runs` calls
    of `batch_size` rows on `threads` threads, after `warmup` calls). MACs are read from the
    file. With `directory`, every measurement is kept there, keyed by the architecture and the
    settings: an interrupted scan resumes, and a later scan of the same architecture reads them.

    Args:
        model: a built Sequential or functional model, tf_keras or Keras 3.
        runtime: "tflite" (LiteRT) or "onnx" (ONNX Runtime).
        ratios: shares of each group's filters removed.
        batch_size, threads, warmup, runs: how each file is timed.
        exclude: layer names whose filters stay.
        directory: a folder for the measurements (None: kept in memory only).
        verbose: 1 shows a progress bar.
    """
    flavour = check_model_and_ratios(model, ratios)
    _check(runtime, batch_size, threads, warmup, runs, directory)
    from keras_compress._files import write_atomically

    columns = tuple(float(r) for r in ratios)
    base = flavour.copy_model(model)
    units = filter_units(base, set(exclude))
    if not units:
        raise ValueError(f"Model {model.name!r} has no filters that can be removed"
                         + (" outside `exclude`." if exclude else "."))
    cache_path = None
    measured = {}
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
        cache_path = os.path.join(directory, f"latency-{_key(model, runtime, batch_size, threads)}.json")
        if os.path.exists(cache_path):
            with open(cache_path) as file:
                measured = json.load(file)

    def save():
        if cache_path is not None:
            def write(target):
                with open(target, "w") as file:
                    json.dump(measured, file, indent=1)
            write_atomically(cache_path, write)

    progress = flavour.keras.utils.Progbar(1 + len(units) * len(columns)) if verbose else None
    with tempfile.TemporaryDirectory(prefix="kc-latency-") as folder:
        def cell(key, make):
            if key not in measured:
                measured[key] = measure(make(), runtime, batch_size, threads, warmup, runs, folder)[0]
                save()
            if progress is not None:
                progress.add(1)
            return measured[key]

        baseline = cell("baseline", lambda: base)
        rows = []
        for unit in units:
            cells = {}
            for ratio in columns:
                cells[ratio] = cell(f"{unit.name}@{ratio}",
                                     lambda unit=unit, ratio=ratio: shrunk(base, unit.compressed(ratio)))
            rows.append({"name": unit.name, "layers": unit.layers, "cells": cells})
    return LatencyTable(runtime, batch_size, threads, baseline, columns, rows)
