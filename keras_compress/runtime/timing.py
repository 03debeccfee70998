"""Latency measurement, done the same way for every runtime: warm-up, then timed runs."""

import time

import numpy as np

from keras_compress._types import Arrays
from keras_compress.runtime.runner import Runner

__all__ = ["latencies", "check_timing"]


def check_timing(warmup, runs):
    """Raises ValueError unless `warmup >= 0` and `runs >= 1`."""
    if warmup < 0 or runs < 1:
        raise ValueError(f"warmup must be >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")


def latencies(runner: Runner, inputs: Arrays, *, warmup: int = 3, runs: int = 20) -> np.ndarray:
    """Seconds per `runner.predict(inputs)` call over `runs` timed calls, after `warmup` calls."""
    check_timing(warmup, runs)
    for _ in range(warmup):
        runner.predict(inputs)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runner.predict(inputs)
        times[i] = time.perf_counter() - start
    return times
