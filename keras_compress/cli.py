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
    return parser


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
