"""Shared, small fixtures: the digits data and a briefly trained CNN."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_compress as kc  # noqa: E402
from models import quantizable_cnn, small_cnn  # noqa: E402

keras = kc.keras


@pytest.fixture(scope="session")
def digits():
    """`(x_train, y_train), (x_test, y_test)` of the 8x8 digits."""
    return kc.datasets.digits()


def compile_classifier(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """A small CNN trained for two epochs. Tests must not modify it (prune copies it)."""
    (x, y), _ = digits
    model = compile_classifier(small_cnn())
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def fit_pruned(pruned, data, epochs=2, callbacks=(), **kwargs):
    (x, y), _ = data
    compile_classifier(pruned)
    return pruned.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
                      callbacks=[kc.pruning.PruningCallback(), *callbacks], **kwargs)


def random_inputs(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *model.input_shape[1:])).astype("float32")


@pytest.fixture(scope="session")
def float_and_qat(digits):
    """`(float model, its QAT copy)`: the float CNN trained 3 epochs, then one QAT epoch.
    Tests must not modify them."""
    (x, y), _ = digits
    model = compile_classifier(quantizable_cnn())
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    qat = compile_classifier(kc.quantization.quantize_aware(model))
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model, qat
