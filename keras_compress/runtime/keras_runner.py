"""Runs a Keras model in memory through a compiled function (not eager calls)."""

import threading
import weakref

import numpy as np
import tensorflow as tf

from keras_compress._flavour import keras_for, model_inputs, numpy_dtype
from keras_compress._retracing import one_trace_per_model
from keras_compress._types import KerasModel
from keras_compress.runtime.runner import Runner
from keras_compress.runtime.tensors import TensorInfo

__all__ = ["KerasRunner"]


# One compiled function per model, shared by its runners (a new tf.function per runner
# would retrace whenever a model is exported and verified again). The function holds the model
# weakly: the entry, its graph and the model go when the caller drops the model.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# On JAX, one lock per model: every runner of a model (the export's verifier, the user's) takes turns.
_JAX_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_JAX_LOCKS_LOCK = threading.Lock()



def _on_jax(model):
    return keras_for(model).backend() == "jax"


def _compiled(model):
    """`f(*inputs)`: a tf.function with a dynamic batch; on JAX, Keras' jitted predict step,
    one call at a time (Keras' JAX state is not safe to share between threads: concurrent
    calls fail with "Invalid buffer passed to Execute()")."""
    if _on_jax(model):
        with _JAX_LOCKS_LOCK:
            lock = _JAX_LOCKS.setdefault(model, threading.Lock())

        def predict(*xs):
            with lock:
                return model.predict_on_batch(model_inputs(model, xs))
        return predict
    if model not in _COMPILED:
        one_trace_per_model("_compiled.<locals>")  # each model's forward pass traces once
        specs = [tf.TensorSpec(t.shape, numpy_dtype(t.dtype)) for t in model.inputs]
        held = weakref.ref(model)
        _COMPILED[model] = tf.function(lambda *xs: held()(model_inputs(held(), xs), training=False),
                                       input_signature=specs)
    return _COMPILED[model]


def _infos(tensors, names):
    return [TensorInfo(name, tuple(t.shape), numpy_dtype(t.dtype).name)
            for t, name in zip(tensors, names)]


class KerasRunner(Runner):
    """A Keras 3 or tf_keras model behind the `Runner` interface (inference mode, compiled once).

    Example:
        >>> import numpy as np, keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(2, name="y")])
        >>> runner = kc.runtime.KerasRunner(model)
        >>> runner.inputs[0].name, runner.predict(np.ones((4, 3))).shape
        ('x', (4, 2))
    """

    format = "keras"

    def __init__(self, model: KerasModel):
        flavour = keras_for(model)
        super().__init__(_infos(model.inputs, flavour.input_names(model)),
                         _infos(model.outputs, flavour.output_names(model)))
        self.model = model
        self.on_tensorflow = flavour.backend() == "tensorflow"
        self._call = _compiled(model)

    @classmethod
    def from_file(cls, path, **options):
        """A runner for the model in a `.keras`/`.h5` file, loaded with `keras_compress.load_model`."""
        from keras_compress.model_files import load_model

        return cls(load_model(path, **options))

    def _run(self, arrays):
        outputs = self._call(*arrays)
        return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
