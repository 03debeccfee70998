"""`search`: the smallest (or fastest) compressed model that keeps its accuracy."""

import json
import os
from collections.abc import Callable
from typing import Any

import keras_tuner

from keras_compress._files import write_atomically
from keras_compress._flavour import KERAS3, TF_KERAS, check_model, flavour_of
from keras_compress._types import Data, KerasModel, PathLike
from keras_compress.tuning.result import SearchResult
from keras_compress.tuning.space import check_space
from keras_compress.tuning.trial import Training, measure
from keras_compress.tuning.tuner import OBJECTIVE, CandidateModel, CompressionTuner

__all__ = ["search", "TUNERS"]

TUNERS = ("bayesian", "random", "hyperband")


def _oracle(tuner, max_trials, epochs, seed):
    if tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(OBJECTIVE, max_trials=max_trials, seed=seed)
    if tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(OBJECTIVE, max_trials=max_trials, seed=seed)
    return keras_tuner.oracles.HyperbandOracle(OBJECTIVE, max_epochs=epochs, factor=3, seed=seed)


def _check_data(data, argument):
    if not (isinstance(data, tuple) and len(data) == 2 and data[1] is not None):
        raise ValueError(f"{argument} must be an (inputs, labels) tuple: accuracy needs the labels.")
    inputs, labels = data
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else \
        inputs[0] if isinstance(inputs, (list, tuple)) else inputs
    if len(first) != len(labels) or not len(labels):
        raise ValueError(f"{argument} has {len(first)} rows of inputs and {len(labels)} labels; "
                         "they must match and not be empty.")
    return data


def _baseline(model_or_build_fn, space, train_data, validation_data, training, folder, artifact_format):
    """The float32 starting point, measured once and kept in the project folder (resumed searches
    and distributed workers read it back)."""
    path = os.path.join(folder, "baseline.json")
    if os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    if flavour_of(model_or_build_fn) is not None:
        model = model_or_build_fn
    else:  # train the default configuration, uncompressed
        model = CandidateModel(model_or_build_fn, space).build(keras_tuner.HyperParameters())
        training.fit(model, train_data, {}, training.epochs)
    metrics = measure(model, os.path.join(folder, "baseline"), validation_data, artifact_format)

    def write(target):
        with open(target, "w") as file:
            json.dump(metrics, file)

    write_atomically(path, write)
    return metrics


def _rows(tuner):
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED":
            continue
        row = {name: trial.metrics.get_last_value(name)
               for name in ("size_bytes", "latency_ms", "accuracy", "accuracy_drop", "feasible", "score")}
        values = {name: round(value, 6) if isinstance(value, float) else value
                  for name, value in trial.hyperparameters.values.items()}  # 0.9, not 0.9000000000000001
        row.update(trial=trial.trial_id, values=values,
                   folder=tuner.get_trial_dir(trial.trial_id), feasible=bool(row["feasible"]))
        with open(os.path.join(row["folder"], "metrics.json")) as file:
            row["artifact"] = json.load(file)["artifact"]
        rows.append(row)
    return rows


def search(model_or_build_fn: KerasModel | Callable[[Any], KerasModel], train_data: Data,
           validation_data: Data, *, teacher: KerasModel | None = None, objective: str = "size",
           max_accuracy_drop: float = 0.01, space: dict | None = None, max_trials: int = 10,
           tuner: str = "bayesian", directory: PathLike = "keras_compress_search",
           project_name: str = "search", overwrite: bool = False, epochs: int = 4, batch_size: int = 32,
           learning_rate: float = 1e-3, artifact_format: str = "tflite", seed: int = 0,
           verbose: int = 1) -> SearchResult | None:
    """Searches compression settings for the smallest (or fastest) model within an accuracy budget.

    Each trial starts from the trained model's weights (or builds a fresh model with
    `build_fn(hp)`), prunes it while training for `epochs` (by distillation from `teacher`
    when given), strips it, shrinks filter-pruned models, optionally fine-tunes it with
    quantization-aware training, exports it (`artifact_format`: "tflite" or "onnx") and
    measures the artifact: gzipped size, p50 latency at batch 1 on this machine, and
    accuracy on `validation_data`. Candidates more than `max_accuracy_drop` below the
    float32 baseline's accuracy are infeasible.

    Built on keras-tuner's oracles. Trials and their artifacts live in
    `directory/project_name`: an interrupted search resumes from there (unless
    `overwrite=True`), and keras-tuner's distributed mode works (a chief and workers
    started with `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`).

    Args:
        model_or_build_fn: a trained classifier (Keras 3 or tf_keras), or `build_fn(hp)` returning a
            new one. Quantization-aware training takes tf_keras models only, for now: the default
            space of a Keras 3 model leaves it out.
        train_data, validation_data: `(inputs, labels)` tuples.
        teacher: a trained model of the same Keras; adds temperature and alpha to the space.
        objective: "size" (gzipped artifact) or "latency".
        max_accuracy_drop: in [0, 1): how far accuracy may fall below the baseline's.
        space: `{"final_sparsity": (low, high) or [values], "granularity": ["weight", "filter"],
            "qat": [False, True], "clusters": [0, 16], "temperature": ..., "alpha": ...}`; None
            for the default. `clusters` (tf_keras models only) lists cluster counts, 0 for none:
            the default space of a trained tf_keras model has [0, 16].
        max_trials: trials to run (Bayesian and random search; Hyperband sets its own).
        tuner: "bayesian", "random" or "hyperband".

    Returns:
        A `SearchResult` (None in a distributed worker: the chief returns the result).
    """
    if not isinstance(max_accuracy_drop, (int, float)) or not 0 <= max_accuracy_drop < 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1), got {max_accuracy_drop!r}")
    if objective not in ("size", "latency"):
        raise ValueError(f'objective must be "size" or "latency", got {objective!r}')
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}, got {tuner!r}")
    if not isinstance(max_trials, int) or max_trials < 1 or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"max_trials and epochs must be ints >= 1, got {max_trials!r} and {epochs!r}")
    if artifact_format not in ("tflite", "onnx"):
        raise ValueError(f'artifact_format must be "tflite" or "onnx", got {artifact_format!r}')
    for path in (directory, os.path.join(directory, project_name)):
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"directory: {path} is a file, and the search keeps its trials in a folder "
                             "there. Give another directory.")
    flavour = None
    if flavour_of(model_or_build_fn) is not None or not callable(model_or_build_fn):
        check_model(model_or_build_fn, "model_or_build_fn", action="search")
        flavour = flavour_of(model_or_build_fn)
    if teacher is not None:
        check_model(teacher, "teacher", flavours=(flavour,) if flavour else (TF_KERAS, KERAS3),
                    action="search")
    train_data = _check_data(train_data, "train_data")
    validation_data = _check_data(validation_data, "validation_data")
    space = check_space(space, teacher, model=model_or_build_fn if flavour else None)

    training = Training(epochs, batch_size, learning_rate, teacher)
    hypermodel = CandidateModel(model_or_build_fn, space)
    compression_tuner = CompressionTuner(
        _oracle(tuner, max_trials, epochs, seed), hypermodel, directory=directory, project_name=project_name,
        overwrite=overwrite, baseline=None, objective=objective, max_accuracy_drop=max_accuracy_drop,
        training=training, artifact_format=artifact_format)
    os.makedirs(compression_tuner.project_dir, exist_ok=True)
    compression_tuner.baseline = _baseline(model_or_build_fn, space, train_data, validation_data, training,
                                           str(compression_tuner.project_dir), artifact_format)
    compression_tuner.search(train_data, validation_data, verbose=verbose)
    if _is_worker():
        return None  # the chief holds the trials
    rows = _rows(compression_tuner)
    if not rows:
        failures = [t.message for t in compression_tuner.oracle.trials.values() if t.message]
        raise RuntimeError("No trial completed."
                           + (f" The last failure:\n{failures[-1]}" if failures else ""))
    return SearchResult(compression_tuner.baseline, rows, objective, max_accuracy_drop)


def _is_worker():
    """A distributed keras-tuner worker (it reports to a chief and holds no trial list)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"
