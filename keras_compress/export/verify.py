"""Parity between an artifact and its source model, with tolerances per precision."""

import numpy as np

from keras_compress.errors import ExportVerificationError

__all__ = ["parity", "check_parity", "TOLERANCES"]

# Largest allowed max-absolute difference, relative to max(1, largest reference value):
# float32 runtimes differ only by summation order.
TOLERANCES = {"float32": 1e-4}


def _is_classifier(reference):
    return reference.ndim == 2 and reference.shape[1] > 1


def parity(reference_outputs, outputs, names):
    """`{output name: {max_abs_diff, mean_abs_diff, scale[, top1_agreement]}}`."""
    result = {}
    for name, want, got in zip(names, reference_outputs, outputs):
        want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
        if want.shape != got.shape:
            raise ExportVerificationError(f"Output {name!r} has shape {got.shape}, the source model's "
                                          f"has {want.shape}.")
        difference = np.abs(want - got)
        entry = {"max_abs_diff": float(difference.max(initial=0.0)),
                 "mean_abs_diff": float(difference.mean()) if difference.size else 0.0,
                 "scale": float(np.abs(want).max(initial=0.0))}
        if _is_classifier(want):
            entry["top1_agreement"] = float(np.mean(want.argmax(-1) == got.argmax(-1)))
        result[name] = entry
    return result


def check_parity(result, precision, where):
    """Raises ExportVerificationError when an output is further off than `precision` allows."""
    tolerance = TOLERANCES[precision]
    for name, entry in result.items():
        allowed = tolerance * max(1.0, entry["scale"])
        if entry["max_abs_diff"] > allowed:
            raise ExportVerificationError(
                f"{where}: output {name!r} differs from the source model by up to "
                f"{entry['max_abs_diff']:.3g} (allowed {allowed:.3g} for {precision}); "
                f"top-1 agreement {entry.get('top1_agreement', float('nan')):.2%}.")
