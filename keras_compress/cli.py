"""The `keras-compress` command. Each subcommand parses arguments and calls the library."""

import argparse
import sys


def _info(args):
    from keras_compress._environment import environment

    info = environment()
    width = max(len(key) for key in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def _demo(args):
    from keras_compress.demo import format_table, run_demo

    rows = run_demo(args.out, epochs=args.epochs, verbose=0 if args.quiet else 1)
    print(format_table(rows))
    return 0


def _export(args):
    import numpy as np

    from keras_compress.export import export
    from keras_compress.model_files import load_model

    sample = None
    if args.sample_data:
        with np.load(args.sample_data) as data:
            sample = {key: data[key] for key in data.files}
        if len(sample) == 1:
            sample = next(iter(sample.values()))
    model = load_model(args.model)
    artifact = export(model, args.output, sample_data=sample, verify=not args.no_verify,
                      overwrite=args.overwrite, opset=args.opset)
    print(artifact)
    return 0


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
    demo = commands.add_parser("demo", help="the compression pipeline on bundled digits data")
    demo.add_argument("--out", default="demo_out", help="folder for the models (default: demo_out)")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs of the dense model")
    demo.add_argument("--quiet", action="store_true", help="no progress output, only the table")
    demo.set_defaults(handler=_demo)
    export = commands.add_parser("export", help="export a model to .onnx, .tflite, .keras or a SavedModel, verified")
    export.add_argument("model", help="a .keras or .h5 file, or a SavedModel folder")
    export.add_argument("-o", "--output", required=True, help="the artifact path; its suffix picks the format")
    export.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    export.add_argument("--sample-data", help=".npz file of inputs for verification (one array per input)")
    export.add_argument("--no-verify", action="store_true", help="skip the parity check")
    export.add_argument("--overwrite", action="store_true", help="replace an existing artifact")
    export.set_defaults(handler=_export)
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
    except (KerasCompressError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"keras-compress {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
