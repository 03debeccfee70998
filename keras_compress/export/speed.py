"""How fast a quantized artifact runs against its float32 twin, and why it may be slower."""

import warnings

import numpy as np

from keras_compress._environment import has_vnni
from keras_compress.runtime.timing import latencies

__all__ = ["SPEED_BATCH_SIZES", "median_ms", "figures", "speed_against_float", "warn_if_slower"]

# Batch sizes a quantized artifact is timed at against its float32 twin.
SPEED_BATCH_SIZES = (1, 32)
# A quantized artifact this much slower than its float32 twin gets a warning.
_SLOWER = 1.05
# What this CPU may lack, per precision, when the format knows no reason of its own.
_CPU_REASONS = {"int8": "int8 kernels are slow on CPUs without VNNI",
                "int8_dynamic": "activations are quantized at every call",
                "float16": "CPUs without native float16 arithmetic convert the weights back to float32"}


def _rows(samples, count):
    """`samples` repeated or cut to `count` rows."""
    return [np.resize(array, (count, *array.shape[1:])) for array in samples]


def median_ms(runners, samples):
    """`{name: {batch: median ms}}` of each runner at each of `SPEED_BATCH_SIZES` (the batches
    `keras_compress.benchmark` reports by default); the runners alternate per batch size."""
    times = {name: {} for name in runners}
    for batch in SPEED_BATCH_SIZES:
        inputs = _rows(samples, batch)
        for name, runner in runners.items():
            times[name][batch] = round(float(np.median(latencies(runner, inputs))) * 1e3, 4)
    return times


def figures(first, second, batches):
    return "; ".join(f"batch {b}: {first[b]:.3g} ms vs {second[b]:.3g} ms" for b in batches)


def speed_against_float(artifact_runner, float_runner, samples):
    """Latency of the quantized artifact and of its float32 twin, and the speed-up, per batch size."""
    speed = median_ms({"latency_ms": artifact_runner, "float32_latency_ms": float_runner}, samples)
    speed["speedup_vs_float32"] = {batch: round(speed["float32_latency_ms"][batch] / ms, 3)
                                   for batch, ms in speed["latency_ms"].items()}
    return speed


def _slow_reason(fmt, path, precision, settings):
    """Why a quantized artifact at `path` can be slower than its float32 twin, where known: what
    its runtime does with it (the format's `slow_reason`), else what this CPU lacks; "" when
    nothing explains it."""
    reason = fmt.call("slow_reason", path, precision, settings)
    if reason:
        return f" ({reason})"
    reason = _CPU_REASONS.get(precision)
    if reason is None or (precision == "int8" and has_vnni()):  # the CPU has int8 dot products
        return ""
    return f" ({reason})"


def warn_if_slower(speed, precision, fmt, path, settings, model):
    """Warns, naming the batch sizes and the likely reason, when the artifact is slower than its twin."""
    slower = [batch for batch, ratio in speed["speedup_vs_float32"].items() if ratio < 1 / _SLOWER]
    if not slower:
        return
    shown = figures(speed["latency_ms"], speed["float32_latency_ms"], slower)
    warnings.warn(f"The {precision} {fmt.title} export of {model.name!r} runs slower than its float32 twin "
                  f"on this machine ({shown}): it saves size, not time, here"
                  f"{_slow_reason(fmt, path, precision, settings)}.", stacklevel=3)
