"""Compression to a target measured on the runtime: `compress(model, ..., target=Target(...))`
allocates each channel group's share of filters removed (and int8) from one-shot scans, checks
the exported file on the runtime, corrects, and fine-tunes by distillation."""

from keras_compress._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "CompressionResult": "result:CompressionResult",
    "Target": "target:Target",
    "compress": "pipeline:compress",
})

__all__ = ["CompressionResult", "Target", "compress"]
