"""`Runner`: the one interface every artifact and in-memory model runs through."""

import numpy as np

from keras_compress.runtime.tensors import check_batch_size, normalize_inputs, single_or_list, split_batches

__all__ = ["Runner"]


class Runner:
    """Runs a model in one runtime.

    Attributes:
        format: "keras", "saved_model", "onnx" or "tflite".
        inputs, outputs: lists of `TensorInfo` in the model's order.
    """

    format = None

    def __init__(self, inputs, outputs):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._input_dtypes = [np.dtype(info.dtype) for info in self.inputs]

    def predict(self, x, batch_size=None):
        """Outputs for `x` (an array, a list in input order, or a dict by input name).

        Returns one array for a single-output model, else a list in output order.
        `batch_size=None` runs all rows at once.
        """
        check_batch_size(batch_size)
        arrays = normalize_inputs(x, self.inputs, self._input_dtypes)
        if batch_size is None or batch_size >= len(arrays[0]):
            return single_or_list(self._run(arrays))  # the common case, without copies
        parts = [self._run(batch) for batch in split_batches(arrays, batch_size)]
        return single_or_list([np.concatenate([p[i] for p in parts]) for i in range(len(self.outputs))])

    def _run(self, arrays):
        """Outputs (a list, in order) for one batch of input arrays (a list, in order)."""
        raise NotImplementedError

    def __repr__(self):
        names = lambda infos: ", ".join(f"{t.name}{list(t.shape)}" for t in infos)  # noqa: E731
        return f"<{type(self).__name__} {self.format}: ({names(self.inputs)}) -> ({names(self.outputs)})>"
