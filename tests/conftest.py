"""Shared, small fixtures: the digits data and a briefly trained CNN."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tf_keras as keras  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress._flavour import keras_for  # noqa: E402
from models import quantizable_cnn, small_cnn  # noqa: E402

# Behaviour tests that take the `keras_flavour` fixture run once per Keras: tf_keras and
# Keras 3 here, Keras 3 alone in the second pytest process that `make test` runs with
# KERAS_BACKEND=jax (where tests without the fixture are deselected).
JAX = os.environ.get("KERAS_BACKEND") == "jax"
FLAVOURS = ("keras3",) if JAX else ("tf_keras", "keras3")


@pytest.fixture(scope="session", params=FLAVOURS)
def keras_flavour(request):
    """The Keras module a test builds its models with: tf_keras or Keras 3."""
    if request.param == "keras3":
        import keras as keras3

        return keras3
    return keras


@pytest.fixture(scope="session", params=["keras3"])
def keras3(request):
    """Keras 3, for tests of what only Keras 3 models do (they run on JAX too)."""
    import keras as keras3

    return keras3


def _runs_keras3(item):
    params = getattr(item, "callspec", None) and item.callspec.params
    return bool(params) and (params.get("keras_flavour") == "keras3" or "keras3" in params)


def pytest_collection_modifyitems(config, items):
    if not JAX:
        return
    selected = [item for item in items if _runs_keras3(item)]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected


@pytest.fixture(scope="session")
def digits():
    """`(x_train, y_train), (x_test, y_test)` of the 8x8 digits."""
    return kc.datasets.digits()


def compile_classifier(model, **kwargs):
    """Compiles `model` for the digits with its own Keras."""
    keras_of_model = keras_for(model).keras
    model.compile(optimizer=keras_of_model.optimizers.Adam(1e-3),
                  loss=keras_of_model.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], **kwargs)
    return model


def _trained_cnn(digits, keras_module):
    (x, y), _ = digits
    model = compile_classifier(small_cnn(keras=keras_module))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_cnn(digits, keras_flavour):
    """A small CNN trained for two epochs, in each Keras. Tests must not modify it (prune copies it)."""
    return _trained_cnn(digits, keras_flavour)


@pytest.fixture(scope="session")
def tf_keras_cnn(digits):
    """The tf_keras `trained_cnn`, for tests of what only tf_keras models do."""
    return _trained_cnn(digits, keras)


def fit_pruned(pruned, data, epochs=2, callbacks=(), **kwargs):
    (x, y), _ = data
    compile_classifier(pruned)
    return pruned.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
                      callbacks=[kc.pruning.PruningCallback(), *callbacks], **kwargs)


def int8_weight_arrays(path):
    """The int8 weight tensors (2-D and up) of an ONNX or TFLite file, as numpy arrays."""
    if path.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper

        arrays = [numpy_helper.to_array(init) for init in onnx.load(path).graph.initializer]
    else:
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(path)
        arrays = [np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8)
                  .reshape(tensor.shape) for graph in model.subgraphs for tensor in graph.tensors
                  if tensor.type == 9 and model.buffers[tensor.buffer].data is not None]  # 9: INT8
    return [a for a in arrays if a.dtype == np.int8 and a.ndim >= 2]


def random_inputs(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *model.input_shape[1:])).astype("float32")


def _float_and_qat(digits, keras_module):
    (x, y), _ = digits
    model = compile_classifier(quantizable_cnn(keras=keras_module))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    qat = compile_classifier(kc.quantization.quantize_aware(model))
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model, qat


@pytest.fixture(scope="session")
def float_and_qat(digits):
    """`(float model, its QAT copy)`: the tf_keras float CNN trained 3 epochs, then one QAT
    epoch. Tests must not modify them."""
    return _float_and_qat(digits, keras)


@pytest.fixture(scope="session")
def qat_pair(digits, keras_flavour):
    """The same as `float_and_qat`, in each Keras."""
    return _float_and_qat(digits, keras_flavour)
