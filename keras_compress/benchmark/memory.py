"""Memory it takes to serve a variant: peak resident memory of a fresh process."""

import os
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ["serving_memory_bytes"]

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_serve.py")


def serving_memory_bytes(path, inputs, threads, timeout=300):
    """Peak resident bytes of a new Python process that loads `path` and runs it once on
    `inputs` (`{input name: array}`), so variants do not pollute each other's numbers."""
    with tempfile.TemporaryDirectory() as folder:
        arrays = os.path.join(folder, "inputs.npz")
        np.savez(arrays, **inputs)
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        result = subprocess.run([sys.executable, _SCRIPT, path, arrays, str(threads)], capture_output=True,
                                text=True, timeout=timeout, env=environment)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Serving {path} in a fresh process failed: {last}")
    return int(result.stdout.strip().splitlines()[-1]) * 1024  # the script reports KiB
