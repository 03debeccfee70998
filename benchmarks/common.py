"""Helpers the benchmark scripts share."""

import time

import tf_keras as keras


def compile_classifier(model):
    """Adam 1e-3, sparse cross-entropy on logits, accuracy."""
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of every epoch in `times`."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)
