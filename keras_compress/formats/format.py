"""`Format`: everything the package knows about one kind of artifact, in one declaration."""

import dataclasses
import functools
import importlib
import os

__all__ = ["Format"]


def _resolve(reference):
    if callable(reference):
        return reference
    module, _, attributes = reference.partition(":")
    return functools.reduce(getattr, attributes.split("."), importlib.import_module(module))


@dataclasses.dataclass(frozen=True)
class Format:
    """One artifact format.

    Heavy parts (exporter, runner) are named as `"module:attribute"` and imported on use,
    so that reading the registry imports neither TensorFlow nor a runtime.

    Attributes:
        name: the format's name ("onnx", "tflite", ...).
        title: how messages name it ("ONNX", "TFLite", ...).
        suffixes: file suffixes that select it; empty for a folder (SavedModel).
        exporter: `"module:function"` (or the function) of `export(model, path, metadata, **options)`.
        runner: `"module:class"` (or the class) of the `Runner` that runs the artifact.
        libraries: distributions whose versions an artifact records.
        export_options: the `keras_compress.export` options this format takes.
        runner_options: the keyword options its runner takes (`keras_compress.load`).
        holds: `holds(path)`, whether a file or folder holds an artifact of this format.
        runs_on_tensorflow: whether its runner runs in TensorFlow (and so on TensorFlow's threads).
        identifies: whether `holds` tells this format's files from others by their content
            (False: it accepts any file, as TensorRT's engines cannot be read without TensorRT).
        holds_model: `holds_model(path)`, whether it holds a model this format's exporter could
            have written, read from its content (what `overwrite` may replace); None: `holds`.
        weight_counts: `weight_counts(path) -> (parameters, zeros)` read from the file, or None.
        op_counts: `op_counts(path) -> {operator: count}`, or None.
        mac_count: `mac_count(path) -> int or None`, multiply-accumulates per input row of the
            convolutions and matrix products in the file (`keras_compress.benchmark.macs`), or None.
        serve: `serve(path, arrays, threads)`, running the file with the fewest imports (for
            serving-memory measurements), or None to run it through keras_compress.

    Export hooks (`"module:function"`, or None where the format needs none):
        check_export: `check_export(model, request)` refuses, before any work, what this format
            cannot make of `model` with the `keras_compress.export.checks.ExportRequest`.
        after_export: `after_export(model, path, settings, samples) -> settings`, checks or
            timings of the written file, run when the export compares speeds.
        slow_reason: `slow_reason(path, precision, settings) -> str`, why a quantized file of
            this format runs slower than its float32 twin, "" when the file does not say.
        nothing_quantized: why dynamic quantization may leave every weight float in this format.
        timed_against_float: whether a quantized artifact is timed against its float32 twin.
    """

    name: str
    title: str
    suffixes: tuple
    exporter: str
    runner: str
    libraries: tuple
    export_options: tuple = ()
    runner_options: tuple = ()
    holds: object = None
    identifies: bool = True
    runs_on_tensorflow: bool = False
    holds_model: object = None
    weight_counts: object = None
    op_counts: object = None
    mac_count: object = None
    serve: object = None
    check_export: object = None
    after_export: object = None
    slow_reason: object = None
    nothing_quantized: str = ""
    timed_against_float: bool = True

    @property
    def is_folder(self):
        return not self.suffixes

    def replaceable(self, path):
        """Whether `overwrite` may replace what is at `path`: a model of this format, by content."""
        if os.path.isdir(path) != self.is_folder:
            return False
        try:
            return bool((self.holds_model or self.holds)(path))
        except OSError:
            return False

    def identified_in(self, path):
        """Whether `path` holds an artifact of this format, told by its content."""
        if not self.identifies or self.holds is None or os.path.isdir(path) != self.is_folder:
            return False
        try:
            return bool(self.holds(path))
        except OSError:
            return False

    def export(self, model, path, metadata, **options):
        return _resolve(self.exporter)(model, path, metadata, **options)

    def call(self, hook, *args):
        """Runs the export hook named `hook` ("check_export", ...) on `args`; None without one."""
        reference = getattr(self, hook)
        return None if reference is None else _resolve(reference)(*args)

    def open(self, path, **options):
        """A runner for the artifact at `path`; unknown options are refused by name."""
        unknown = sorted(set(options) - set(self.runner_options))
        if unknown:
            raise TypeError(f"{self.name} artifacts take the load options {list(self.runner_options)}, "
                            f"not {unknown}.")
        return _resolve(self.runner)(path, **options)
