"""TensorRT and CUDA access, guarded: clear errors without the package or an NVIDIA GPU.

Device memory and copies go through `cuda-python` (installed with the `tensorrt` extra).
"""

import numpy as np

from keras_compress.errors import BackendUnavailableError

__all__ = ["require_tensorrt", "cuda_runtime", "DeviceBuffer", "check_cuda", "copy_to_device", "copy_to_host"]

INSTALL = "pip install keras-compress[tensorrt]"


def cuda_runtime():
    """cuda-python's runtime API module."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise BackendUnavailableError(
                f"TensorRT needs cuda-python for device memory: {INSTALL}") from None
    return runtime


def check_cuda(result):
    """The values of a cuda-python call, raising on a CUDA error."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values


def require_tensorrt():
    """The `tensorrt` module, once an NVIDIA GPU is known to be visible."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(
            f"TensorRT engines need the tensorrt package and an NVIDIA GPU: {INSTALL} "
            "(on a machine with an NVIDIA GPU and its CUDA driver).") from None
    runtime = cuda_runtime()
    error, count = runtime.cudaGetDeviceCount()
    if int(error) != 0 or count == 0:
        raise BackendUnavailableError("TensorRT engines need an NVIDIA GPU with its CUDA driver; none is "
                                      "visible on this machine. Export to ONNX here and build the engine "
                                      "where the GPU is.")
    return tensorrt


class DeviceBuffer:
    """A block of GPU memory, grown on demand."""

    def __init__(self):
        self.pointer, self.size = 0, 0

    def ensure(self, size):
        if size > self.size:
            self.free()
            self.pointer, self.size = check_cuda(cuda_runtime().cudaMalloc(size)), size
        return self.pointer

    def free(self):
        if self.pointer:
            cuda_runtime().cudaFree(self.pointer)
            self.pointer, self.size = 0, 0

    def __del__(self):
        self.free()


def copy_to_device(buffer, array, stream):
    runtime = cuda_runtime()
    array = np.ascontiguousarray(array)
    pointer = buffer.ensure(max(array.nbytes, 1))
    check_cuda(runtime.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes,
                                       runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
    return pointer, array  # keep the host array alive until the stream syncs


def copy_to_host(array, pointer, stream):
    runtime = cuda_runtime()
    check_cuda(runtime.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes,
                                       runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
