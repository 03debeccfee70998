"""`compress`: a model brought to a target measured on its runtime, with the least predicted
loss, then fine-tuned by distillation from the original.

The stages, each kept in `directory` as it finishes so that an interrupted run resumes:
1. measure the dense model on the runtime (float32, and int8 when allowed), and the model with
   every channel group at its largest share removed (and its weights at the largest sparsity,
   when "weights" is allowed): a target that even this misses is refused here, before any
   analysis or training;
2. analysis: the one-shot sensitivity scans (each channel group's filters; the model's weights
   under one global ranking), and what each removal saves (latency measured on the runtime,
   parameters and MACs counted, the sparse file's bytes measured);
3. allocation: a removal path ordered by the tables (`allocation.removal_path`; the weights'
   sparsity is one more group on it), bisected with real exports for its first plan whose file
   meets the target;
4. fine-tuning of the shrunk model, distilled from the original (checkpointed every epoch), its
   pruned weights kept at zero, and with "qat" its last epochs quantization-aware;
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
from keras_compress.analysis._scan import FilterGroups, check_model_and_ratios, global_weight_unit, shrunk
from keras_compress.analysis.latency import latency, measure
from keras_compress.analysis.sensitivity import argmax_accuracy, scan, sensitivity
from keras_compress.compression.allocation import Curve, first_meeting, grid, predicted, removal_path
from keras_compress.compression.result import CompressionResult
from keras_compress.compression.target import Target
from keras_compress.errors import ExportVerificationError
from keras_compress.quantization.qat import is_quantize_aware, quantize_aware
from keras_compress.tuning.trial import Training, head

__all__ = ["compress", "TECHNIQUES"]

TECHNIQUES = ("filters", "weights", "int8", "qat")
WEIGHTS = "weights/global"  # the removal path's group for the weights' sparsity ("/" is in no layer name)
WEIGHT_SHARES = (0.5, 0.75, 0.9)  # the sparsities scanned; the largest is the most a plan may reach
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
    if "qat" in techniques and epochs < 1:
        raise ValueError('"qat" trains the int8 model: give epochs of at least 1 (the last third of them, at '
                         'least one, run quantization-aware), or allow "int8" (post-training) instead.')
    if "weights" in techniques and (target.size_kb is None or target.latency_ms is not None
                                    or target.runtime != "tflite"):
        raise ValueError('"weights" (pruned weights, stored in TFLite\'s sparse encoding) makes only a '
                         "TFLite file smaller, not faster (LiteRT runs sparse int8 files on its slower "
                         'builtin kernels): give a size_kb target without latency_ms on runtime="tflite", '
                         'or leave "weights" out of techniques.')
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


def _drops(tables):
    """`{group: Curve}` of the metric's predicted drop, from the sensitivity scans."""
    return {row["name"]: Curve([float(r) for r in row["scores"]],
                               [table["baseline"] - score for score in row["scores"].values()])
            for table in tables for row in table["rows"]}


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


def _fractions(tables, start):
    """`{"bytes": {WEIGHTS: Curve}}`: the share of the file the weights' sparsity saves, as
    measured on the sparse files of the dense model (it saves nothing else)."""
    if "weight_bytes" not in tables:
        return {}
    return {"bytes": {WEIGHTS: Curve(WEIGHT_SHARES, [1.0 - size / start["bytes"]
                                                     for size in tables["weight_bytes"]])}}


def compress(model: KerasModel, train_data: Data, validation_data: Data, *, target: Target,
             teacher: KerasModel | str | None = "self", techniques: Sequence[str] = ("filters", "int8"),
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
    runtime runs int8 faster; with "qat", int8 learnt in the last epochs). With "weights"
    allowed, a size target may also be met by pruning up to 90% of the weights (one global
    magnitude ranking, kept through fine-tuning) and storing them in TFLite's sparse encoding.
    A target that removing every group's largest share (and the most weights) still misses
    is refused before any training.

    Args:
        model: a trained, built Sequential or functional classifier, tf_keras or Keras 3.
        train_data, validation_data: `(x, y)` arrays; the first rows of `train_data` calibrate int8.
        target: a `kc.Target` (latency_ms, size_kb and/or macs, on a runtime).
        teacher: "self" (distill from `model` as given), None (labels only) or another model.
        techniques: what may be used, among "filters", "int8" (post-training, calibrated),
            "qat" (int8 learnt, in place of "int8": the last third of `epochs`, at least one,
            fine-tune the quantization-aware model, which keeps pruned weights at zero; also
            when the dense model meets the target) and "weights" (size targets on TFLite only:
            sparse files are smaller, not faster, and LiteRT runs them on its builtin kernels
            rather than XNNPack).
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

    def measured(candidate, precision, folder, sparse=False, final=False):
        """`(measurement, artifact)` of `candidate` exported for the target's runtime: int8 after
        calibration, or with "qat" as the quantization-aware model's file (its ranges set by one
        batch until it is trained)."""
        learnt = precision == "int8" and "qat" in techniques
        with warnings.catch_warnings():
            if not final:  # the search's files: the user hears about the one that ships
                warnings.filterwarnings("ignore", message=r"(sparse_weights=True|The sparse TFLite file|"
                                                          r"These layers of|The TFLite converter kept)")
            if learnt and not is_quantize_aware(candidate):
                candidate = quantize_aware(candidate)
                candidate(head(calibration, 32), training=True)
            calibrated = precision == "int8" and not learnt

            def exported(sparse_weights):
                return measure(candidate, target.runtime, target.batch_size, target.threads,
                               TIMING["warmup"], TIMING["runs"], folder,
                               quantize="static" if calibrated else None,
                               calibration_data=calibration if calibrated else None,
                               sparse_weights=sparse_weights)
            try:
                return exported(sparse)
            except ExportVerificationError as error:
                if not sparse:
                    raise
                # LiteRT's sparse kernels can miscompute very sparse small layers: the file that is
                # measured (and shipped) stores the zeros dense instead.
                if final:
                    warnings.warn(f"The sparse TFLite file of the compressed model computed different "
                                  f"outputs ({error}); it stores its weights dense instead, a larger file.",
                                  stacklevel=3)
                return exported(False)

    def built(plan, verify=False):
        """The model of `plan`: its groups' filters removed, its weights pruned to its sparsity."""
        filters = {name: share for name, share in plan.items() if name != WEIGHTS and share > 0}
        candidate = (shrunk(base, groups.changes(filters), verify=verify) if filters
                     else flavour.copy_model(base))
        if plan.get(WEIGHTS):
            for variable, value in global_weight_unit(candidate, excluded, WEIGHTS).compressed(plan[WEIGHTS]):
                variable.assign(value)
        return candidate

    def measured_plan(plan):
        return measured(built(plan), precision, run.scratch, sparse=bool(plan.get(WEIGHTS)))[0]

    # 1. The dense model, and the most the allowed techniques can do.
    dense = run.stage("dense", "measurement", lambda: measured(model, "float32", run.scratch)[0],
                      f"measuring the dense model on {target.runtime}")
    if target.macs is not None and dense["macs"] is None:
        run.forget()
        raise ValueError(f"The {target.runtime} file of model {model.name!r} has operators whose MACs cannot "
                         "be counted (open input sizes, or recurrent layers): give a latency_ms or size_kb "
                         "target instead.")
    precision = "float32"
    if {"int8", "qat"} & set(techniques) and (target.size_kb is not None or target.latency_ms is not None):
        dense_int8 = run.stage("dense_int8", "measurement", lambda: measured(model, "int8", run.scratch)[0],
                               "measuring the dense model in int8")
        if target.size_kb is not None or dense_int8["ms"] < 0.95 * dense["ms"]:
            precision = "int8"
    start = run.state["stages"]["dense_int8"] if precision == "int8" else dense
    base = flavour.copy_model(model)
    groups = FilterGroups(base, excluded) if "filters" in techniques else None
    top = max(columns)
    largest = dict.fromkeys(groups.spaces if groups is not None else (), top)
    if "weights" in techniques:
        largest[WEIGHTS] = max(WEIGHT_SHARES)
    has_filters = groups is not None and bool(groups.spaces)
    plan: dict = {}
    if target.missed(start):
        if not largest:
            run.forget()
            raise ValueError(f"The target ({target.describe()}) is out of reach: the dense model in "
                             f"{precision} measures {target.values(start)}, and "
                             + ("filters are not among the techniques." if groups is None else
                                "it has no filters that can be removed" + (" outside `exclude`." if excluded
                                                                            else ".")))
        reached = " and ".join(
            ([f"{top:.0%} of every channel group's filters removed"] if has_filters else [])
            + ([f"{max(WEIGHT_SHARES):.0%} of the weights pruned"] if WEIGHTS in largest else []))
        limit = run.stage("limit", "measurement", lambda: measured_plan(largest), f"measuring the model with "
                          f"{reached}")
        missed = target.missed(limit)
        if missed:
            run.forget()
            int8_helps = not {"int8", "qat"} & set(techniques) and ("bytes" in missed or "ms" in missed)
            raise ValueError(
                f"The target ({target.describe()}) is out of reach: with {reached} ({precision}) the model "
                f"measures {target.values(limit)} (dense: {target.values(start)}). Loosen the target"
                + (", allow larger shares with `ratios`" if has_filters else "")
                + (", or allow int8 in `techniques`." if int8_helps else "."))

        # 2. Analysis.
        tables = {}
        if has_filters:
            tables["sensitivity"] = run.stage(
                "sensitivity", "analysis",
                lambda: sensitivity(base, validation_data, granularity="filter", ratios=columns,
                                    metric=metric, exclude=list(excluded), verbose=verbose).to_dict(),
                "scanning each channel group's sensitivity")
            if target.latency_ms is not None:
                tables["latency"] = run.stage(
                    "latency", "analysis",
                    lambda: latency(base, runtime=target.runtime, ratios=columns,
                                    batch_size=target.batch_size, threads=target.threads,
                                    exclude=list(excluded), directory=run.folder, verbose=verbose).to_dict(),
                    f"timing each channel group's removal on {target.runtime}")
            if target.size_kb is not None or target.macs is not None:
                tables["counts"] = run.stage("counts", "analysis",
                                             lambda: _counted(base, groups, columns, verbose, flavour.keras),
                                             "counting each channel group's parameters and MACs")
        if WEIGHTS in largest:
            def weight_scan():
                baseline, rows = scan(base, [global_weight_unit(base, excluded, WEIGHTS)], WEIGHT_SHARES,
                                      validation_data, metric, 256, verbose)
                return {"baseline": baseline, "rows": [{"name": WEIGHTS, "scores": {
                    str(share): value for share, value in rows[0]["scores"].items()}}]}
            tables["weight_sensitivity"] = run.stage("weight_sensitivity", "analysis", weight_scan,
                                                     "scanning the weights' sensitivity to pruning")
            tables["weight_bytes"] = run.stage(
                "weight_bytes", "analysis",
                lambda: [measured_plan({WEIGHTS: share})["bytes"] for share in WEIGHT_SHARES],
                "measuring the sparse files of the pruned weights")

        # 3. Allocation, corrected by measurement.
        if "plan" not in run.state["stages"]:
            drops = _drops([tables[name] for name in ("sensitivity", "weight_sensitivity") if name in tables])
            savings, fractions = _savings(tables, start, columns), _fractions(tables, start)
            bounds = target.bounds()
            shares = {group: grid(columns) for group in drops}
            if WEIGHTS in drops:  # below the first scanned share the converter encodes nothing sparse
                shares[WEIGHTS] = [s for s in grid(WEIGHT_SHARES) if s >= min(WEIGHT_SHARES)]
            with run.clock("allocation"):
                path = removal_path(drops, savings, start, bounds, shares, fractions)
            guess = next((i for i, plan in enumerate(path)
                          if all(predicted(plan, q, start, savings, fractions) <= bound
                                 for q, bound in bounds.items())), len(path) - 1)
            iterations = run.state.setdefault("iterations", [])
            tried = {json.dumps(item["plan"], sort_keys=True): item["measured"] for item in iterations}

            def meets(index):
                plan = path[index]
                known = tried.get(json.dumps(plan, sort_keys=True))
                if known is None:
                    run.say(f"plan {len(iterations) + 1} (step {index + 1} of {len(path)}): measuring")
                    with run.clock("measurement"):
                        known = measured_plan(plan)
                    iterations.append({"plan": plan, "measured": known})
                    run.save()
                return not target.missed(known)

            chosen = path[first_meeting(path, meets, guess, ROUNDS)]
            run.state["stages"]["plan"] = {name: share for name, share in chosen.items() if share > 0}
            run.save()
        plan = run.state["stages"]["plan"]
    sparsity = plan.get(WEIGHTS, 0.0)

    # 4. Fine-tuning, distilled from the teacher: the pruned weights kept at zero, then (with "qat")
    # the last epochs quantization-aware.
    from keras_compress._files import write_atomically
    from keras_compress.pruning.callback import PruningCallback
    from keras_compress.pruning.prune import prune, strip
    from keras_compress.pruning.schedules import ConstantSparsity

    qat_epochs = max(1, epochs // 3) if "qat" in techniques and precision == "int8" else 0
    float_epochs = epochs - qat_epochs if plan else 0
    checkpoint = os.path.join(run.folder, "fine_tuned.keras")
    done = run.state.get("epochs_done", 0)
    if done:
        from keras_compress.model_files import load_model

        student = load_model(checkpoint)
    elif plan:
        student = built(dict(plan, **{WEIGHTS: 0.0}), verify=True)
    else:
        student = flavour.copy_model(model)
    if sparsity and not done and not float_epochs:  # no float fine-tuning: pruned at once
        for variable, value in global_weight_unit(student, excluded, WEIGHTS).compressed(sparsity):
            variable.assign(value)
    if float_epochs + qat_epochs > done:
        teacher_model = flavour.copy_model(model) if teacher == "self" else teacher
        training = Training(epochs, batch_size, learning_rate, teacher_model)
        values = {"temperature": temperature, "alpha": alpha} if teacher_model is not None else {}

        def fit(trained, count, saveable, callbacks=()):
            """Trains `trained` for `count` epochs, checkpointing `saveable(trained)` after each."""
            before = run.state.get("epochs_done", 0)

            def saved(epoch, logs=None):
                write_atomically(checkpoint, saveable(trained).save)
                run.state["epochs_done"] = before + epoch + 1
                run.save()
                run.say(f"fine-tuning epoch {before + epoch + 1}/{float_epochs + qat_epochs}"
                        + "".join(f", {k} {v:.4f}" for k, v in (logs or {}).items()))

            checkpointing = flavour.keras.callbacks.LambdaCallback(on_epoch_end=saved)
            with run.clock("fine_tuning"):
                training.fit(trained, train_data, values, count, callbacks=[*callbacks, checkpointing])

        how = " by distillation" if values else ""
        if float_epochs > done:
            run.say(f"fine-tuning {float_epochs - done} epoch(s){how}"
                    + (f", {sparsity:.0%} of the weights pruned" if sparsity else ""))
            if sparsity:
                wrapped = prune(student, ConstantSparsity(sparsity), scope="global", exclude=list(excluded))
                fit(wrapped, float_epochs - done, strip, [PruningCallback()])
                student = strip(wrapped)
            else:
                fit(student, float_epochs - done, lambda trained: trained)
        if qat_epochs:
            left = float_epochs + qat_epochs - run.state.get("epochs_done", 0)
            run.say(f"fine-tuning {left} epoch(s) quantization-aware{how}")
            if not is_quantize_aware(student):
                student = quantize_aware(student)
            fit(student, left, lambda trained: trained)

    # 5. The artifact, measured.
    run.say("exporting and measuring the compressed model")
    with run.clock("measurement"):
        final, artifact = measured(student, precision, run.folder, sparse=bool(sparsity), final=True)
        x, y = validation_data
        final["accuracy"] = float(score(y, artifact.load(threads=target.threads).predict(x)))
        dense = dict(dense, accuracy=float(score(y, KerasRunner(model).predict(x))))
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
    filters = {name: share for name, share in plan.items() if name != WEIGHTS}
    kept = {name: (groups.kept(name, share), groups.sizes()[name])
            for name, share in filters.items()} if groups else {}
    result = CompressionResult(
        model=student, artifact=artifact, target=target, precision=precision, plan=filters,
        filters=kept, sparsity=sparsity, measured=final, dense=dense, met=met,
        iterations=run.state.get("iterations", []), timings=dict(run.state["timings"]), directory=run.folder)
    result.to_json(os.path.join(run.folder, "result.json"))
    return result

