"""What every runner shares: tensor descriptions, input normalisation, batching."""

import dataclasses

import numpy as np

__all__ = ["TensorInfo", "as_list", "check_batch_size", "normalize_inputs", "single_or_list",
           "split_batches"]


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for dynamic dimensions) and NumPy dtype name of a model input or output."""

    name: str
    shape: tuple
    dtype: str


def _shape_error(info, array):
    expected = ", ".join(map(str, info.shape[1:]))
    return ValueError(f"Input {info.name!r} expects shape (batch, {expected}) with None for any size, "
                      f"got {array.shape}.")


def normalize_inputs(x, inputs, dtypes):
    """Arrays in the order of `inputs` (cast to `dtypes`; a None dtype keeps the array's), from
    one array, a list/tuple, or a dict keyed by name. Kept lean: it runs on every `predict`."""
    if isinstance(x, dict):
        missing = sorted({info.name for info in inputs} - set(x))
        if missing:
            raise ValueError(f"Missing inputs {missing}: got arrays named {sorted(x)}, the model takes "
                             f"{[i.name for i in inputs]}. Name the arrays after the model's inputs (and "
                             "pass any labels apart).")
        arrays = [x[info.name] for info in inputs]
    elif isinstance(x, (list, tuple)):
        arrays = list(x)
    else:
        arrays = [x]
    if len(arrays) != len(inputs):
        raise ValueError(f"The model takes {len(inputs)} inputs {[i.name for i in inputs]}, "
                         f"got {len(arrays)}.")
    result = []
    for array, info, dtype in zip(arrays, inputs, dtypes):
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if array.ndim != len(info.shape):
            raise _shape_error(info, array)
        for expected, actual in zip(info.shape[1:], array.shape[1:]):
            if expected is not None and expected != actual:
                raise _shape_error(info, array)
        result.append(array if dtype is None or array.dtype == dtype else array.astype(dtype))
    if len(result) > 1 and len({a.shape[0] for a in result}) > 1:
        raise ValueError(f"Inputs have different batch sizes: {[a.shape[0] for a in result]}")
    return result


def check_batch_size(batch_size):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")


def split_batches(arrays, batch_size):
    """Yields lists of array slices of at most `batch_size` rows."""
    total = arrays[0].shape[0]
    for start in range(0, total, batch_size):
        yield [a[start:start + batch_size] for a in arrays]


def single_or_list(outputs):
    return outputs[0] if len(outputs) == 1 else outputs


def as_list(outputs):
    """The inverse of `single_or_list`."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
