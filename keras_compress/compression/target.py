"""`Target`: what a compressed model must reach, measured on the runtime it ships to."""

import dataclasses

from keras_compress.analysis.latency import RUNTIMES

__all__ = ["Target", "QUANTITIES"]

# What a target can bound, as (Target field, measured quantity, how one value of the field counts).
QUANTITIES = (("latency_ms", "ms", 1.0), ("size_kb", "bytes", 1024.0), ("macs", "macs", 1.0))


@dataclasses.dataclass(frozen=True)
class Target:
    """Bounds on the exported model, each measured on `runtime`: the median latency of one call
    (`latency_ms`, on `batch_size` rows and `threads` threads), the file's size in KiB (raw, not
    gzipped) and the multiply-accumulates per row. Give one or more bounds; a model meets the
    target when every bound holds.

    Example:
        >>> import keras_compress as kc
        >>> kc.Target(latency_ms=2.0, runtime="tflite")
        Target(latency_ms=2.0, size_kb=None, macs=None, runtime='tflite', batch_size=1, threads=1)
    """

    latency_ms: float | None = None
    size_kb: float | None = None
    macs: float | None = None
    runtime: str = "tflite"
    batch_size: int = 1
    threads: int = 1

    def __post_init__(self):
        bounds = {field: getattr(self, field) for field, _, _ in QUANTITIES}
        if all(value is None for value in bounds.values()):
            raise ValueError("A Target needs at least one bound: latency_ms, size_kb or macs, "
                             "e.g. kc.Target(latency_ms=2.0).")
        for field, value in bounds.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise ValueError(f"Target {field} must be a positive number, got {value!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"Target runtime must be one of {sorted(RUNTIMES)} (the runtimes whose files "
                             f"are measured here), got {self.runtime!r}")
        for field in ("batch_size", "threads"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Target {field} must be a positive integer, got {value!r}")

    def bounds(self) -> dict:
        """`{measured quantity: limit}` for the bounds given (bytes for size_kb)."""
        return {quantity: getattr(self, field) * unit for field, quantity, unit in QUANTITIES
                if getattr(self, field) is not None}

    def missed(self, measured: dict) -> dict:
        """`{quantity: (measured, limit)}` for each bound `measured` does not hold."""
        return {quantity: (measured[quantity], limit) for quantity, limit in self.bounds().items()
                if measured[quantity] > limit}

    def describe(self) -> str:
        """The bounds in words, with the runtime and its settings."""
        return self.values(self.bounds()) + (f" on {self.runtime}, batch {self.batch_size}, "
                                             f"{self.threads} thread(s)")

    def values(self, measured: dict) -> str:
        """`measured`'s values of the bounded quantities, in the bounds' units."""
        words = []
        for field, quantity, unit in QUANTITIES:
            if getattr(self, field) is not None:
                value = measured[quantity] / unit
                words.append({"ms": f"{value:.4g} ms", "bytes": f"{value:.1f} KiB",
                              "macs": f"{value:,.0f} MACs"}[quantity])
        return ", ".join(words)
