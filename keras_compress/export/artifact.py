"""`Artifact`: what an export produced, and how well it matches its source."""

import dataclasses
import os
from typing import Any

from keras_compress.runtime.load import load
from keras_compress.runtime.runner import Runner

__all__ = ["Artifact", "path_size"]


def path_size(path):
    """Bytes of a file, or of every file under a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


@dataclasses.dataclass
class Artifact:
    """An exported model file (or SavedModel folder).

    Attributes:
        path, format ("onnx", "tflite", "saved_model", "keras"), size_bytes, precision,
        source (the source model's name), parity (`{output: {max_abs_diff,
        mean_abs_diff, scale, top1_agreement}}`, None when not verified),
        versions (libraries that made it), settings (e.g. the ONNX opset).
    """

    path: str
    format: str
    size_bytes: int
    precision: str
    source: str
    parity: dict
    versions: dict
    settings: dict

    def load(self, **options: Any) -> Runner:
        """A `Runner` for this artifact."""
        return load(self.path, **options)

    def __str__(self):
        lines = [f"{self.format} artifact {self.path}", f"  source model: {self.source}",
                 f"  precision: {self.precision}, size: {self.size_bytes / 1024:.1f} KB"]
        settings = {k: v for k, v in (self.settings or {}).items() if k not in ("int8_weights", "precision")}
        if settings:
            lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        if "int8_weights" in (self.settings or {}):
            counts = self.settings["int8_weights"]
            lines.append(f"  quantized: {counts['tensors']} int8 weight tensors, {counts['parameters']:,} "
                         "parameters")
        if self.parity is None:
            lines.append("  parity: not verified")
        for name, entry in (self.parity or {}).items():
            top1 = f", top-1 agreement {entry['top1_agreement']:.2%}" if "top1_agreement" in entry else ""
            lines.append(f"  parity {name}: max |diff| {entry['max_abs_diff']:.3g}, "
                         f"mean |diff| {entry['mean_abs_diff']:.3g}{top1}")
        return "\n".join(lines)
