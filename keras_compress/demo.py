"""The whole pipeline on the bundled digits, on Keras 3 (the TensorFlow or JAX backend that
KERAS_BACKEND names): teacher, distilled student, pruned two ways, quantization-aware, clustered
(on the student's tf_keras twin: clustering is tf_keras-only), exported, verified and
benchmarked, with a report."""

import os
import shutil
import tempfile
import time

from keras_compress import _keras, clustering, datasets, pruning, quantization
from keras_compress._flavour import keras_for
from keras_compress._tensorrt import require_tensorrt
from keras_compress.benchmark import benchmark
from keras_compress.distillation import Distiller
from keras_compress.export import export

__all__ = ["run_demo", "digits_cnn", "digits_student", "DemoResult"]

# (teacher epochs, distillation epochs, pruning fine-tune epochs, QAT epochs, timed runs)
_SETTINGS = {False: (10, 12, 6, 2, 50), True: (3, 4, 2, 1, 10)}


def digits_cnn(input_shape=(8, 8, 1), seed=0, keras=_keras.keras):
    """A small CNN for the 8x8 digits, with BatchNormalization (logits out), built with `keras`
    (tf_keras by default, or Keras 3)."""
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


def digits_student(input_shape=(8, 8, 1), seed=1, units=32, keras=_keras.keras):
    """A student about 10x smaller than `digits_cnn` (logits out); `units=48` makes it 7x."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(units, activation="relu"),
        layers.Dense(10),
    ], name="digits_student")


def _compile(model):
    keras = keras_for(model).keras
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class DemoResult:
    """What the demo made: the benchmark `report`, artifact paths by variant name, the
    report files, and `tensorrt` (built engines, or why they were skipped)."""

    def __init__(self, report, artifacts, files, tensorrt):
        self.report, self.artifacts, self.files, self.tensorrt = report, artifacts, files, tensorrt


def _check_out_dir(out_dir, overwrite):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a folder: choose another --out.")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty: pass --overwrite (overwrite=True) to "
                              "replace it, or choose another --out.")


def run_demo(out_dir="demo_out", *, quick=False, overwrite=False, verbose=1):
    """Runs the pipeline and writes artifacts, `report.md`, `report.json` and `report.png` to
    `out_dir` (built in a temporary folder beside it, moved into place at the end).

    Returns a `DemoResult`.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    _check_out_dir(out_dir, overwrite)
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"The folder {parent} does not exist: create it first.")
    teacher_epochs, distill_epochs, prune_epochs, qat_epochs, runs = _SETTINGS[bool(quick)]
    start = time.perf_counter()
    fit_verbose = 2 if verbose else 0

    def say(step, message):
        if verbose:
            print(f"[{step}/8 {time.perf_counter() - start:5.0f}s] {message}", flush=True)

    import keras

    (x, y), (x_test, y_test) = datasets.digits()
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".partial", dir=parent)
    try:
        say(1, f"Training the teacher CNN on {len(x)} digits for {teacher_epochs} epochs "
               f"(Keras {keras.version()}, {keras.backend.backend()} backend)")
        teacher = _compile(digits_cnn(keras=keras))
        teacher.fit(x, y, epochs=teacher_epochs, batch_size=32, verbose=fit_verbose)

        student = digits_student(keras=keras)
        say(2, f"Distilling a {teacher.count_params() // student.count_params()}x smaller student "
               f"for {distill_epochs} epochs")
        distiller = Distiller(student=student, teacher=teacher)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"], alpha=0.1,
                          temperature=4.0)
        distiller.fit(x, y, epochs=distill_epochs, batch_size=32, verbose=fit_verbose)
        student = distiller.student

        say(3, f"Pruning the student: 70% of its weights, one global ranking, {prune_epochs} epochs")
        schedule = pruning.PolynomialDecay(0.0, 0.7, begin_epoch=0, end_epoch=prune_epochs - 1)
        pruned = _compile(pruning.prune(student, schedule, granularity="weight", scope="global"))
        pruned.fit(x, y, epochs=prune_epochs, batch_size=32, verbose=fit_verbose,
                   callbacks=[pruning.PruningCallback()])
        student_pruned = pruning.strip(pruned)

        say(4, f"Pruning half the teacher's filters and shrinking it, {prune_epochs} epochs")
        schedule = pruning.PolynomialDecay(0.0, 0.5, begin_epoch=0, end_epoch=prune_epochs - 1)
        filtered = _compile(pruning.prune(teacher, schedule, granularity="filter"))
        filtered.fit(x, y, epochs=prune_epochs, batch_size=32, verbose=fit_verbose,
                     callbacks=[pruning.PruningCallback()])
        teacher_shrunk = pruning.shrink(pruning.strip(filtered))

        say(5, f"Quantization-aware training of the pruned student (its zeros kept), {qat_epochs} epochs")
        student_int8 = _compile(quantization.quantize_aware(student_pruned))
        student_int8.fit(x, y, epochs=qat_epochs, batch_size=32, verbose=fit_verbose)

        say(6, f"Clustering the pruned student to 8 weight values per layer (zeros kept) and QAT, "
               f"{qat_epochs} + {qat_epochs} epochs, on its tf_keras twin (clustering is tf_keras-only)")
        twin = digits_student(keras=_keras.keras)
        twin.set_weights(student_pruned.get_weights())
        clustered = _compile(clustering.cluster(twin, 8))
        clustered.fit(x, y, epochs=qat_epochs, batch_size=32, verbose=fit_verbose)
        student_clustered = _compile(quantization.quantize_aware(clustering.strip(clustered)))
        student_clustered.fit(x, y, epochs=qat_epochs, batch_size=32, verbose=fit_verbose)

        say(7, "Exporting each model to ONNX and TFLite, verified against it")
        models = {"teacher": teacher, "teacher shrunk": teacher_shrunk, "student": student,
                  "student pruned": student_pruned, "student pruned int8": student_int8,
                  "student pruned clustered int8": student_clustered}
        artifacts = {}
        for label, model in models.items():
            stem = label.replace(" ", "_")
            model.save(os.path.join(work, f"{stem}.keras"))
            for suffix in (".onnx", ".tflite"):
                artifacts[f"{label} {suffix[1:]}"] = export(model, os.path.join(work, stem + suffix),
                                                            sample_data=x_test)
        try:
            require_tensorrt()
            for label in ("teacher", "student pruned int8"):
                stem = label.replace(" ", "_")
                options = {"precision": "fp16"} if label == "teacher" else {}
                artifacts[f"{label} tensorrt"] = export(models[label], os.path.join(work, stem + ".engine"),
                                                        sample_data=x_test, **options)
            tensorrt = "built: " + ", ".join(name for name in artifacts if name.endswith("tensorrt"))
        except ImportError as error:
            tensorrt = f"skipped: {error}"
        say(7, f"TensorRT engines {tensorrt}")

        say(8, f"Benchmarking {len(artifacts) + 1} variants against the teacher (keras)")
        variants = dict({"teacher keras": teacher}, **artifacts)
        report = benchmark(variants, (x_test, y_test), batch_sizes=(1, 32), runs=runs, warmup=5,
                           verbose=verbose)
        with open(os.path.join(work, "report.md"), "w") as file:
            file.write(report.to_markdown() + "\n\nTensorRT: " + tensorrt + "\n")
        report.to_json(os.path.join(work, "report.json"))
        report.plot(os.path.join(work, "report.png"))
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    relocated = {name: os.path.join(out_dir, os.path.basename(a.path)) for name, a in artifacts.items()}
    files = {name: os.path.join(out_dir, f"report.{name}") for name in ("md", "json", "png")}
    say(8, f"Done: artifacts and report in {out_dir}")
    return DemoResult(report, relocated, files, tensorrt)
