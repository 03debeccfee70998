"""Calibration data for static int8 quantization: arrays, `tf.data` or an iterable of batches."""

import itertools

import numpy as np

from keras_compress.errors import ExportError
from keras_compress.runtime.tensors import normalize_inputs

__all__ = ["calibration_batches", "MAX_CALIBRATION_ROWS"]

# Ranges settle after a few hundred samples; more only slows the export down.
MAX_CALIBRATION_ROWS = 512


def _features(element, n_inputs):
    """The inputs of a batch: `x` of `(x, y)` / `(x, y, w)`, else the batch itself."""
    if isinstance(element, tuple) and len(element) in (2, 3):
        if n_inputs == 1 or not isinstance(element[0], np.ndarray):
            return element[0]
    return element


def _to_numpy(x):
    if isinstance(x, dict):
        return {key: np.asarray(value) for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(value) for value in x]
    return np.asarray(x)


def _is_arrays(data, n_inputs):
    """Whole arrays (one array, a dict by name, or one array per input) rather than batches."""
    if isinstance(data, (np.ndarray, dict)):
        return True
    return (isinstance(data, (list, tuple)) and len(data) == n_inputs
            and all(isinstance(item, np.ndarray) for item in data))


def calibration_batches(data, inputs, dtypes, *, batch_size=32, max_rows=MAX_CALIBRATION_ROWS):
    """Lists of input arrays (model input order), in batches, from `data`.

    `data` is an array, a list or dict of arrays (one per input), a `tf.data.Dataset`
    (batched, yielding `x` or `(x, y)`), any other iterable of such batches (a list of
    arrays for a single-input model counts as batches), or a function returning such an
    iterable: the TFLite converter's `representative_dataset` convention, a generator of
    lists of input arrays. At most `max_rows` rows are used.
    """
    if data is None:
        raise ExportError('quantize="static" needs calibration_data: a few hundred representative '
                          "inputs (an array, a tf.data.Dataset or an iterable of batches).")
    import tensorflow as tf

    if callable(data) and not isinstance(data, tf.data.Dataset):
        data = data()
    if _is_arrays(data, len(inputs)):
        arrays = normalize_inputs(data, inputs, dtypes)
        arrays = [a[:max_rows] for a in arrays]
        batches = [[a[i:i + batch_size] for a in arrays] for i in range(0, len(arrays[0]), batch_size)]
    else:
        if isinstance(data, tf.data.Dataset):
            data = data.as_numpy_iterator()
        batches, rows = [], 0
        for element in itertools.islice(data, max_rows):
            batch = normalize_inputs(_to_numpy(_features(element, len(inputs))), inputs, dtypes)
            batches.append(batch)
            rows += len(batch[0])
            if rows >= max_rows:
                break
    if not batches or not len(batches[0][0]):
        raise ExportError("calibration_data is empty: give at least one batch of representative inputs.")
    for index, info in enumerate(inputs):
        bad = sum(int(np.size(batch[index]) - np.isfinite(batch[index]).sum()) for batch in batches
                  if np.issubdtype(batch[index].dtype, np.floating))
        if bad:
            raise ExportError(f"calibration_data holds {bad} non-finite values (NaN or Inf) in input "
                              f"{info.name!r}: ranges cannot be calibrated from them. Remove those rows.")
    return batches
