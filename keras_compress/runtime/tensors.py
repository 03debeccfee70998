"""What every runner shares: tensor descriptions, input normalisation, batching."""

import dataclasses

import numpy as np

__all__ = ["TensorInfo", "as_list", "normalize_inputs", "single_or_list", "split_batches"]


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for dynamic dimensions) and NumPy dtype name of a model input or output."""

    name: str
    shape: tuple
    dtype: str


def normalize_inputs(x, inputs):
    """Arrays in the order of `inputs`, from one array, a list/tuple, or a dict keyed by name."""
    names = [info.name for info in inputs]
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise ValueError(f"Missing inputs {missing}; the model takes {names}.")
        arrays = [x[name] for name in names]
    elif isinstance(x, (list, tuple)):
        arrays = list(x)
    else:
        arrays = [x]
    if len(arrays) != len(inputs):
        raise ValueError(f"The model takes {len(inputs)} inputs {names}, got {len(arrays)}.")
    result = []
    for array, info in zip(arrays, inputs):
        array = np.asarray(array)
        expected = tuple(info.shape[1:])
        if array.ndim != len(info.shape) or any(
                e is not None and e != a for e, a in zip(expected, array.shape[1:])):
            raise ValueError(f"Input {info.name!r} expects shape (batch, {', '.join(map(str, expected))}) "
                             f"with None for any size, got {array.shape}.")
        result.append(array.astype(info.dtype, copy=False))
    if len({a.shape[0] for a in result}) > 1:
        raise ValueError(f"Inputs have different batch sizes: {[a.shape[0] for a in result]}")
    return result


def split_batches(arrays, batch_size):
    """Yields lists of array slices of at most `batch_size` rows (all rows if None)."""
    total = arrays[0].shape[0]
    if batch_size is None:
        yield arrays
        return
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    for start in range(0, total, batch_size):
        yield [a[start:start + batch_size] for a in arrays]


def single_or_list(outputs):
    return outputs[0] if len(outputs) == 1 else outputs


def as_list(outputs):
    """The inverse of `single_or_list`."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
