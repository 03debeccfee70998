"""Runs a TFLite file with LiteRT (`ai_edge_litert`)."""

import threading

import numpy as np

from keras_compress._types import PathLike
from keras_compress.formats.tflite import litert_interpreter, unknown_operators
from keras_compress.runtime.metadata import ordered
from keras_compress.runtime.runner import Runner, check_threads, refuse_unknown_operators
from keras_compress.runtime.tensors import TensorInfo
from keras_compress.runtime.tflite_metadata import has_variable_tensors, read_metadata

__all__ = ["TFLiteRunner"]

_SIGNATURE = "serving_default"


def _info(name, detail, float_io):
    shape = tuple(None if d < 0 else int(d) for d in detail["shape_signature"])
    scale, _ = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    # Quantized outputs come back as floats: the runner applies scale and zero point.
    return TensorInfo(name, shape, "float32" if float_io and scale else dtype)


class TFLiteRunner(Runner):
    """A TFLite model in a LiteRT interpreter, through its `serving_default` signature.

    The batch dimension is resized to each call's batch. `inputs` give each input's
    own dtype; an int8/uint8 input takes arrays of that type as they are, and floats,
    which the runner quantizes with the input's scale and zero point. Quantized
    outputs are dequantized: `predict` returns floats for them, as `outputs` say.
    Calls from several threads are safe: they take turns on the one interpreter.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads; None lets LiteRT decide.
    """

    format = "tflite"

    def __init__(self, path: PathLike, *, threads: int | None = None):
        check_threads(threads)
        with open(path, "rb") as file:
            content = file.read()
        self.metadata = read_metadata(content)
        self._stateful = has_variable_tensors(content)
        try:
            self.interpreter = litert_interpreter(model_content=content, threads=threads)
        except RuntimeError as error:  # unresolved custom operators fail here, not at a call
            refuse_unknown_operators(path, "LiteRT", unknown_operators, error)
        signatures = self.interpreter.get_signature_list()
        if _SIGNATURE not in signatures:
            raise ValueError(f"{path} has no {_SIGNATURE!r} signature (it has {sorted(signatures)}); "
                             "export it with keras_compress.export.")
        self._runner = self.interpreter.get_signature_runner(_SIGNATURE)
        self._called = False
        self._in = self._runner.get_input_details()
        self._out = self._runner.get_output_details()
        input_names = ordered(list(self._in), self.metadata, "inputs")
        output_names = ordered(list(self._out), self.metadata, "outputs")
        super().__init__([_info(n, self._in[n], False) for n in input_names],
                         [_info(n, self._out[n], True) for n in output_names])
        # Quantized inputs take their integer type as is, or floats to quantize: no cast.
        self._input_dtypes = [None if self._in[n]["quantization"][0] else dtype
                              for n, dtype in zip(input_names, self._input_dtypes)]
        self._quantized = any(d["quantization"][0] for d in (*self._in.values(), *self._out.values()))
        self._input_names, self._output_names = input_names, output_names
        # An interpreter holds one call's tensors: concurrent calls would read each other's.
        self._lock = threading.Lock()

    def _run(self, arrays):
        with self._lock:
            # A model exported with a fixed batch (recurrent layers) runs row by row.
            fixed = self.inputs[0].shape[0] if self.inputs[0].shape else None
            if fixed and arrays[0].shape[0] != fixed:
                rows = [self._run_batch([a[i:i + fixed] for a in arrays])
                        for i in range(0, arrays[0].shape[0], fixed)]
                return [np.concatenate([r[k] for r in rows]) for k in range(len(self.outputs))]
            return self._run_batch(arrays)

    def _run_batch(self, arrays):
        # Recurrent kernels keep their state in variable tensors: start every call afresh
        # (once tensors exist, i.e. after the first call).
        if self._stateful:
            if self._called:
                self.interpreter.reset_all_variables()
            self._called = True
        if not self._quantized:
            results = self._runner(**dict(zip(self._input_names, arrays)))
            return [results[name] for name in self._output_names]
        feed = {}
        for info, array in zip(self.inputs, arrays):
            detail = self._in[info.name]
            scale, zero_point = detail["quantization"]
            if scale and array.dtype != detail["dtype"]:
                limits = np.iinfo(detail["dtype"])
                array = np.clip(np.round(array / scale + zero_point), limits.min, limits.max)
            feed[info.name] = array.astype(detail["dtype"], copy=False)
        results = self._runner(**feed)
        outputs = []
        for info in self.outputs:
            value, (scale, zero_point) = results[info.name], self._out[info.name]["quantization"]
            outputs.append((value.astype(np.float32) - zero_point) * scale if scale else value)
        return outputs
