"""`inspect`: what a model file or artifact holds, as text for the `inspect` command."""

import os

from keras_compress.export.artifact import path_size
from keras_compress.formats import for_path

__all__ = ["inspect"]


def _tensors(title, infos):
    return [f"{title}:"] + [f"  {t.name}: shape {list(t.shape)}, {t.dtype}" for t in infos]


def inspect(path):
    """Lines describing a `.keras`/`.h5`/SavedModel model or an `.onnx`/`.tflite` artifact:
    inputs, outputs, layers (with parameters and sparsity) or operator counts, size."""
    from keras_compress.runtime.load import load

    path = os.fspath(path)
    runner = load(path)
    lines = [f"{path} ({runner.format}, {path_size(path) / 1024:.1f} KB)"]
    lines += _tensors("inputs", runner.inputs) + _tensors("outputs", runner.outputs)
    fmt = for_path(path)
    if runner.format == "keras":
        from keras_compress.pruning.report import sparsity

        model = runner.model
        report = {row["layer"]: row for row in sparsity(model).layers}
        lines.append("layers:")
        for layer in model.layers:
            row = report.get(layer.name)
            extra = f", {row['sparsity']:.1%} sparse" if row else ""
            lines.append(f"  {layer.name} ({type(layer).__name__}): {layer.count_params():,} params{extra}")
        summary = sparsity(model)
        lines.append(f"parameters: {summary.total_params:,} ({summary.nonzero_params:,} nonzero), "
                     f"prunable sparsity {summary.total_sparsity:.1%}")
    elif fmt is not None and fmt.op_counts:
        lines.append("operators:")
        lines += [f"  {op}: {count}" for op, count in sorted(fmt.op_counts(path).items())]
    return lines
