"""Runs a serialized TensorRT engine (`.engine` / `.plan`) on an NVIDIA GPU."""

import threading

import numpy as np

from keras_compress._tensorrt import (
    DeviceBuffer,
    check_cuda,
    copy_to_device,
    copy_to_host,
    cuda_runtime,
    require_tensorrt,
)
from keras_compress._types import PathLike
from keras_compress.runtime.runner import Runner
from keras_compress.runtime.tensors import TensorInfo

__all__ = ["TensorRTRunner"]


class TensorRTRunner(Runner):
    """A TensorRT engine with one execution context; host arrays in, host arrays out.

    The batch dimension may vary within the engine's optimization profile. Calls
    from several threads are safe: they take turns on the one context and its buffers.
    Without the `tensorrt` package or an NVIDIA GPU, opening one raises
    `BackendUnavailableError` naming `pip install keras-compress[tensorrt]`.
    """

    format = "tensorrt"

    def __init__(self, path: PathLike):
        trt = require_tensorrt()
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as file:
            self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(file.read())
        if self.engine is None:
            raise ValueError(f"{path} is not a TensorRT engine this TensorRT version can load.")
        self.context = self.engine.create_execution_context()
        self._stream = check_cuda(cuda_runtime().cudaStreamCreate())
        inputs: list = []
        outputs: list = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(name))
            info = TensorInfo(name, shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(info)
        super().__init__(inputs, outputs)
        self._buffers = {info.name: DeviceBuffer() for info in inputs + outputs}
        self._lock = threading.Lock()

    def _run(self, arrays):
        with self._lock:
            return self._run_locked(arrays)

    def _run_locked(self, arrays):
        keep_alive = []
        for info, array in zip(self.inputs, arrays):
            self.context.set_input_shape(info.name, array.shape)
            pointer, host = copy_to_device(self._buffers[info.name], array, self._stream)
            self.context.set_tensor_address(info.name, pointer)
            keep_alive.append(host)
        results = []
        for info in self.outputs:
            shape = tuple(self.context.get_tensor_shape(info.name))
            result = np.empty(shape, info.dtype)
            self.context.set_tensor_address(info.name, self._buffers[info.name].ensure(max(result.nbytes, 1)))
            results.append(result)
        if not self.context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above).")
        for info, result in zip(self.outputs, results):
            copy_to_host(result, self._buffers[info.name].pointer, self._stream)
        check_cuda(cuda_runtime().cudaStreamSynchronize(self._stream))
        return results
