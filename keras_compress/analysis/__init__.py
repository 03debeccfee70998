"""Analysis before compression, one layer (or channel group) at a time: what compressing it
alone costs in accuracy (`sensitivity`) and what shrinking it buys on a runtime (`latency`)."""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "LatencyTable": "latency:LatencyTable",
    "SensitivityTable": "sensitivity:SensitivityTable",
    "latency": "latency:latency",
    "sensitivity": "sensitivity:sensitivity",
})

__all__ = ["LatencyTable", "SensitivityTable", "latency", "sensitivity"]
