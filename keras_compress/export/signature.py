"""Input signatures with a dynamic batch, and sample inputs generated from them."""

import numpy as np
import tensorflow as tf

from keras_compress._flavour import keras_for, model_inputs, numpy_dtype
from keras_compress.layer_kinds import builtin_name

__all__ = ["input_specs", "serving_function", "sample_inputs"]


def input_specs(model, batch_size=None):
    """One `tf.TensorSpec` per model input, named as the input; the batch is dynamic unless given."""
    return [tf.TensorSpec((batch_size, *t.shape[1:]), numpy_dtype(t.dtype), name=name)
            for t, name in zip(model.inputs, keras_for(model).input_names(model))]


def _call(model):
    return lambda *inputs: model(model_inputs(model, inputs), training=False)


def serving_function(model, batch_size=None):
    """A `tf.function` over `input_specs(model, batch_size)` returning `{output name: tensor}`.
    Its `trackable` attribute holds the variables it reads (for SavedModel and TFLite)."""
    flavour = keras_for(model)
    names = flavour.output_names(model)
    specs = input_specs(model, batch_size)
    call, trackable = flavour.tensorflow_call(model, specs, _call(model))

    def serve(*inputs):
        outputs = call(*inputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.identity(output, name=name) for name, output in zip(names, outputs)}

    function = tf.function(serve, input_signature=specs)
    function.trackable = trackable
    return function


def _vocabulary(model, input_tensor):
    """The vocabulary size of an Embedding that reads `input_tensor` as indices, or None."""
    flavour = keras_for(model)
    for layer in model.layers:
        if builtin_name(layer) == "Embedding" \
                and any(t is input_tensor for t in flavour.layer_input_tensors(layer)):
            return layer.input_dim
    return None


def sample_inputs(model, rows=8, seed=0):
    """Random inputs matching the model's signature: normal floats; integers (of the input's
    dtype, float or not) in range for inputs an Embedding reads as indices, else in [0, 10)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = [rows] + [d or 8 for d in tensor.shape[1:]]
        dtype = numpy_dtype(tensor.dtype)
        vocabulary = _vocabulary(model, tensor)
        if np.issubdtype(dtype, np.floating) and vocabulary is None:
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, vocabulary or 10, shape).astype(dtype))
    return arrays
