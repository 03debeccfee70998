"""Runs an ONNX file with ONNX Runtime."""

from keras_compress._environment import has_vnni
from keras_compress._types import PathLike
from keras_compress.runtime.metadata import KEY, decode
from keras_compress.runtime.runner import Runner, check_providers, check_threads, refuse_unknown_operators
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

    Int8 weights trained at full 8-bit range (quantization-aware export) saturate ONNX
    Runtime's u8 x s8 CPU kernels on CPUs without VNNI; there, by default, the Q/DQ
    pairs run as float arithmetic on the int8 grid (exact, and faster on such CPUs).

    Args:
        path: the `.onnx` file.
        providers: execution providers in order of preference; default CPU.
        threads: intra-op threads; None lets ONNX Runtime decide.
        int8_kernels: fuse Q/DQ into int8 kernels; None decides as above.

    Attributes:
        int8_kernels: whether Q/DQ may be fused into int8 kernels.
    """

    format = "onnx"

    def __init__(self, path: PathLike, *, providers: list | None = None, threads: int | None = None,
                 int8_kernels: bool | None = None):
        check_threads(threads)
        check_providers(providers)

        def session(int8):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
            if not int8:
                options.add_session_config_entry("session.disable_quant_qdq", "1")
            return onnxruntime.InferenceSession(str(path), sess_options=options,
                                                providers=providers or ["CPUExecutionProvider"])

        try:
            self.session = session(int8_kernels is not False)
        except Exception as error:
            from keras_compress.formats.onnx import unknown_operators

            refuse_unknown_operators(path, "ONNX Runtime", unknown_operators, error)
        self.metadata = decode(self.session.get_modelmeta().custom_metadata_map.get(KEY))
        if int8_kernels is None:
            full_range = self.metadata.get("settings", {}).get("full_range_int8_weights", False)
            int8_kernels = not (full_range and not has_vnni())
            if not int8_kernels:  # the metadata lives in the file: only now is it known
                self.session = session(False)
        self.int8_kernels = int8_kernels
        super().__init__([_info(n) for n in self.session.get_inputs()],
                         [_info(n) for n in self.session.get_outputs()])
        self._input_names = [info.name for info in self.inputs]

    def _run(self, arrays):
        return self.session.run(None, dict(zip(self._input_names, arrays)))  # outputs in session order
