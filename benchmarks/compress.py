"""Compression to a target: `kc.compress` against uniform filter pruning meeting the same target.

Two models trained on the bundled digits: the digits CNN (8x8 inputs) and MobileNetV2 alpha 0.35
(`keras.applications`, weights=None) on the digits resized to 64x64 RGB. For each seed:

- latency target = 50% of the dense model's LiteRT latency (batch 1, 1 thread), float32 files.
  `kc.compress(techniques=("filters",))` against uniform filter pruning: every channel group
  loses the same share of its filters, the smallest share (bisected on the measured latency)
  whose file meets the target.
- size target = 1/15 of the float32 TFLite file (raw bytes). `kc.compress` (filters + int8)
  against the uniform chain: uniform filters, then int8, the smallest share whose int8 file fits.
- the same size target with "weights" allowed too (`size+weights`): pruned weights in TFLite's
  sparse encoding, against the same uniform chain.
- 1/6 of the float32 file in float32 (`float size`: filters alone; `float size+weights`: filters
  and sparse weights), against uniform filters in float32.

Both sides remove the same filters by the same ranking (L2 norm), are shrunk the same way and
fine-tuned the same (epochs, batch, learning rate, distillation from the dense model), so the
difference is the allocation. The finished files of both sides are timed again, interleaved,
at the end. Every number is measured in this run, on this machine.

    .venv/bin/python benchmarks/compress.py [--quick] [--seeds 0 1 2] [--models cnn mobilenet]
        [--targets latency size size+weights "float size" "float size+weights"]
"""

import argparse
import os
import platform
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.analysis._scan import FilterGroups, shrunk  # noqa: E402
from keras_compress.analysis.latency import measure  # noqa: E402
from keras_compress.analysis.sensitivity import argmax_accuracy  # noqa: E402
from keras_compress.demo import digits_cnn  # noqa: E402
from keras_compress.tuning.trial import Training  # noqa: E402

TEMPERATURE, ALPHA, LEARNING_RATE, BATCH = 2.0, 0.5, 1e-3, 32  # kc.compress's defaults
RATIOS = (0.25, 0.5, 0.75, 0.9)  # the shares kc.compress scans; the most either side may remove is 0.9


def mobilenet(seed):
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10,
                                           classifier_activation=None)
    for layer in model.layers:  # a short training from scratch: statistics that follow it
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


MODELS = {  # name: (build(seed), digits image size and channels, training epochs, fine-tuning epochs)
    "cnn": (lambda seed: digits_cnn(seed=seed), None, 1, 15, 5),
    "mobilenet": (mobilenet, 64, 3, 30, 8),
}


def trained(name, seed, train, quick):
    build, _, _, epochs, _ = MODELS[name]
    model = build(seed)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*train, epochs=2 if quick else epochs, batch_size=BATCH, verbose=0)
    return model


def file_of(model, precision, train, folder):
    """`(measurement, artifact)` of `model` exported to LiteRT (int8 calibrated on train rows)."""
    int8 = precision == "int8"
    return measure(model, "tflite", 1, 1, 5, 50, folder, quantize="static" if int8 else None,
                   calibration_data=train[0][:256] if int8 else None)


def uniform(model, target, precision, train, folder):
    """The smallest share of every group's filters whose file meets `target`, and that model."""
    groups = FilterGroups(model, set())

    def candidate(share):
        return shrunk(model, groups.changes(dict.fromkeys(groups.spaces, share)), verify=False)

    low, high = 0.0, RATIOS[-1]  # the largest share: whether it meets the target is recorded in the row
    for _ in range(7):
        middle = (low + high) / 2
        if target.missed(file_of(candidate(middle), precision, train, folder)[0]):
            low = middle
        else:
            high = middle
    return high, shrunk(model, groups.changes(dict.fromkeys(groups.spaces, high)))


def fine_tuned(student, teacher, train, epochs, seed):
    keras.utils.set_random_seed(seed)
    Training(epochs, BATCH, LEARNING_RATE, teacher).fit(student, train, {"temperature": TEMPERATURE,
                                                                         "alpha": ALPHA}, epochs)
    return student


def interleaved_ms(paths, sample, rounds=5):
    """Median latency of each file on `sample`, its runs interleaved with the others' (1 thread)."""
    from keras_compress.runtime.timing import latencies

    runners = {key: kc.load(path, threads=1) for key, path in paths.items()}
    times = {key: [] for key in paths}
    for _ in range(rounds):
        for key, runner in runners.items():
            times[key].extend(latencies(runner, sample, warmup=3, runs=40))
    return {key: float(np.median(values) * 1000) for key, values in times.items()}


TARGETS = ("latency", "size", "size+weights", "float size", "float size+weights")


def one_seed(name, seed, quick, latency_cache, kinds=TARGETS):
    _, size, channels, _, tune_epochs = MODELS[name]
    train, validation = kc.datasets.digits(size=size, channels=channels, seed=seed)
    if quick:
        train = (train[0][:400], train[1][:400])
        tune_epochs = 1
    model = trained(name, seed, train, quick)
    work = tempfile.mkdtemp(prefix=f"kc-bench-{name}-{seed}-")
    os.makedirs(os.path.join(work, "uniform"))
    dense, _ = file_of(model, "float32", train, work)
    dense_accuracy = argmax_accuracy(validation[1], model.predict(validation[0], verbose=0))
    rows, uniforms = [], {}
    fifteenth = kc.Target(size_kb=dense["bytes"] / 15 / 1024)
    sixth = kc.Target(size_kb=dense["bytes"] / 6 / 1024)
    for kind, target, techniques, precision in (
            ("latency", kc.Target(latency_ms=0.5 * dense["ms"]), ("filters",), "float32"),
            ("size", fifteenth, ("filters", "int8"), "int8"),
            ("size+weights", fifteenth, ("filters", "weights", "int8"), "int8"),
            ("float size", sixth, ("filters",), "float32"),
            ("float size+weights", sixth, ("filters", "weights"), "float32")):
        if kind not in kinds:
            continue
        folder = os.path.join(work, kind)
        os.makedirs(folder)
        if kind == "latency" and latency_cache.get(name):  # same architecture: the scan is read back
            shutil.copy(latency_cache[name], folder)
        started = time.perf_counter()
        try:
            result = kc.compress(model, train, validation, target=target, techniques=techniques,
                                 epochs=tune_epochs, batch_size=BATCH, learning_rate=LEARNING_RATE,
                                 temperature=TEMPERATURE, alpha=ALPHA, ratios=RATIOS, directory=folder,
                                 verbose=0)
        except ValueError as refused:  # out of reach for both sides: the same largest share
            print(f"{name} seed {seed} {kind}: {refused}", flush=True)
            rows.append({"model": name, "seed": seed, "target": kind, "refused": str(refused)})
            continue
        took = time.perf_counter() - started
        if kind == "latency" and name not in latency_cache:  # kept beyond this seed's folder
            scan = next(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("latency-"))
            latency_cache[name] = shutil.copy(scan, tempfile.mkdtemp(prefix="kc-bench-scan-"))
        if target not in uniforms:  # the size targets share one uniform chain
            share, small = uniform(model, target, precision, train, os.path.join(work, "uniform"))
            fine_tuned(small, model, train, tune_epochs, seed)
            measured, artifact = file_of(small, precision, train, os.path.join(work, "uniform"))
            kept = shutil.copy(artifact.path, os.path.join(work, f"uniform-{kind}.tflite"))
            uniforms[target] = share, kept, not target.missed(measured)
        share, final, uniform_met = uniforms[target]
        both = {"kc": result.artifact.path, "uniform": final}
        ms = interleaved_ms(both, validation[0][:1])
        accuracy = {"kc": result.measured["accuracy"],
                    "uniform": argmax_accuracy(validation[1], kc.load(final).predict(validation[0]))}
        rows.append({"model": name, "seed": seed, "target": kind, "bound": target.values(target.bounds()),
                     "dense_ms": dense["ms"], "dense_kib": dense["bytes"] / 1024,
                     "dense_accuracy": dense_accuracy, "kc_ms": ms["kc"], "uniform_ms": ms["uniform"],
                     "kc_kib": os.path.getsize(both["kc"]) / 1024,
                     "uniform_kib": os.path.getsize(final) / 1024,
                     "kc_accuracy": accuracy["kc"], "uniform_accuracy": accuracy["uniform"],
                     "kc_plan": result.plan, "kc_sparsity": result.sparsity, "uniform_share": share,
                     "met": result.met, "uniform_met": uniform_met,
                     "seconds": took, "timings": result.timings})
        print(rows[-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return rows


def _spread(values, scale=1.0, digits=4):
    values = scale * np.array(values)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def summary(rows):
    lines = ["| model | target | bound | kc measured | uniform measured | kc accuracy | uniform accuracy | "
             "kc - uniform (pt) | dense accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    timings = ["| model | target | seconds (mean) | analysis | allocation | fine-tuning | measurement |",
               "|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(row["model"] for row in rows):
        for kind in TARGETS:
            chosen = [row for row in rows if row["model"] == model and row["target"] == kind
                      and "refused" not in row]
            refused = sum("refused" in row for row in rows if row["model"] == model and row["target"] == kind)
            if refused:
                lines.append(f"| {model} | {kind} | out of reach in {refused} seed(s) | | | | | | |")
            if not chosen:
                continue
            unit = "ms" if kind == "latency" else "kib"
            kc_values = ", ".join(f"{row['kc_' + unit]:.3f}" + ("" if row["met"] else " (missed)")
                                  for row in chosen)
            uniform_values = ", ".join(f"{row['uniform_' + unit]:.3f}"
                                       + ("" if row["uniform_met"] else " (missed)") for row in chosen)
            gap = [row["kc_accuracy"] - row["uniform_accuracy"] for row in chosen]
            lines.append(f"| {model} | {kind} | {', '.join(row['bound'] for row in chosen)} | {kc_values} | "
                         f"{uniform_values} | {_spread([row['kc_accuracy'] for row in chosen])} | "
                         f"{_spread([row['uniform_accuracy'] for row in chosen])} | {_spread(gap, 100, 2)} | "
                         f"{_spread([row['dense_accuracy'] for row in chosen])} |")
            stages = [np.mean([row["timings"].get(stage, 0) for row in chosen])
                      for stage in ("analysis", "allocation", "fine_tuning", "measurement")]
            timings.append(f"| {model} | {kind} | {np.mean([row['seconds'] for row in chosen]):.0f} | "
                           + " | ".join(f"{value:.0f}" for value in stages) + " |")
    return "\n".join(lines + [""] + timings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--quick", action="store_true",
                        help="2 training epochs, 400 rows, 1 fine-tuning epoch")
    args = parser.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    rows, cache = [], {}
    for name in args.models:
        for seed in args.seeds:
            rows.extend(one_seed(name, seed, args.quick, cache, args.targets))
    print(summary(rows))


if __name__ == "__main__":
    main()
