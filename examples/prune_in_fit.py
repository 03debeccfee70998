"""Magnitude pruning inside `model.fit`, as tfmot's "Pruning in Keras" guide teaches it.

Train a small CNN on the bundled digits, prune it from 50% to 80% sparsity while
fine-tuning, strip the wrappers and compare accuracy and gzipped size.
"""

import os
import tempfile

import keras
import numpy as np

import keras_compress as kc


def main():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = kc.datasets.digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
    _, baseline = model.evaluate(x_test, y_test, verbose=0)

    # The guide's pruning_params, unchanged: tfmot's keyword and schedule arguments.
    epochs = 4
    end_step = int(np.ceil(len(x_train) / 64)) * epochs
    pruning_params = {"pruning_schedule": kc.pruning.PolynomialDecay(initial_sparsity=0.50,
                                                                     final_sparsity=0.80,
                                                                     begin_step=0, end_step=end_step)}
    pruned = kc.pruning.prune(model, **pruning_params)
    pruned.compile("adam", loss, metrics=["accuracy"])
    pruned.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0,
               callbacks=[kc.pruning.PruningCallback()])
    stripped = kc.pruning.strip(pruned)
    stripped.compile("adam", loss, metrics=["accuracy"])
    _, accuracy = stripped.evaluate(x_test, y_test, verbose=0)

    folder = tempfile.mkdtemp()
    dense = kc.export(model, os.path.join(folder, "dense.tflite"))
    sparse = kc.export(stripped, os.path.join(folder, "pruned.tflite"))
    report = kc.benchmark({"dense": dense, "pruned": sparse}, (x_test, y_test), runs=5, memory=False,
                          verbose=0)
    ratio = report.rows[0]["gzipped_bytes"] / report.rows[1]["gzipped_bytes"]
    sparsity = kc.pruning.sparsity(stripped).total_sparsity
    print(f"accuracy {baseline:.3f} -> {accuracy:.3f}, sparsity {sparsity:.2f}, {ratio:.1f}x smaller gzipped")
    assert sparsity >= 0.79 and ratio > 2.5 and accuracy > baseline - 0.03


if __name__ == "__main__":
    main()
