"""`benchmark`: size, accuracy, agreement, latency and serving memory of variants, side by side."""

import os
import sys
import tempfile
import warnings

import numpy as np

from keras_compress._flavour import flavour_of, keras_for
from keras_compress._types import Data
from keras_compress.benchmark.macs import mac_count
from keras_compress.benchmark.memory import serving_memory_bytes
from keras_compress.benchmark.report import Report, environment_summary
from keras_compress.benchmark.weights import gzipped_bytes, weight_counts
from keras_compress.export.artifact import Artifact, path_size
from keras_compress.formats import for_path
from keras_compress.runtime.keras_runner import KerasRunner
from keras_compress.runtime.load import load
from keras_compress.runtime.runner import check_threads
from keras_compress.runtime.tensors import as_list, normalize_inputs
from keras_compress.runtime.timing import check_timing, latencies

__all__ = ["benchmark"]


def _tensorflow_threads():
    """TensorFlow's intra-op threads in this process (None when nothing imported TensorFlow).
    They are the process's setting, left as they are: TensorFlow fixes them when it starts."""
    if "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def _warn_of_other_threads(threads, tensorflow_threads, runners):
    on_tensorflow = sorted({runner.format for runner in runners if runner.on_tensorflow})
    if on_tensorflow and tensorflow_threads not in (None, threads):
        warnings.warn(f"The {' and '.join(on_tensorflow)} variants run on TensorFlow's {tensorflow_threads} "
                      f"threads, the others on {threads}: for a like-for-like comparison, call "
                      f"tf.config.threading.set_intra_op_parallelism_threads({threads}) before TensorFlow "
                      "starts (or pass threads=None to give every runtime all cores).", stacklevel=3)


def _without_optimizer(model):
    """The model as it ships: no optimizer state in its file."""
    return model if getattr(model, "optimizer", None) is None else keras_for(model).copy_model(model)


def _is_keras_model(variant):
    return flavour_of(variant) is not None and hasattr(variant, "layers") and hasattr(variant, "predict")


def _open(name, variant, threads, folder):
    """`(runner, path on disk, format, precision, model-or-path for weight counts)`."""
    if _is_keras_model(variant):
        path = os.path.join(folder, f"{len(os.listdir(folder))}.keras")
        _without_optimizer(variant).save(path)
        return KerasRunner(variant), path, "keras", "float32", variant
    path = variant.path if isinstance(variant, Artifact) else os.fspath(variant)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Variant {name!r}: no artifact at {path}")
    fmt = for_path(path)
    runner = (load(path, threads=threads) if fmt is not None and "threads" in fmt.runner_options
              else load(path))
    # keras_compress records the precision in every artifact it writes (TensorRT engines excepted).
    settings = (getattr(runner, "metadata", None) or {}).get("settings", {})
    precision = variant.precision if isinstance(variant, Artifact) else settings.get("precision", "float32")
    return runner, path, runner.format, precision, path


def _macs(source):
    """`mac_count(source)`, or None where counting fails: the count is an aside to the timings."""
    try:
        return mac_count(source)
    except Exception:  # noqa: BLE001 - e.g. a graph ONNX shape inference cannot take
        return None


def _rows(arrays, count):
    """The first `count` rows of each array, repeating rows when there are fewer."""
    return [np.resize(a, (count, *a.shape[1:])) if len(a) < count else a[:count] for a in arrays]


def _check_finite(arrays, inputs, labels):
    """Inputs and labels full of NaN or Inf measure nothing: refused, naming what holds them."""
    for array, info in zip(arrays, inputs):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ValueError(f"data holds NaN or Inf in input {info.name!r}: benchmark on finite inputs.")
    if labels is not None:
        labels = np.asarray(labels)
        numeric = labels.dtype == bool or np.issubdtype(labels.dtype, np.number)
        if not numeric or not np.isfinite(labels.astype("float64")).all():
            raise ValueError("the labels hold NaN, Inf or non-numbers: give class indices or one-hot rows.")


def _top1(outputs):
    first = as_list(outputs)[0]
    return first.argmax(-1) if first.ndim == 2 and first.shape[1] > 1 else None


def benchmark(variants: dict, data: Data, *, batch_sizes: tuple[int, ...] = (1, 32), warmup: int = 5,
              runs: int = 50, threads: int | None = None, memory: bool = True, verbose: int = 1) -> Report:
    """Measures each variant the same way and returns a `Report`.

    For each variant: format, precision, parameters and their sparsity (read from the
    model or file), multiply-accumulates per row (`keras_compress.benchmark.macs`: pruned
    zeros still count, removed filters do not), size on disk and gzipped, accuracy (when
    labels are given), top-1 agreement with the first variant (the baseline), latency
    p50/p90/p99 and throughput per batch size (`warmup` calls, then `runs` timed calls, the
    same threads for every runtime), and the peak resident memory of a fresh process that loads and runs it.

    Args:
        variants: `{name: Keras model (Keras 3 or tf_keras), Artifact or artifact path}`; the first
            is the baseline.
        data: `(x, y)` or `x`; `x` as `predict` takes it (array, list, dict by input name).
        batch_sizes: batches to time.
        warmup, runs: untimed and timed calls per batch size.
        threads: intra-op threads of ONNX Runtime, LiteRT and TensorRT (default: all cores).
            Keras models and SavedModels run on TensorFlow's threads as this process has them
            (`tf.config.threading`, fixed when TensorFlow starts; the report records them): a
            warning says when those differ from `threads`.
        memory: measure serving memory in a subprocess per variant (a few seconds each).
        verbose: 1 prints progress, 0 is silent.

    Example:
        >>> import numpy as np, keras_compress as kc
        >>> import tf_keras as keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="tiny")
        >>> x, y = np.ones((8, 4), "float32"), np.zeros(8, "int64")
        >>> report = kc.benchmark({"tiny": model}, (x, y), runs=3, memory=False, verbose=0)
        >>> report.rows[0]["accuracy"] in (0.0, 1.0), sorted(report.rows[0]["latency_ms"])
        (True, ['1', '32'])
    """
    if not isinstance(variants, dict) or not variants:
        raise ValueError("variants must be a non-empty dict {name: model, artifact or path}")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be ints >= 1, got {batch_sizes!r}")
    check_timing(warmup, runs)
    check_threads(threads)
    x, y = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
    asked_threads, threads = threads, threads or os.cpu_count()
    say = (lambda message: print(message, file=sys.stdout, flush=True)) if verbose else (lambda message: None)

    rows, baseline = [], None
    with tempfile.TemporaryDirectory() as folder:
        opened = {}
        for name, variant in variants.items():  # open and check every variant before timing any
            runner, path, fmt, precision, weights_of = _open(name, variant, threads, folder)
            try:
                arrays = normalize_inputs(x, runner.inputs, runner._input_dtypes)
            except ValueError as error:
                raise ValueError(f"Variant {name!r} does not take this data: {error}") from None
            if not len(arrays[0]):
                raise ValueError("data has no rows: give at least one row to benchmark on.")
            if y is not None and len(y) != len(arrays[0]):
                raise ValueError(f"data has {len(arrays[0])} rows of inputs but {len(y)} labels")
            _check_finite(arrays, runner.inputs, y)
            outputs = runner.predict(arrays, batch_size=256)
            if not all(np.isfinite(output).all() for output in as_list(outputs)
                       if np.issubdtype(output.dtype, np.number)):
                raise ValueError(f"Variant {name!r} outputs NaN or Inf on this data: its accuracy and "
                                 "agreement would mean nothing. Check the model or artifact (a diverged "
                                 "training, a broken conversion) before benchmarking it.")
            opened[name] = (runner, path, fmt, precision, weights_of, arrays, _top1(outputs))
        rows_of_data = len(arrays[0])
        tensorflow_threads = _tensorflow_threads()
        if asked_threads is not None:
            _warn_of_other_threads(threads, tensorflow_threads, [entry[0] for entry in opened.values()])
        labels = None if y is None else (np.asarray(y).argmax(-1) if np.ndim(y) == 2 else np.asarray(y))
        for index, (name, (runner, path, fmt, precision, weights_of, arrays, predictions)) \
                in enumerate(opened.items(), 1):
            say(f"  benchmark {index}/{len(opened)}: {name} ({fmt}, {precision}): timing batch "
                f"{', '.join(map(str, batch_sizes))} ({warmup} warm-up + {runs} timed calls each)"
                + (", then serving memory in a fresh process" if memory and fmt != "tensorrt" else ""))
            counts = weight_counts(weights_of)
            macs = _macs(runner.model if fmt == "keras" else path)
            if baseline is None:
                baseline = predictions
            row = {"name": name, "format": fmt, "precision": precision,
                   "params": counts[0] if counts else None,
                   "sparsity": counts[1] / counts[0] if counts and counts[0] else None, "macs": macs,
                   "size_bytes": path_size(path), "gzipped_bytes": gzipped_bytes(path),
                   "accuracy": float(np.mean(predictions == labels)) if labels is not None
                   and predictions is not None else None,
                   "agreement": float(np.mean(predictions == baseline)) if predictions is not None else None,
                   "latency_ms": {}, "throughput": {}}
            for batch in batch_sizes:
                times = latencies(runner, _rows(arrays, batch), warmup=warmup, runs=runs) * 1e3
                row["latency_ms"][str(batch)] = {f"p{q}": float(np.percentile(times, q))
                                                 for q in (50, 90, 99)}
                row["throughput"][str(batch)] = batch / (row["latency_ms"][str(batch)]["p50"] / 1e3)
            row["memory_bytes"] = None
            if memory and fmt != "tensorrt":
                inputs = dict(zip([info.name for info in runner.inputs], _rows(arrays, max(batch_sizes))))
                row["memory_bytes"] = serving_memory_bytes(path, inputs, threads)
            rows.append(row)
    settings = {"batch_sizes": list(batch_sizes), "warmup": warmup, "runs": runs, "rows": rows_of_data}
    return Report(rows, environment_summary(threads, tensorflow_threads), settings)
