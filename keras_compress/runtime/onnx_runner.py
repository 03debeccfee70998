"""Runs an ONNX file with ONNX Runtime."""

from keras_compress.runtime.metadata import KEY, decode
from keras_compress.runtime.runner import Runner
from keras_compress.runtime.tensors import TensorInfo

__all__ = ["OnnxRunner"]

_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def _info(node):
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)
    return TensorInfo(node.name, shape, _ONNX_TYPES.get(node.type, "float32"))


class OnnxRunner(Runner):
    """An ONNX model in an ONNX Runtime session.

    Args:
        path: the `.onnx` file.
        providers: execution providers in order of preference; default CPU.
        threads: intra-op threads; None lets ONNX Runtime decide.
    """

    format = "onnx"

    def __init__(self, path, *, providers=None, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])
        self.metadata = decode(self.session.get_modelmeta().custom_metadata_map.get(KEY))
        super().__init__([_info(n) for n in self.session.get_inputs()],
                         [_info(n) for n in self.session.get_outputs()])
        self._output_names = [info.name for info in self.outputs]

    def _run(self, arrays):
        feed = {info.name: array for info, array in zip(self.inputs, arrays)}
        return self.session.run(self._output_names, feed)
