"""`inspect`: what a model file or artifact holds, as text for the `inspect` command."""

import collections
import os

from keras_compress.export.artifact import path_size

__all__ = ["inspect"]


def _tensors(title, infos):
    return [f"{title}:"] + [f"  {t.name}: shape {list(t.shape)}, {t.dtype}" for t in infos]


def _op_counts(path, suffix):
    if suffix == ".onnx":
        import onnx

        return collections.Counter(node.op_type for node in onnx.load(path).graph.node)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    return collections.Counter(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                               for graph in model.subgraphs for op in graph.operators)


def inspect(path):
    """Lines describing a `.keras`/`.h5`/SavedModel model or an `.onnx`/`.tflite` artifact:
    inputs, outputs, layers (with parameters and sparsity) or operator counts, size."""
    from keras_compress.runtime.load import load

    path = os.fspath(path)
    runner = load(path)
    lines = [f"{path} ({runner.format}, {path_size(path) / 1024:.1f} KB)"]
    lines += _tensors("inputs", runner.inputs) + _tensors("outputs", runner.outputs)
    suffix = os.path.splitext(path)[1].lower()
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
    elif suffix in (".onnx", ".tflite"):
        lines.append("operators:")
        lines += [f"  {op}: {count}" for op, count in sorted(_op_counts(path, suffix).items())]
    return lines
