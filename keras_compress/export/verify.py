"""Parity between an artifact and its source model, with tolerances per precision."""

import numpy as np

from keras_compress.errors import ExportVerificationError

__all__ = ["parity", "check_parity", "TOLERANCES", "MIN_ROWS_FOR_TOP1"]

# Per precision, relative to max(1, largest reference value): the largest allowed max or
# mean absolute difference, and the least top-1 agreement (checked from MIN_ROWS_FOR_TOP1
# rows on). float32 runtimes differ only by summation order.
TOLERANCES = {
    "float32": {"max_abs_diff": 1e-4},
    "float16": {"max_abs_diff": 2e-2},
    "int8_dynamic": {"mean_abs_diff": 5e-2, "top1_agreement": 0.9},
    "int8": {"mean_abs_diff": 5e-2, "top1_agreement": 0.9},
}
MIN_ROWS_FOR_TOP1 = 50


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
        entry = {"nonfinite": int(want.size - np.isfinite(want).sum() + got.size - np.isfinite(got).sum()),
                 "max_abs_diff": float(difference.max(initial=0.0)),
                 "mean_abs_diff": float(difference.mean()) if difference.size else 0.0,
                 "scale": float(np.abs(want).max(initial=0.0))}
        if _is_classifier(want):
            entry["top1_agreement"] = float(np.mean(want.argmax(-1) == got.argmax(-1)))
            entry["rows"] = int(want.shape[0])
        result[name] = entry
    return result


def check_parity(result, precision, where):
    """Raises ExportVerificationError when an output is further off than `precision` allows."""
    limits = TOLERANCES[precision]
    for name, entry in result.items():
        if entry.get("nonfinite"):
            raise ExportVerificationError(
                f"{where}: output {name!r} holds {entry['nonfinite']} NaN or Inf values (source model and "
                "artifact together): there is nothing to compare. Check the model and the sample data.")
        for key in ("max_abs_diff", "mean_abs_diff"):
            allowed = limits.get(key, float("inf")) * max(1.0, entry["scale"])
            if not entry[key] <= allowed:  # written so that NaN fails
                raise ExportVerificationError(
                    f"{where}: output {name!r} differs from the source model by {entry[key]:.3g} "
                    f"({key.replace('_', ' ')}, allowed {allowed:.3g} for {precision}); "
                    f"top-1 agreement {entry.get('top1_agreement', float('nan')):.2%}.")
        wanted = limits.get("top1_agreement")
        if wanted and "top1_agreement" in entry and entry["rows"] >= MIN_ROWS_FOR_TOP1 \
                and entry["top1_agreement"] < wanted:
            raise ExportVerificationError(
                f"{where}: output {name!r} agrees with the source model's top-1 on "
                f"{entry['top1_agreement']:.2%} of {entry['rows']} rows (at least {wanted:.0%} needed "
                f"for {precision}).")
