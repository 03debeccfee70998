"""The demo pipeline on the bundled digits: dense, pruned two ways, shrunk, and distilled."""

import os

from keras_compress import datasets, pruning
from keras_compress._keras import keras
from keras_compress._size import gzipped_size
from keras_compress.distillation import Distiller

__all__ = ["run_demo", "format_table", "digits_cnn", "digits_student"]


def digits_cnn(input_shape=(8, 8, 1), seed=0):
    """A small CNN for the 8x8 digits, with BatchNormalization (logits out)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10),
    ], name="digits_cnn")


def digits_student(input_shape=(8, 8, 1), seed=1):
    """A student about 10x smaller than `digits_cnn` (logits out)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(10),
    ], name="digits_student")


def _compile(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _save(model, folder, name):
    path = os.path.join(folder, f"{name}.keras")
    partial = os.path.join(folder, f".{name}.partial.keras")
    model.save(partial)
    os.replace(partial, path)
    return path


def _row(name, model, data, baseline_size=None):
    x_test, y_test = data
    _compile(model)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    report = pruning.sparsity(model)
    size = gzipped_size(model)
    return {"model": name, "accuracy": float(accuracy), "params": model.count_params(),
            "nonzero_params": report.nonzero_params, "sparsity": report.total_sparsity,
            "gzipped_bytes": size, "size_ratio": (baseline_size or size) / size}


def run_demo(out_dir="demo_out", *, epochs=8, fine_tune_epochs=6, verbose=1):
    """Trains a CNN, prunes copies two ways (shrinking the filter-pruned one), distills a small
    student from it, saves the models to `out_dir` and returns the table rows."""
    if epochs < 1 or fine_tune_epochs < 2:
        raise ValueError(f"epochs must be >= 1 and fine_tune_epochs >= 2, got {epochs}, "
                         f"{fine_tune_epochs}")
    os.makedirs(out_dir, exist_ok=True)
    (x, y), test = datasets.digits()
    fit_verbose = 2 if verbose else 0

    def say(message):
        if verbose:
            print(message, flush=True)

    say(f"Training the dense CNN on {len(x)} digits for {epochs} epochs")
    dense = _compile(digits_cnn())
    dense.fit(x, y, epochs=epochs, batch_size=32, verbose=fit_verbose)
    rows = [_row("dense", dense, test)]
    _save(dense, out_dir, "dense")

    variants = [
        ("weight 80% (global)", "weight_80", dict(granularity="weight", scope="global"), 0.8),
        ("filter 50% + shrink", "filter_50_shrunk", dict(granularity="filter", scope="layer"), 0.5),
    ]
    end_epoch = fine_tune_epochs - 1
    for label, filename, options, target in variants:
        say(f"Pruning a copy: {label}, {fine_tune_epochs} epochs of fine-tuning")
        schedule = pruning.PolynomialDecay(0.0, target, begin_epoch=0, end_epoch=end_epoch)
        pruned = _compile(pruning.prune(dense, schedule, **options))
        pruned.fit(x, y, epochs=fine_tune_epochs, batch_size=32, verbose=fit_verbose,
                   callbacks=[pruning.PruningCallback()])
        model = pruning.strip(pruned)
        if options["granularity"] == "filter":
            model = pruning.shrink(model)
        rows.append(_row(label, model, test, baseline_size=rows[0]["gzipped_bytes"]))
        _save(model, out_dir, filename)
    say(f"Training a {dense.count_params() // digits_student().count_params()}x smaller student "
        f"for {epochs} epochs, from scratch and distilled from the dense CNN")
    scratch = _compile(digits_student())
    scratch.fit(x, y, epochs=epochs, batch_size=32, verbose=fit_verbose)
    rows.append(_row("student (scratch)", scratch, test, baseline_size=rows[0]["gzipped_bytes"]))
    distiller = Distiller(student=digits_student(), teacher=dense)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.1, temperature=4.0)
    distiller.fit(x, y, epochs=epochs, batch_size=32, verbose=fit_verbose)
    rows.append(_row("student (distilled)", distiller.student, test, baseline_size=rows[0]["gzipped_bytes"]))
    _save(distiller.student, out_dir, "student_distilled")
    say(f"Models saved in {os.path.abspath(out_dir)}")
    return rows


def format_table(rows):
    """The demo's rows as a text table."""
    header = f"{'model':<22}{'accuracy':>9}{'params':>10}{'nonzero':>10}{'sparsity':>10}" \
             f"{'gzipped':>11}{'smaller':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['model']:<22}{r['accuracy']:>9.2%}{r['params']:>10,}{r['nonzero_params']:>10,}"
                     f"{r['sparsity']:>10.1%}{r['gzipped_bytes'] / 1024:>9.1f}KB{r['size_ratio']:>8.1f}x")
    return "\n".join(lines)
