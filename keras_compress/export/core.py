"""`export`: one entry point for every format, atomic and verified."""

import importlib.metadata
import os
import shutil
import warnings

import numpy as np

from keras_compress._files import partial_folder
from keras_compress._flavour import check_graph_model
from keras_compress._types import Arrays, Data, KerasModel, PathLike
from keras_compress.errors import ExportError, ExportVerificationError
from keras_compress.export.artifact import Artifact, path_size
from keras_compress.export.calibration import calibration_batches
from keras_compress.export.checks import ExportRequest
from keras_compress.export.signature import sample_inputs
from keras_compress.export.speed import speed_against_float, warn_if_slower
from keras_compress.export.verify import check_parity, parity
from keras_compress.formats import CALIBRATION_METHODS, FORMATS, IO_TYPES, QUANTIZE_MODES, by_name, for_path
from keras_compress.pruning.prune import pruning_wrappers
from keras_compress.quantization.qat import is_quantize_aware
from keras_compress.runtime.keras_runner import KerasRunner
from keras_compress.runtime.load import load
from keras_compress.runtime.metadata import artifact_metadata
from keras_compress.runtime.tensors import as_list, normalize_inputs

__all__ = ["export", "FORMATS", "QUANTIZE_MODES", "IO_TYPES"]

_PRECISIONS = {None: "float32", "dynamic": "int8_dynamic", "static": "int8", "float16": "float16"}
_DEFAULT_BATCH_SIZES = (1, 8, 32)


def _format_of(path, name):
    if name is not None:
        try:
            return by_name(name)
        except ValueError as error:
            raise ExportError(str(error)) from None
    fmt = for_path(path)
    if fmt is None:
        suffixes = ", ".join(suffix for f in FORMATS.values() for suffix in f.suffixes)
        raise ExportError(f"{path}: unknown suffix {os.path.splitext(path)[1]!r}. "
                          f"Use {suffixes}, a folder name "
                          "without suffix for a SavedModel, or pass format=.")
    return fmt


def _join(words, last="and"):
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _check_options_apply(fmt, given):
    """Each export option that was given must be one this format takes."""
    for option in given:
        if option not in fmt.export_options:
            takers = [name for name, other in FORMATS.items() if option in other.export_options]
            suffixes = [FORMATS[name].suffixes[0] for name in takers]
            raise ExportError(f"{option} applies to "
                              f"{_join([FORMATS[name].title for name in takers])} exports, "
                              f"not {fmt.title}; use a {_join(suffixes, 'or')} path.")


def _versions(libraries):
    versions = {}
    for library in libraries:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return versions


def _empty_file(path):
    """An empty regular file, as `tempfile.mkstemp` makes for a path to export to: taken as it is."""
    return os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) == 0


def _move_into_place(partial, path, overwrite):
    """Moves the finished artifact to `path`; without `overwrite`, fails if something got
    there first (another process exporting to the same path)."""
    if overwrite and os.path.isdir(path):  # a SavedModel folder being replaced
        old = partial + ".old"
        os.rename(path, old)
        os.rename(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    elif overwrite:
        os.replace(partial, path)
    elif os.path.isdir(partial):
        try:
            os.rename(partial, path)  # fails on a file or a non-empty folder
        except OSError:
            raise FileExistsError(f"{path} appeared while exporting (another process?): pass "
                                  "overwrite=True (--overwrite) to replace it.") from None
    else:
        try:
            os.link(partial, path)  # atomic, and fails if the path exists
        except FileExistsError:
            raise FileExistsError(f"{path} appeared while exporting (another process?): pass "
                                  "overwrite=True (--overwrite) to replace it.") from None
        except OSError:  # file systems without hard links
            if os.path.exists(path):
                raise FileExistsError(f"{path} appeared while exporting: pass overwrite=True to replace "
                                      "it.") from None
            os.replace(partial, path)


def _check_quantization(model, quantize, calibration_data, calibrate_method, io):
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize must be None or one of {QUANTIZE_MODES}, got {quantize!r}")
    qat = is_quantize_aware(model)
    if qat and quantize:
        raise ExportError(f"Model {model.name!r} is quantization-aware: it exports to int8 by itself. "
                          "Leave quantize=None.")
    if calibration_data is not None and quantize != "static":
        raise ExportError('calibration_data is only used with quantize="static".')
    if calibrate_method not in CALIBRATION_METHODS:
        raise ExportError(f"calibrate_method must be one of {CALIBRATION_METHODS}, got {calibrate_method!r}")
    if io not in IO_TYPES:
        raise ExportError(f"io must be one of {IO_TYPES}, got {io!r}")
    if io != "float" and not (quantize == "static" or qat):
        raise ExportError(f'io="{io}" applies to full-integer TFLite exports: quantize="static" or a '
                          "quantization-aware model, to a .tflite path.")


def _check_weights_finite(model):
    """Training that diverged leaves NaN or Inf in the weights; converters crash on them (TFLite's
    on a quantization-aware model's NaN ranges, with a segmentation fault)."""
    values = [(layer.name, np.asarray(weight.numpy())) for layer in model.layers for weight in layer.weights]
    broken = list(dict.fromkeys(name for name, value in values
                                if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all()))
    if broken:
        raise ExportError(f"Layers {', '.join(broken)} of {model.name!r} hold NaN or Inf weights (training "
                          "diverged): nothing was exported. Train again (a lower learning rate, or from a "
                          "checkpoint saved before the loss became NaN), then export.")


def _check_samples(samples, inputs):
    if not len(samples[0]):
        raise ExportError("sample_data has no rows: verification needs at least one input row.")
    for array, info in zip(samples, inputs):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise ExportError(f"sample_data holds NaN or Inf in input {info.name!r}: verification compares "
                              "outputs on finite inputs only. Pass finite sample_data.")


def _check_request(model, fmt, *, verify, opset, quantize, calibration_data, calibrate_method, io, precision,
                   batch_sizes, sparse_weights):
    """Refuses, before any work, options that are wrong or do not apply to `fmt`, and what the
    format's `check_export` hook refuses."""
    if verify not in (True, False, "warn"):
        raise ValueError(f'verify must be True, False or "warn", got {verify!r}')
    if not isinstance(sparse_weights, bool):
        raise ExportError(f"sparse_weights must be True or False, got {sparse_weights!r}")
    given = {"opset": opset is not None, "quantize": quantize is not None,
             "calibration_data": calibration_data is not None,
             "calibrate_method": calibrate_method != "minmax",
             "io": io != "float", "precision": precision is not None,
             "batch_sizes": tuple(batch_sizes) != _DEFAULT_BATCH_SIZES, "sparse_weights": sparse_weights}
    _check_options_apply(fmt, [option for option, is_given in given.items() if is_given])
    if opset is not None and (not isinstance(opset, int) or not 9 <= opset <= 21):
        raise ExportError(f"opset must be an int in [9, 21], got {opset!r}")
    _check_quantization(model, quantize, calibration_data, calibrate_method, io)
    fmt.call("check_export", model, ExportRequest(quantize=quantize, precision=precision,
                                                  batch_sizes=tuple(batch_sizes),
                                                  quantize_aware=is_quantize_aware(model)))


def _check_destination(path, fmt, overwrite):
    """`(replace, folder)`: whether the export may replace what is at `path`, and the folder it
    goes to; refuses a path it must not write."""
    made_for_it = _empty_file(path) and not fmt.is_folder  # an empty file made for the artifact
    replace = overwrite or made_for_it
    if os.path.exists(path) and not replace:
        raise FileExistsError(f"{path} exists: pass overwrite=True (--overwrite) to replace it.")
    if os.path.exists(path) and not made_for_it and not fmt.replaceable(path):
        kind = "a folder" if os.path.isdir(path) else "a file"
        raise ExportError(f"{path} is {kind} that holds no {fmt.title} model: overwrite replaces only a "
                          "model file of the same kind (read from its content), never other data. Choose "
                          "another path, or move it away yourself.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The folder {folder} does not exist: create it first.")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"The folder {folder} is not writable: export to another folder.")
    return replace, folder


def _verification_samples(model, source, sample_data, calibration):
    """`(samples, reference outputs)`: `sample_data`, else rows of the calibration data, else
    random inputs, which must suit the model (finite outputs)."""
    if sample_data is not None:
        samples = sample_data
    elif calibration is not None:
        samples = [np.concatenate([batch[i] for batch in calibration])[:64]
                   for i in range(len(source.inputs))]
    else:
        samples = sample_inputs(model)
    samples = normalize_inputs(samples, source.inputs, source._input_dtypes)
    _check_samples(samples, source.inputs)
    generated = sample_data is None and calibration is None
    try:
        reference = source.predict(samples)
        finite = all(np.isfinite(output).all() for output in as_list(reference))
        problem = None if finite else "the model's outputs are NaN or Inf"
    except Exception as error:
        if not generated:
            raise
        problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
    if generated and problem:
        raise ExportError(f"The random sample inputs generated to verify {model.name!r} do not suit it "
                          f"({problem}): pass sample_data=, a few rows of real inputs.")
    if calibration is not None and not all(np.isfinite(output).all() for batch in calibration
                                           for output in as_list(source.predict(batch))):
        raise ExportError(f"Model {model.name!r} outputs NaN or Inf on the calibration data: static "
                          "quantization has no ranges to calibrate. Check the model (a diverged training, "
                          "inputs it was not trained for) before quantizing it.")
    return samples, reference


def _precision_written(model, fmt, quantize, precision, settings):
    """The precision of the written file: float32 where dynamic quantization quantized no weight
    (the exporter recorded it so in the file), with a warning saying why. An int8 file whose int8
    weights are less than half of the model's warns too."""
    if precision == "int8" and "int8_weights" in settings:
        total = sum(int(np.prod(weight.shape)) for weight in model.weights if len(weight.shape) >= 2)
        int8 = settings["int8_weights"]["parameters"]
        if total and int8 < total / 2:
            warnings.warn(f"The {fmt.title} file of model {model.name!r} is int8 in name only: {int8:,} of "
                          f"its {total:,} weights ({int8 / total:.1%}) are int8, the rest float (layers of "
                          "your own that quantization does not reach into, or layers the converter keeps "
                          "float).", stacklevel=3)
    if quantize != "dynamic" or settings["int8_weights"]["tensors"]:
        return precision
    warnings.warn(f"quantize={quantize!r} quantized no weight of model {model.name!r}: the {fmt.title} "
                  f"artifact is float32, and says so ({fmt.nothing_quantized}). Try "
                  'quantize="static" or keep the float export.', stacklevel=3)
    return "float32"


def _verified(model, fmt, runner, source, reference, samples, precision, verify):
    """The parity of the artifact's outputs with the model's (None without `verify`); a mismatch
    raises, or warns with verify="warn"."""
    if not verify:
        return None
    names = [info.name for info in source.outputs]
    result = parity(as_list(reference), as_list(runner.predict(samples)), names)
    try:
        check_parity(result, precision, f"{fmt.title} export of {model.name!r}")
    except ExportVerificationError as error:
        if verify is True:
            raise
        warnings.warn(str(error), stacklevel=3)
    return result


def export(model: KerasModel, path: PathLike, *, format: str | None = None,
           sample_data: Arrays | None = None, verify: bool = True, overwrite: bool = False,
           opset: int | None = None, quantize: str | None = None, calibration_data: Data = None,
           calibrate_method: str = "minmax", io: str = "float", compare_speed: bool = True,
           precision: str | None = None, batch_sizes: tuple[int, ...] = (1, 8, 32),
           sparse_weights: bool = False) -> Artifact:
    """Exports a Keras 3 or tf_keras model and checks the result against it.

    The format comes from the suffix: `.onnx` (ONNX Runtime), `.tflite` (LiteRT),
    `.keras`, `.h5` (legacy HDF5), `.engine`/`.plan` (TensorRT, NVIDIA GPU only), or no suffix for a
    SavedModel folder; `format=` overrides it. The
    artifact is written under a temporary name beside `path`, run in its own
    runtime against the model on `sample_data` (or, in that order, the calibration
    data or random inputs of the right shape), and only then moved to `path`. On
    any failure nothing is left at `path`.

    Post-training quantization (ONNX and TFLite): `quantize="dynamic"` (int8 weights,
    activations quantized at run time), `"static"` (int8 weights and activations,
    ranges calibrated on `calibration_data`) or `"float16"`. A quantization-aware
    model (`keras_compress.quantization.quantize_aware`) exports to int8 without
    calibration: TFLite full integer, ONNX with explicit symmetric Q/DQ weights.
    Quantized artifacts record what was quantized (`settings["int8_weights"]`: int8
    weight tensors and parameters); a dynamic quantization that quantized no weight
    warns and records float32 as the precision. They are timed against their float32
    twin on this machine at batch 1 and 32; one that is slower gets a warning naming
    the batch sizes, and `settings["speed"]` says by how much. A QAT ONNX file is also
    timed in ONNX Runtime with default session options against Q/DQ run as float math
    (`session.disable_quant_qdq=1`), recorded in its metadata
    (`settings["onnxruntime_speed"]`), with a warning when the default is much slower.

    Tolerances (`from keras_compress.export import TOLERANCES`), relative to max(1, largest
    output magnitude): float32 max |diff| 1e-4 (runtimes differ only by summation
    order); float16 max |diff| 2e-2; int8 and int8_dynamic mean |diff| 5e-2, and
    top-1 agreement at least 90% when 50 or more rows are compared.

    Args:
        model: a Sequential or functional model, Keras 3 (TensorFlow or JAX backend) or tf_keras
            (strip pruning wrappers first). A JAX-backend model goes to ONNX and TFLite through a
            TensorFlow-backend rebuild of its `.keras` file (its own layers must be registered, or
            TFLite goes through jax2tf, slower, with a warning), to a SavedModel through jax2tf.
        path: where to write the artifact.
        format: "onnx", "tflite", "saved_model", "keras", "h5" or "tensorrt"; None picks it from `path`.
        sample_data: inputs for verification (an array, a list, or a dict by input name).
        verify: True raises `ExportVerificationError` on mismatch, "warn" warns, False skips.
        overwrite: replace an existing artifact at `path`.
        opset: ONNX opset (default 17).
        quantize: None, "dynamic", "static" or "float16" (ONNX and TFLite).
        calibration_data: representative inputs for "static": an array, a list or dict
            of arrays, a `tf.data.Dataset` or an iterable of batches (at most 512 rows used).
        calibrate_method: ONNX static calibration, "minmax", "entropy" or "percentile".
        io: "float", "int8" or "uint8" model inputs/outputs for full-integer TFLite.
        compare_speed: time a quantized artifact against its float32 twin.
        precision: TensorRT only, "fp32" (default) or "fp16"; int8 engines come from a
            quantization-aware model or quantize="static".
        batch_sizes: TensorRT only, (min, opt, max) batch of the engine's profile.
        sparse_weights: TFLite only, store weights with many zeros (a pruned model's) in TFLite's
            sparse encoding: the file stays small uncompressed. `settings["sparse_tensors"]` counts
            them; a file LiteRT's XNNPack delegate cannot run (sparse int8 weights, some
            fully-connected graphs) warns and records `settings["xnnpack"] = False`.

    Returns:
        An `Artifact`.

    Example:
        >>> import numpy as np, tempfile, os, keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")], name="tiny")
        >>> artifact = kc.export(model, os.path.join(tempfile.mkdtemp(), "tiny.onnx"))
        >>> artifact.format, artifact.parity["scores"]["max_abs_diff"] < 1e-5
        ('onnx', True)
    """
    check_graph_model(model, action="export")
    path = os.fspath(path)
    path = path.rstrip(os.sep) or path
    fmt = _format_of(path, format)
    _check_request(model, fmt, verify=verify, opset=opset, quantize=quantize,
                   calibration_data=calibration_data, calibrate_method=calibrate_method, io=io,
                   precision=precision, batch_sizes=batch_sizes, sparse_weights=sparse_weights)
    replace, folder = _check_destination(path, fmt, overwrite)
    if pruning_wrappers(model):
        raise ExportError("The model still has pruning wrappers: export keras_compress.pruning.strip(model).")
    _check_weights_finite(model)
    source = KerasRunner(model)
    calibration = (calibration_batches(calibration_data, source.inputs, source._input_dtypes)
                   if quantize == "static" else None)
    samples, reference = _verification_samples(model, source, sample_data, calibration)
    qat = is_quantize_aware(model) and "quantize" in fmt.export_options
    engine_precision = precision
    precision = "int8" if qat else "float16" if precision == "fp16" else _PRECISIONS[quantize]
    # Each format's exporter gets the options it takes (calibration data as batches).
    options = {"opset": opset, "quantize": quantize, "calibration_data": calibration,
               "calibrate_method": calibrate_method, "io": io, "precision": engine_precision,
               "batch_sizes": tuple(batch_sizes), "sparse_weights": sparse_weights}
    options = {name: value for name, value in options.items() if name in fmt.export_options}

    with partial_folder(folder) as partial:
        target = os.path.join(partial, "artifact" + (fmt.suffixes[0] if fmt.suffixes else ""))
        settings = fmt.export(model, target, artifact_metadata(model, fmt.name, {"precision": precision}),
                              **options)
        precision = _precision_written(model, fmt, quantize, precision, settings)
        if compare_speed:
            settings = fmt.call("after_export", model, target, settings, samples) or settings
        timed = bool(quantize) and compare_speed and fmt.timed_against_float and precision != "float32"
        runner = load(target) if verify or timed else None
        result = _verified(model, fmt, runner, source, reference, samples, precision, verify)
        if timed:
            twin = os.path.join(partial, "float32" + fmt.suffixes[0])
            fmt.export(model, twin, artifact_metadata(model, fmt.name, {"precision": "float32"}),
                       **{name: value for name, value in options.items() if name == "opset"})
            settings["speed"] = speed_against_float(runner, load(twin), samples)
            warn_if_slower(settings["speed"], precision, fmt, target, settings, model)
        del runner
        if os.path.exists(path) and not (_empty_file(path) or fmt.replaceable(path)):  # changed meanwhile
            raise FileExistsError(f"{path} appeared while exporting, or changed, and holds no {fmt.title} "
                                  "model: it was left as it is. Choose another path.")
        _move_into_place(target, path, replace)
    return Artifact(path=path, format=fmt.name, size_bytes=path_size(path), precision=precision,
                    source=model.name, parity=result, versions=_versions(fmt.libraries), settings=settings)
