"""What is installed and what this machine can run, for `keras-compress info` and bug reports."""

import functools
import importlib
import importlib.metadata
import platform

_PACKAGES = [
    ("TensorFlow", "tensorflow"),
    ("tf_keras", "tf-keras"),
    ("tfmot", "tensorflow-model-optimization"),
    ("tf2onnx", "tf2onnx"),
    ("ONNX", "onnx"),
    ("ONNX Runtime", "onnxruntime"),
    ("LiteRT", "ai-edge-litert"),
    ("TensorRT", "tensorrt"),
    ("keras-tuner", "keras-tuner"),
]


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment():
    """`{name: value}` of versions, ONNX Runtime providers and visible GPUs."""
    from keras_compress._version import __version__

    info = {"keras_compress": __version__, "Python": platform.python_version(),
            "platform": platform.platform()}
    info.update((label, _version(dist)) for label, dist in _PACKAGES)
    try:
        onnxruntime = importlib.import_module("onnxruntime")
        info["ONNX Runtime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        info["ONNX Runtime providers"] = "not installed"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    info["GPU visible to TensorFlow"] = ", ".join(g.name for g in gpus) if gpus else "no"
    return info


@functools.lru_cache(maxsize=None)
def _cpuinfo(field):
    """The value of the first `field` line of Linux's /proc/cpuinfo, or None (read once per field)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags():
    """The CPU feature flags Linux reports (empty elsewhere)."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model():
    """The CPU model name Linux reports, else what `platform` knows."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def has_vnni():
    """Whether the CPU has VNNI int8 dot products (no int16 saturation in int8 kernels)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
