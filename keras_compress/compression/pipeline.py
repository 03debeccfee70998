"""`compress`: a model brought to a target measured on its runtime, with the least predicted
loss, then fine-tuned by distillation from the original.

The stages, each kept in `directory` as it finishes so that an interrupted run resumes:
1. measure the dense model on the runtime (float32, and int8 when allowed), and the model with
   every channel group at its largest share removed: a target that even this misses is refused
   here, before any analysis or training;
2. analysis: the one-shot filter sensitivity scan, and what each group's removal saves (latency
   measured on the runtime, or parameters and MACs counted);
3. allocation: a removal path ordered by the tables (`allocation.removal_path`), bisected with
   real exports for its first plan whose file meets the target;
4. fine-tuning of the shrunk model, distilled from the original (checkpointed every epoch);
5. the final export to the runtime, measured for the result.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from keras_compress._types import Data, KerasModel, PathLike
from keras_compress.analysis._scan import FilterGroups, check_model_and_ratios, shrunk
from keras_compress.analysis.latency import latency, measure
from keras_compress.analysis.sensitivity import argmax_accuracy, sensitivity
from keras_compress.compression.allocation import Curve, first_meeting, grid, removal_path
from keras_compress.compression.result import CompressionResult
from keras_compress.compression.target import Target
from keras_compress.tuning.trial import Training, head

__all__ = ["compress", "TECHNIQUES"]

TECHNIQUES = ("filters", "int8")
ROUNDS = 10  # plans measured along the removal path (the last plan, the largest shares, is known to meet)
TIMING = {"warmup": 5, "runs": 50}


def _digest(*parts):
    """A short hash of JSON-able parts and arrays (by their bytes)."""
    hasher = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            hasher.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, dict) and all(isinstance(v, np.ndarray) for v in part.values()):
            for key in sorted(part):
                hasher.update(key.encode())
                hasher.update(np.ascontiguousarray(part[key]).tobytes())
        elif isinstance(part, (list, tuple)) and part and all(isinstance(v, np.ndarray) for v in part):
            for value in part:
                hasher.update(np.ascontiguousarray(value).tobytes())
        else:
            hasher.update(json.dumps(part, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:24]


class _Run:
    """The state of one compression in its folder: finished stages, time spent, checkpoints."""

    def __init__(self, directory, key, verbose):
        self.temporary = directory is None
        self.folder = (os.fspath(directory) if directory is not None
                       else tempfile.mkdtemp(prefix="kc-compress-"))
        os.makedirs(self.folder, exist_ok=True)
        self.scratch = os.path.join(self.folder, "measurements")
        self.path = os.path.join(self.folder, "compress.json")
        self.verbose = verbose
        state = None
        strangers = [name for name in os.listdir(self.folder) if not name.startswith("latency-")]
        if strangers and not os.path.exists(self.path):
            shown = ", ".join(sorted(strangers)[:3]) + (", ..." if len(strangers) > 3 else "")
            raise ValueError(f"{self.folder} holds files of something else ({shown}): give compress an empty "
                             "or new folder (it writes model.keras, the artifact and its checkpoints there).")
        if os.path.exists(self.path):
            with open(self.path) as file:
                state = json.load(file)
            if state.get("key") != key:
                raise ValueError(
                    f"{self.folder} holds a compression of another model, data, target or setting: pass "
                    "another directory, or empty this one to start over.")
            self.say(f"Resuming from {self.folder} (done: {', '.join(state['stages']) or 'nothing'}).")
        self.state = state or {"key": key, "stages": {}, "timings": {}}
        os.makedirs(self.scratch, exist_ok=True)

    def forget(self):
        """Removes what this run wrote (a refused target leaves the folder as it found it)."""
        import shutil

        shutil.rmtree(self.folder if self.temporary else self.scratch, ignore_errors=True)
        if os.path.exists(self.path):
            os.remove(self.path)

    def say(self, message):
        if self.verbose:
            print(f"compress: {message}", flush=True)

    def save(self):
        from keras_compress._files import write_atomically

        def write(target):
            with open(target, "w") as file:
                json.dump(self.state, file, indent=1)
        write_atomically(self.path, write)

    @contextlib.contextmanager
    def clock(self, stage):
        start = time.perf_counter()
        try:
            yield
        finally:
            timings = self.state["timings"]
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    def stage(self, name, clock, compute, message=None):
        """The stage's stored value, or `compute()`'s, stored."""
        if name not in self.state["stages"]:
            if message:
                self.say(message)
            with self.clock(clock):
                value = compute()
            self.state["stages"][name] = value
            self.save()
        return self.state["stages"][name]


def _check(model, train_data, validation_data, target, teacher, techniques, max_accuracy_drop, epochs,
           batch_size, learning_rate, temperature, alpha, ratios, metric, directory):
    from keras_compress.distillation.losses import check_temperature_and_alpha
    from keras_compress.tuning.search import _check_data

    flavour = check_model_and_ratios(model, ratios)
    if not isinstance(target, Target):
        raise TypeError(f"target must be a kc.Target, e.g. kc.Target(latency_ms=2.0), got {target!r}")
    if isinstance(techniques, str) or not techniques or not set(techniques) <= set(TECHNIQUES):
        raise ValueError(f"techniques must be a non-empty subset of {TECHNIQUES}, got {techniques!r}")
    if target.macs is not None and "filters" not in techniques:
        raise ValueError('A MACs target needs "filters" in techniques: int8 leaves the arithmetic as it is.')
    _check_data(train_data, "train_data")
    _check_data(validation_data, "validation_data")
    if not (teacher is None or isinstance(teacher, str) and teacher == "self"
            or hasattr(teacher, "predict") and hasattr(teacher, "layers")):
        raise ValueError(f'teacher must be "self" (the model as given), None (labels only) or a Keras '
                         f"model, got {teacher!r}")
    for name, value, least in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    check_temperature_and_alpha(temperature, alpha)
    if max_accuracy_drop is not None and not (isinstance(max_accuracy_drop, (int, float))
                                              and 0 <= max_accuracy_drop < 1):
        raise ValueError(f"max_accuracy_drop must be a share in [0, 1) (0.01 = one point), got "
                         f"{max_accuracy_drop!r}")
    if not (metric == "accuracy" or callable(metric)):
        raise ValueError(f'metric must be "accuracy" or a function (y_true, y_pred) -> float (higher is '
                         f"better), got {metric!r}")
    if directory is not None and os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"directory {directory} is a file: pass a folder for the run's files.")
    return flavour


def _counted(base, groups, columns, verbose, keras):
    """`{"baseline", "rows"}` of parameters and MACs with each group shrunk alone, counted on
    the Keras model (what a size or MACs target's allocation reads)."""
    from keras_compress.benchmark.macs import mac_count

    def counts(model):
        return {"parameters": int(model.count_params()), "macs": mac_count(model) or 0}

    progress = keras.utils.Progbar(len(groups.spaces) * len(columns)) if verbose else None
    rows = []
    for name in groups.spaces:
        cells = {}
        for ratio in columns:
            cells[str(ratio)] = counts(shrunk(base, groups.changes({name: ratio}), verify=False))
            if progress is not None:
                progress.add(1)
        rows.append({"name": name, "cells": cells})
    return {"baseline": counts(base), "rows": rows}


def _savings(tables, start, columns):
    """`{quantity: {group: Curve}}` of what each group's removal saves, in the measured units of
    the artifact's precision (the tables' differences scaled to the artifact's dense value)."""
    savings = {}
    for quantity, table, field in (("ms", tables.get("latency"), "ms"),
                                   ("bytes", tables.get("counts"), "parameters"),
                                   ("macs", tables.get("counts"), "macs")):
        if table is None:
            continue
        base = table["baseline"][field]
        scale = start[quantity] / base if base else 0.0
        savings[quantity] = {row["name"]: Curve(columns, [scale * (base - row["cells"][str(r)][field])
                                                          for r in columns])
                             for row in table["rows"]}
    return savings


def compress(model: KerasModel, train_data: Data, validation_data: Data, *, target: Target,
             teacher: KerasModel | str | None = "self", techniques: Sequence[str] = TECHNIQUES,
             max_accuracy_drop: float | None = None, epochs: int = 5, batch_size: int = 32,
             learning_rate: float = 1e-3, temperature: float = 2.0, alpha: float = 0.5,
             ratios: Sequence[float] = (0.25, 0.5, 0.75), exclude: Sequence[str] = (),
             metric: str | Callable = "accuracy", directory: PathLike | None = None,
             verbose: int = 1) -> CompressionResult:
    """Compresses `model` to meet `target` on its runtime, losing as little as the scans predict.

    Filters are removed per channel group (the share each loses is chosen from a one-shot
    sensitivity scan on `validation_data` and from what each group's removal measures on the
    runtime), the model is shrunk, exported and measured, and the shares are corrected until
    the file meets the target; then the small model is fine-tuned for `epochs`, distilled from
    `teacher`, and exported again (int8 when "int8" is allowed and the target is a size, or the
    runtime runs int8 faster). A target that removing every group's largest share still misses
    is refused before any training.

    Args:
        model: a trained, built Sequential or functional classifier, tf_keras or Keras 3.
        train_data, validation_data: `(x, y)` arrays; the first rows of `train_data` calibrate int8.
        target: a `kc.Target` (latency_ms, size_kb and/or macs, on a runtime).
        teacher: "self" (distill from `model` as given), None (labels only) or another model.
        techniques: what may be used, among "filters" and "int8".
        max_accuracy_drop: the result counts as met only if the artifact's metric falls by no more
            (0.01 = one point of accuracy); a larger fall warns.
        epochs, batch_size, learning_rate, temperature, alpha: the fine-tuning (`alpha` weighs the
            labels' loss against the teacher's).
        ratios: the shares of filters each group's scans remove; the largest is the most a group
            may lose.
        exclude: layer names whose filters stay.
        metric: "accuracy" or a function `(y_true, y_pred) -> float`, higher being better.
        directory: where the run's files go (the artifact, `model.keras`, the scans and
            checkpoints); a run started there resumes. None: a new temporary folder.
        verbose: 1 prints the stages and progress bars.

    Example:
        >>> result = kc.compress(model, (x, y), (x_val, y_val), target=kc.Target(latency_ms=2.0),
        ...                      directory="compressed")  # doctest: +SKIP
        >>> print(result.report())  # doctest: +SKIP
    """
    flavour = _check(model, train_data, validation_data, target, teacher, techniques, max_accuracy_drop,
                     epochs, batch_size, learning_rate, temperature, alpha, ratios, metric, directory)
    from keras_compress.pruning.prune import excluded_names
    from keras_compress.runtime.keras_runner import KerasRunner

    columns = tuple(float(r) for r in ratios)
    excluded = excluded_names(model, list(exclude) if not isinstance(exclude, str) else exclude)
    settings = {"target": [target.latency_ms, target.size_kb, target.macs, target.runtime, target.batch_size,
                           target.threads], "techniques": sorted(techniques), "ratios": columns,
                "exclude": sorted(excluded), "metric": getattr(metric, "__name__", metric),
                "teacher": teacher if teacher is None or isinstance(teacher, str) else teacher.name,
                "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "temperature": temperature, "alpha": alpha}
    key = _digest(model.get_config(), [np.asarray(w) for w in model.get_weights()], settings,
                  train_data[0], train_data[1], validation_data[0], validation_data[1])
    run = _Run(directory, key, verbose)
    calibration = head(train_data[0], 256)
    score: Callable = argmax_accuracy if isinstance(metric, str) else metric

    def measured(candidate, precision, folder):
        return measure(candidate, target.runtime, target.batch_size, target.threads, TIMING["warmup"],
                       TIMING["runs"], folder, quantize="static" if precision == "int8" else None,
                       calibration_data=calibration if precision == "int8" else None)[0]

    # 1. The dense model, and the most the allowed techniques can do.
    dense = run.stage("dense", "measurement", lambda: measured(model, "float32", run.scratch),
                      f"measuring the dense model on {target.runtime}")
    if target.macs is not None and dense["macs"] is None:
        run.forget()
        raise ValueError(f"The {target.runtime} file of model {model.name!r} has operators whose MACs cannot "
                         "be counted (open input sizes, or recurrent layers): give a latency_ms or size_kb "
                         "target instead.")
    precision = "float32"
    if "int8" in techniques and (target.size_kb is not None or target.latency_ms is not None):
        dense_int8 = run.stage("dense_int8", "measurement", lambda: measured(model, "int8", run.scratch),
                               "measuring the dense model in int8")
        if target.size_kb is not None or dense_int8["ms"] < 0.95 * dense["ms"]:
            precision = "int8"
    start = run.state["stages"]["dense_int8"] if precision == "int8" else dense
    base = flavour.copy_model(model)
    groups = FilterGroups(base, excluded) if "filters" in techniques else None
    plan: dict = {}
    if target.missed(start):
        if groups is None or not groups.spaces:
            run.forget()
            raise ValueError(f"The target ({target.describe()}) is out of reach: the dense model in "
                             f"{precision} measures {target.values(start)}, and "
                             + ("filters are not among the techniques." if groups is None else
                                "it has no filters that can be removed" + (" outside `exclude`." if excluded
                                                                            else ".")))
        top = max(columns)
        largest = dict.fromkeys(groups.spaces, top)
        limit = run.stage("limit", "measurement",
                          lambda: measured(shrunk(base, groups.changes(largest), verify=False), precision,
                                           run.scratch),
                          f"measuring every channel group at {top:.0%} of its filters removed")
        missed = target.missed(limit)
        if missed:
            run.forget()
            int8_helps = "int8" not in techniques and ("bytes" in missed or "ms" in missed)
            raise ValueError(
                f"The target ({target.describe()}) is out of reach: with {top:.0%} of every channel group's "
                f"filters removed ({precision}) the model measures {target.values(limit)} (dense: "
                f"{target.values(start)}). Loosen the target, allow larger shares with `ratios`"
                + (", or allow int8 in `techniques`." if int8_helps else "."))

        # 2. Analysis.
        tables = {"sensitivity": run.stage(
            "sensitivity", "analysis",
            lambda: sensitivity(base, validation_data, granularity="filter", ratios=columns, metric=metric,
                                exclude=list(excluded), verbose=verbose).to_dict(),
            "scanning each channel group's sensitivity")}
        if target.latency_ms is not None:
            tables["latency"] = run.stage(
                "latency", "analysis",
                lambda: latency(base, runtime=target.runtime, ratios=columns, batch_size=target.batch_size,
                                threads=target.threads, exclude=list(excluded), directory=run.folder,
                                verbose=verbose).to_dict(),
                f"timing each channel group's removal on {target.runtime}")
        if target.size_kb is not None or target.macs is not None:
            tables["counts"] = run.stage("counts", "analysis",
                                         lambda: _counted(base, groups, columns, verbose, flavour.keras),
                                         "counting each channel group's parameters and MACs")

        # 3. Allocation, corrected by measurement.
        if "plan" not in run.state["stages"]:
            sens = tables["sensitivity"]
            drops = {row["name"]: Curve(columns, [sens["baseline"] - row["scores"][str(r)] for r in columns])
                     for row in sens["rows"]}
            savings = _savings(tables, start, columns)
            bounds = target.bounds()
            with run.clock("allocation"):
                path = removal_path(drops, savings, start, bounds, grid(columns))
            guess = next((i for i, plan in enumerate(path)
                          if all(start[q] - sum(savings[q][g](share) for g, share in plan.items()) <= bound
                                 for q, bound in bounds.items())), len(path) - 1)
            iterations = run.state.setdefault("iterations", [])
            tried = {json.dumps(item["plan"], sort_keys=True): item["measured"] for item in iterations}

            def meets(index):
                plan = path[index]
                known = tried.get(json.dumps(plan, sort_keys=True))
                if known is None:
                    with run.clock("allocation"):
                        candidate = shrunk(base, groups.changes(plan), verify=False)
                    run.say(f"plan {len(iterations) + 1} (step {index + 1} of {len(path)}): measuring")
                    with run.clock("measurement"):
                        known = measured(candidate, precision, run.scratch)
                    iterations.append({"plan": plan, "measured": known})
                    run.save()
                return not target.missed(known)

            chosen = path[first_meeting(path, meets, guess, ROUNDS)]
            run.state["stages"]["plan"] = {name: share for name, share in chosen.items() if share > 0}
            run.save()
        plan = run.state["stages"]["plan"]

    # 4. Fine-tuning, distilled from the teacher.
    checkpoint = os.path.join(run.folder, "fine_tuned.keras")
    done = run.state.get("epochs_done", 0)
    if plan and done:
        from keras_compress.model_files import load_model

        student = load_model(checkpoint)
    elif plan and groups is not None:
        student = shrunk(base, groups.changes(plan))
    else:
        student = flavour.copy_model(model)
    if plan and epochs > done:
        teacher_model = flavour.copy_model(model) if teacher == "self" else teacher
        training = Training(epochs, batch_size, learning_rate, teacher_model)
        values = {"temperature": temperature, "alpha": alpha} if teacher_model is not None else {}

        def saved(epoch, logs=None):
            from keras_compress._files import write_atomically

            write_atomically(checkpoint, student.save)
            run.state["epochs_done"] = done + epoch + 1
            run.save()
            run.say(f"fine-tuning epoch {done + epoch + 1}/{epochs}"
                    + "".join(f", {k} {v:.4f}" for k, v in (logs or {}).items()))

        run.say(f"fine-tuning {epochs - done} epoch(s)" + (" by distillation" if values else ""))
        with run.clock("fine_tuning"):
            training.fit(student, train_data, values, epochs - done,
                         callbacks=[flavour.keras.callbacks.LambdaCallback(on_epoch_end=saved)])

    # 5. The artifact, measured.
    run.say("exporting and measuring the compressed model")
    with run.clock("measurement"):
        final, artifact = measure(student, target.runtime, target.batch_size, target.threads,
                                  TIMING["warmup"], TIMING["runs"], run.folder,
                                  quantize="static" if precision == "int8" else None,
                                  calibration_data=calibration if precision == "int8" else None)
        x, y = validation_data
        final["accuracy"] = float(score(y, artifact.load(threads=target.threads).predict(x)))
        dense = dict(dense, accuracy=float(score(y, KerasRunner(model).predict(x))))
    from keras_compress._files import write_atomically

    write_atomically(os.path.join(run.folder, "model.keras"), student.save)
    met = not target.missed(final)
    if not met:
        warnings.warn(f"The compressed model misses its target on the final measurement: "
                      f"{target.values(final)} for {target.describe()}. Timings vary between runs; a tighter "
                      "target leaves room.",
                      stacklevel=2)
    drop = dense["accuracy"] - final["accuracy"]
    if max_accuracy_drop is not None and drop > max_accuracy_drop:
        met = False
        warnings.warn(f"The compressed model's {settings['metric']} fell by {drop:.4f} (from "
                      f"{dense['accuracy']:.4f} to {final['accuracy']:.4f}), more than max_accuracy_drop="
                      f"{max_accuracy_drop}: fine-tune longer (epochs) or loosen the target.", stacklevel=2)
    kept = {name: (groups.kept(name, share), groups.sizes()[name])
            for name, share in plan.items()} if groups else {}
    result = CompressionResult(
        model=student, artifact=artifact, target=target, precision=precision, plan=dict(plan),
        filters=kept, measured=final, dense=dense, met=met, iterations=run.state.get("iterations", []),
        timings=dict(run.state["timings"]), directory=run.folder)
    result.to_json(os.path.join(run.folder, "result.json"))
    return result

