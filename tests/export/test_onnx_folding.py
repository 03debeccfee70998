"""The structure that makes exported ONNX fast: no float BatchNormalization arithmetic left after a
convolution, and Q/DQ around every convolution and matmul the int8 export quantized."""

import collections

import numpy as np
import onnx
import pytest

import keras_compress as kc


def _mobile_block(keras):
    """Convolution, depthwise convolution and dense, each followed by BatchNormalization with
    trained-looking statistics (MobileNet's pattern)."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(16, 1, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x), name="mobile_block")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
    return model


def _producers(graph):
    return {output: node for node in graph.node for output in node.output}


def _ops(graph):
    return collections.Counter(node.op_type for node in graph.node)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).random((64, 16, 16, 3), dtype="float32")


def test_no_float_batch_normalization_arithmetic_is_left_after_a_convolution(keras_flavour, data, tmp_path):
    artifact = kc.export(_mobile_block(keras_flavour), str(tmp_path / "m.onnx"), sample_data=data)
    graph = onnx.load(artifact.path).graph
    ops = _ops(graph)
    assert ops["Conv"] == 3 and not ops["BatchNormalization"] and not ops["Mul"], ops
    producers = _producers(graph)
    after_conv = [node.name for node in graph.node if node.op_type in ("Add", "Sub", "Div")
                  and any(producers.get(name) is not None and producers[name].op_type == "Conv"
                          for name in node.input)]
    assert after_conv == []
    assert artifact.parity["scores"]["max_abs_diff"] < 1e-4


def test_static_int8_onnx_has_q_dq_around_every_convolution_and_matmul(keras_flavour, data, tmp_path):
    artifact = kc.export(_mobile_block(keras_flavour), str(tmp_path / "int8.onnx"), quantize="static",
                         calibration_data=data, compare_speed=False)
    graph = onnx.load(artifact.path).graph
    producers = _producers(graph)
    computing = [node for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
    assert len(computing) == 4
    for node in computing:
        data_inputs = node.input[:2]  # activations and weights; a bias stays int32 or float
        assert all(producers[name].op_type == "DequantizeLinear" for name in data_inputs), node.name
    assert not _ops(graph)["Mul"]  # no float arithmetic between the int8 operations
    assert artifact.parity["scores"]["top1_agreement"] >= 0.9
