"""Search benchmark: 10 Bayesian trials on the digits for the smallest artifact within 1 point
of the float32 baseline's accuracy.

Prints the time taken, the Pareto table and the best candidate's gzipped size as a ratio
against the float32 baseline's TFLite artifact measured in the same run.
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import compile_classifier  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.demo import digits_cnn  # noqa: E402

TRIALS, EPOCHS, LIMIT = 10, 4, 0.01


def main():
    (x, y), (x_test, y_test) = kc.datasets.digits()
    model = compile_classifier(digits_cnn())
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = kc.tuning.search(model, (x, y), (x_test, y_test), max_trials=TRIALS, epochs=EPOCHS,
                                  max_accuracy_drop=LIMIT, directory=folder, verbose=0)
        elapsed = time.perf_counter() - start
        print(result.to_markdown())
    print(f"\n{TRIALS} trials of {EPOCHS} epochs in {elapsed:.0f} s ({elapsed / TRIALS:.0f} s per trial)")
    if result.best is None:
        print("no trial kept its accuracy within the limit")
        return
    ratio = result.baseline["size_bytes"] / result.best["size_bytes"]
    print(f"best: {ratio:.1f}x smaller gzipped artifact than float32 "
          f"({result.best['size_bytes'] / 1024:.1f} KB vs {result.baseline['size_bytes'] / 1024:.1f} KB), "
          f"accuracy {result.best['accuracy']:.2%} vs {result.baseline['accuracy']:.2%} "
          f"(target: >= 4x within {100 * LIMIT:.0f} point)")


if __name__ == "__main__":
    main()
