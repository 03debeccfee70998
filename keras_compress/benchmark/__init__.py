"""Benchmarks: size, accuracy, latency and serving memory of models and artifacts, side by side."""

from keras_compress.benchmark.report import Report
from keras_compress.benchmark.run import benchmark
from keras_compress.runtime.timing import latencies

__all__ = [
    "Report",
    "benchmark",
    "latencies",
]
