"""Benchmarks: latency, size and accuracy of models and artifacts, side by side."""

from keras_compress.benchmark.timing import latencies

__all__ = [
    "latencies",
]
