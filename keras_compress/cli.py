"""The `keras-compress` command. Each subcommand parses arguments and calls the library."""

import argparse
import contextlib
import os
import sys

from keras_compress.formats import (
    CALIBRATION_METHODS,
    FORMATS,
    IO_TYPES,
    QUANTIZE_MODES,
    TENSORRT_PRECISIONS,
    for_path,
)


@contextlib.contextmanager
def _native_start_up_lines_hidden():
    """Hides what native libraries write straight to the process's stderr while they start
    (TensorFlow's oneDNN and CUDA notices, before its logging can be configured). Python
    errors still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _info(args):
    from keras_compress._environment import environment

    with _native_start_up_lines_hidden():
        info = environment()
    width = max(len(key) for key in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _demo(args):
    from keras_compress.demo import run_demo

    result = run_demo(args.out, quick=args.quick, overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    print(result.report.to_markdown())
    print(f"\nTensorRT: {result.tensorrt}")
    print("Report: " + ", ".join(result.files.values()))
    return 0


def _load_npz(path, flag):
    """`{name: array}` from an .npz (or .npy) file; errors name the flag and the file."""
    import numpy as np

    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder: give an .npz file (numpy.savez(path, name=array)).")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{flag} {path}: no such file.")
    if not os.path.isfile(path):  # a pipe or a device would block or never end
        raise ValueError(f"{flag} {path} is not a regular file: give an .npz file "
                         "(numpy.savez(path, name=array)).")
    try:
        with open(path, "rb") as file:
            loaded = np.load(file, allow_pickle=False)
            arrays = {"x": loaded} if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
        if not all(isinstance(array, np.ndarray) for array in arrays.values()):
            raise ValueError("it holds files that are not arrays")
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{flag} {path} is not a readable NumPy .npz or .npy file ({reason}): save arrays "
                         "with numpy.savez(path, name=array).") from None
    if not arrays:
        raise ValueError(f"{flag} {path} holds no arrays.")
    return arrays


def _arrays(path, flag):
    """The arrays of an .npz file: one array, or a dict by input name."""
    if path is None:
        return None
    arrays = _load_npz(path, flag)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _check_outputs(**paths):
    """Refuses output files that cannot be written, before any work is done."""
    for flag, path in paths.items():
        if path is None:
            continue
        flag = "--" + flag.replace("_", "-")
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path} is a folder: give a file name.")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{flag} {path}: the folder {folder} does not exist.")
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{flag} {path}: the folder {folder} is not writable.")


def _export(args):
    from keras_compress.export import export
    from keras_compress.model_files import load_model

    model = load_model(args.model)
    sample_data = _arrays(args.sample_data, "--sample-data")
    calibration_data = _arrays(args.calibration, "--calibration")
    artifact = export(model, args.output, sample_data=sample_data, verify=not args.no_verify,
                      overwrite=args.overwrite, opset=args.opset, quantize=args.quantize,
                      calibration_data=calibration_data, calibrate_method=args.calibrate_method,
                      io=args.io, precision=args.precision, sparse_weights=args.sparse_weights)
    print(artifact)
    return 0


def _benchmark_data(path, labels_key, flag="--data"):
    """`(x, y)` from an .npz file: the `labels_key` array and the others as inputs."""
    arrays = _load_npz(path, flag)
    if labels_key is not None and labels_key not in arrays:
        raise ValueError(f"{path} has no array {labels_key!r} for --labels; it has {sorted(arrays)}.")
    labels = arrays.pop(labels_key) if labels_key is not None else None
    if not arrays:
        raise ValueError(f"{path} holds no input arrays besides the labels.")
    x = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return (x, labels) if labels is not None else x


def _benchmark(args):
    from keras_compress.benchmark import benchmark

    _check_outputs(markdown=args.markdown, json=args.json, plot=args.plot)

    names = [os.path.basename(os.path.normpath(path)) for path in args.artifacts]
    if len(set(names)) != len(names):
        names = args.artifacts
    data = _benchmark_data(args.data, args.labels)
    if args.threads is not None and any(getattr(for_path(path), "runs_on_tensorflow", False)
                                        for path in args.artifacts):
        import tensorflow as tf  # the command's own process: TensorFlow starts on these threads

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    report = benchmark(dict(zip(names, args.artifacts)), data, batch_sizes=tuple(args.batch_sizes),
                       runs=args.runs, threads=args.threads, memory=not args.no_memory,
                       verbose=0 if args.quiet else 1)
    print(report.to_markdown())
    if args.markdown:
        from keras_compress._files import write_atomically

        def write(target):
            with open(target, "w") as file:
                file.write(report.to_markdown() + "\n")

        write_atomically(args.markdown, write)
    if args.json:
        report.to_json(args.json)
    if args.plot:
        report.plot(args.plot)
    return 0


def _split(x, y, validation_split):
    """`(train, validation)` with the last `validation_split` of the rows for validation."""
    if not 0 < validation_split < 1:
        raise ValueError(f"--validation-split must be in (0, 1), got {validation_split}")
    cut = int(len(y) * (1 - validation_split))

    def rows(part):
        return {key: value[part] for key, value in x.items()} if isinstance(x, dict) else x[part]

    return (rows(slice(None, cut)), y[:cut]), (rows(slice(cut, None)), y[cut:])


def _search(args):
    from keras_compress.model_files import load_model
    from keras_compress.tuning import search

    _check_outputs(json=args.json, plot=args.plot)
    data = _benchmark_data(args.data, args.labels)
    if not isinstance(data, tuple):
        raise ValueError(f"{args.data} needs labels for accuracy: name their array with --labels.")
    train, validation = _split(*data, args.validation_split)
    result = search(load_model(args.model), train, validation, objective=args.objective,
                    max_accuracy_drop=args.max_accuracy_drop, max_trials=args.trials, tuner=args.tuner,
                    directory=args.directory, project_name=args.project_name, overwrite=args.overwrite,
                    epochs=args.epochs, verbose=0 if args.quiet else 1)
    print(result.to_markdown())
    if args.json:
        result.to_json(args.json)
    if args.plot:
        result.plot(args.plot)
    return 0


def _compress(args):
    from keras_compress.compression import Target, compress
    from keras_compress.model_files import load_model

    if args.latency_ms is None and args.size_kb is None and args.macs is None:
        raise ValueError("give the target: --latency-ms, --size-kb and/or --macs.")
    target = Target(latency_ms=args.latency_ms, size_kb=args.size_kb, macs=args.macs, runtime=args.runtime,
                    threads=args.threads)
    _check_outputs(plot=args.plot)
    train = _benchmark_data(args.data, args.labels)
    if not isinstance(train, tuple):
        raise ValueError(f"{args.data} needs labels: name their array with --labels.")
    if args.validation:
        validation = _benchmark_data(args.validation, args.labels, "--validation")
    else:
        train, validation = _split(*train, args.validation_split)
    result = compress(load_model(args.model), train, validation, target=target,
                      techniques=tuple(args.techniques), max_accuracy_drop=args.max_accuracy_drop,
                      epochs=args.epochs, directory=args.output, verbose=0 if args.quiet else 1)
    print(result.report())
    if args.plot:
        result.plot(args.plot)
    return 0


def _check_tensorrt(args):
    from keras_compress.export import check_tensorrt

    check = check_tensorrt(args.onnx)
    print(check)
    return 0 if check.ready else 1


def _inspect(args):
    from keras_compress.inspection import inspect

    print("\n".join(inspect(args.path)))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-compress",
        description="Prune, quantize and distill Keras models, then export and benchmark them.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    info = commands.add_parser("info", help="versions, devices and backends available here")
    info.set_defaults(handler=_info)
    demo = commands.add_parser("demo", help="the whole pipeline on bundled digits data, with a report")
    demo.add_argument("--out", default="demo_out", help="folder for artifacts and report (default: demo_out)")
    demo.add_argument("--quick", action="store_true", help="fewer epochs and timed runs (about a minute)")
    demo.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    demo.add_argument("--quiet", action="store_true", help="no progress output, only the table")
    demo.set_defaults(handler=_demo)
    suffixes = ", ".join(suffix for fmt in FORMATS.values() for suffix in fmt.suffixes)
    export = commands.add_parser("export",
                                 help=f"export a model to {suffixes} or a SavedModel folder, verified")
    export.add_argument("model", help="a .keras or .h5 file, or a SavedModel folder")
    export.add_argument("-o", "--output", required=True,
                        help="the artifact path; its suffix picks the format")
    export.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    export.add_argument("--sample-data", help=".npz file of inputs for verification (one array per input)")
    export.add_argument("--no-verify", action="store_true", help="skip the parity check")
    export.add_argument("--overwrite", action="store_true", help="replace an existing artifact")
    export.add_argument("--quantize", choices=QUANTIZE_MODES,
                        help="post-training quantization (ONNX, TFLite; static also for TensorRT)")
    export.add_argument("--calibration", help=".npz file of representative inputs for --quantize static")
    export.add_argument("--calibrate-method", default="minmax", choices=CALIBRATION_METHODS,
                        help="ONNX static calibration (default minmax)")
    export.add_argument("--io", default="float", choices=IO_TYPES,
                        help="full-integer TFLite input/output type (default float)")
    export.add_argument("--precision", choices=TENSORRT_PRECISIONS, help="TensorRT engine precision")
    export.add_argument("--sparse-weights", action="store_true",
                        help="TFLite: a pruned model's zeros in the sparse encoding (small uncompressed)")
    export.set_defaults(handler=_export)
    bench = commands.add_parser("benchmark",
                                help="size, accuracy, latency and memory of artifacts, side by side")
    bench.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                       help="model files or artifacts; the first is the baseline")
    bench.add_argument("--data", required=True, help=".npz file with the inputs (and labels)")
    bench.add_argument("--labels", help="the array of --data holding the labels (for accuracy)")
    bench.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="batches to time")
    bench.add_argument("--runs", type=int, default=50, help="timed calls per batch size")
    bench.add_argument("--threads", type=int, help="threads of every runtime (default: all cores)")
    bench.add_argument("--no-memory", action="store_true", help="skip the serving-memory subprocesses")
    bench.add_argument("--markdown", help="also write the table to this file")
    bench.add_argument("--json", help="also write the report as JSON")
    bench.add_argument("--plot", help="also write the figure (PNG)")
    bench.add_argument("--quiet", action="store_true", help="no progress output")
    bench.set_defaults(handler=_benchmark)
    find = commands.add_parser("search", help="search compression settings for the smallest model that keeps "
                                              "its accuracy")
    find.add_argument("model", help="a trained .keras or .h5 classifier, or a SavedModel folder")
    find.add_argument("--data", required=True, help=".npz file with inputs and labels")
    find.add_argument("--labels", default="y", help="the labels array of --data (default y)")
    find.add_argument("--validation-split", type=float, default=0.2, help="last fraction used for validation")
    find.add_argument("--max-accuracy-drop", type=float, default=0.01,
                      help="allowed accuracy drop (0.01 = 1 pt)")
    find.add_argument("--trials", type=int, default=10, help="trials to run")
    find.add_argument("--epochs", type=int, default=4, help="training epochs per trial")
    find.add_argument("--objective", default="size", choices=["size", "latency"])
    find.add_argument("--tuner", default="bayesian", choices=["bayesian", "random", "hyperband"])
    find.add_argument("--directory", default="keras_compress_search",
                      help="where trials are kept (resumable)")
    find.add_argument("--project-name", default="search")
    find.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    find.add_argument("--json", help="also write the result as JSON")
    find.add_argument("--plot", help="also write the trials figure (PNG)")
    find.add_argument("--quiet", action="store_true", help="no progress output")
    find.set_defaults(handler=_search)
    shrink = commands.add_parser("compress", help="compress a classifier to a latency, size or MACs target "
                                                  "measured on the runtime, fine-tuned by distillation")
    shrink.add_argument("model", help="a trained .keras or .h5 classifier, or a SavedModel folder")
    shrink.add_argument("--data", required=True, help=".npz file with training inputs and labels")
    shrink.add_argument("--labels", default="y", help="the labels array of the .npz files (default y)")
    shrink.add_argument("--validation", help=".npz file with validation inputs and labels (default: the "
                                             "last --validation-split of --data)")
    shrink.add_argument("--validation-split", type=float, default=0.2, help="used without --validation")
    shrink.add_argument("--latency-ms", type=float, help="median latency of one call on the runtime")
    shrink.add_argument("--size-kb", type=float, help="size of the exported file in KiB")
    shrink.add_argument("--macs", type=float, help="multiply-accumulates per row")
    shrink.add_argument("--runtime", default="tflite", choices=["tflite", "onnx"])
    shrink.add_argument("--threads", type=int, default=1, help="runtime threads for the latency (default 1)")
    shrink.add_argument("--techniques", nargs="+", default=["filters", "int8"],
                        choices=["filters", "weights", "int8", "qat"],
                        help='"weights": sparse TFLite files, for size targets; "qat": int8 learnt in the '
                             'last epochs (default: filters int8)')
    shrink.add_argument("--max-accuracy-drop", type=float, help="allowed accuracy drop (0.01 = 1 pt)")
    shrink.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs")
    shrink.add_argument("-o", "--output", required=True, help="folder for the artifact and the run's files "
                                                              "(a run started there resumes)")
    shrink.add_argument("--plot", help="also write the plan's figure (PNG)")
    shrink.add_argument("--quiet", action="store_true", help="no progress output")
    shrink.set_defaults(handler=_compress)
    trt = commands.add_parser("check-tensorrt", help="whether an ONNX file is ready for a TensorRT build")
    trt.add_argument("onnx", help="an .onnx file")
    trt.set_defaults(handler=_check_tensorrt)
    inspect = commands.add_parser("inspect", help="inputs, outputs, layers or operators, size")
    inspect.add_argument("path", help="a model file, SavedModel folder, .onnx or .tflite artifact")
    inspect.set_defaults(handler=_inspect)
    return parser


def main(argv=None):
    """Runs the command line; returns the exit status."""
    from keras_compress.errors import KerasCompressError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (KerasCompressError, OSError, ValueError) as error:
        print(f"keras-compress {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
