"""`Runner`: the one interface every artifact and in-memory model runs through."""

import numpy as np

from keras_compress._types import Arrays
from keras_compress.runtime.tensors import check_batch_size, normalize_inputs, single_or_list, split_batches

__all__ = ["Runner", "check_threads", "check_providers", "refuse_unknown_operators"]


def check_threads(threads):
    """`threads` must be None (the runtime decides) or an int >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None (the runtime decides) or an int >= 1, got {threads!r}")


def check_providers(providers):
    """`providers` must be None or ONNX Runtime execution providers available here, by name (or
    `(name, options)` pairs, as ONNX Runtime takes them)."""
    if providers is None:
        return
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if isinstance(providers, str) or not isinstance(providers, (list, tuple)) or not providers:
        raise ValueError(f"providers must be a non-empty list of provider names such as {available}, "
                         f"got {providers!r}")
    for provider in providers:
        name = provider[0] if isinstance(provider, tuple) and len(provider) == 2 else provider
        if name not in available:
            known = name in onnxruntime.get_all_providers()
            raise ValueError(f"ONNX Runtime provider {name!r} is "
                             + ("not available in this installation" if known else "unknown")
                             + f": this one offers {available}.")


def refuse_unknown_operators(path, runtime, find_operators, error):
    """Raises `ModelFileError` naming the operators ("domain:Op", from `find_operators(path)`) that
    `runtime` lacks, when there are any; else re-raises `error` (the runtime's own failure to
    open the file, also when the file cannot be read for its operators)."""
    from keras_compress.errors import ModelFileError

    try:
        operators = find_operators(str(path))
    except Exception:  # noqa: BLE001 - the runtime's own error says more
        operators = []
    if not operators:
        raise error
    flex = [op for op in operators if op.startswith("custom:Flex")]
    advice = ("TensorFlow operators (Flex) need TensorFlow's Flex delegate, which LiteRT does not ship: "
              "export the model with TFLite's builtin operators only" if flex else
              "Register their implementation with the runtime, or export the model without them")
    raise ModelFileError(f"{path} uses operators that {runtime} does not have: {', '.join(operators)} "
                         f"(domain:operator). {advice}.") from None


class Runner:
    """Runs a model in one runtime. Every runner may be called from several threads at once.

    Attributes:
        format: "keras", "saved_model", "onnx" or "tflite".
        inputs, outputs: lists of `TensorInfo` in the model's order.
    """

    format: str = ""
    on_tensorflow = False  # whether it runs in TensorFlow (on TensorFlow's threads)

    def __init__(self, inputs: list, outputs: list):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._input_dtypes = [np.dtype(info.dtype) for info in self.inputs]  # what `predict` casts inputs to
        self._checked_shape = None  # row shape of the last single-array input that passed the checks

    def predict(self, x: Arrays, batch_size: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Outputs for `x` (an array, a list in input order, or a dict by input name).

        Returns one array for a single-output model, else a list in output order.
        `batch_size=None` runs all rows at once.
        """
        # Fast path for the common serving call: one array, like the last one that passed the checks.
        if batch_size is None and type(x) is np.ndarray and x.shape[1:] == self._checked_shape \
                and self._input_dtypes[0] is not None and x.dtype == self._input_dtypes[0]:
            return single_or_list(self._run([x]))
        check_batch_size(batch_size)
        arrays = normalize_inputs(x, self.inputs, self._input_dtypes)
        if len(arrays) == 1:
            self._checked_shape = arrays[0].shape[1:]
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
