"""Multiply-accumulates per row, counted in a Keras model and read from its ONNX and TFLite files:
every layer kind with a kernel, float and int8 files alike."""

import numpy as np

import keras_compress as kc
from keras_compress.benchmark.macs import mac_count

# Per row: Conv2D 16*16*(3*3*3*8) + DepthwiseConv2D 7*7*(3*3*8) + SeparableConv2D 7*7*(3*3*8 + 8*12)
# + Conv2DTranspose 7*7*(2*2*4*12) + Dense on 196 positions 196*(4*5) + Dense 980*3.
EXPECTED = 55296 + 3528 + 8232 + 9408 + 3920 + 2940


def _every_kernel_kind(keras):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2)(x)
    x = keras.layers.SeparableConv2D(12, 3, padding="same")(x)
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)
    x = keras.layers.Dense(5)(keras.layers.Reshape((-1, 4))(x))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def test_the_model_and_its_files_count_the_same_arithmetic(keras_flavour, tmp_path):
    model = _every_kernel_kind(keras_flavour)
    data = np.random.default_rng(0).random((16, 16, 16, 3), dtype="float32")
    assert mac_count(model) == EXPECTED
    for name, quantize in (("f.onnx", None), ("f.tflite", None), ("q.onnx", "static"),
                           ("q.tflite", "static")):
        artifact = kc.export(model, str(tmp_path / name), quantize=quantize,
                             calibration_data=data if quantize else None, verify=False, compare_speed=False)
        assert mac_count(artifact.path) == EXPECTED, name


def test_three_dimensional_convolutions_count_the_same_in_keras_and_tflite(keras3, tmp_path):
    inputs = keras3.Input((4, 6, 6, 2))
    model = keras3.Model(inputs, keras3.layers.Conv3D(5, 3, padding="same")(inputs))
    assert mac_count(model) == 4 * 6 * 6 * (3 * 3 * 3 * 2 * 5)
    assert mac_count(kc.export(model, str(tmp_path / "m.tflite")).path) == mac_count(model)


def test_what_cannot_be_counted_is_none_not_a_wrong_number(keras3, tmp_path):
    inputs = keras3.Input((5, 4))
    recurrent = keras3.Model(inputs, keras3.layers.LSTM(3)(inputs))  # its kernels run at every step
    assert mac_count(recurrent) is None
    assert mac_count(kc.export(recurrent, str(tmp_path / "lstm.tflite")).path) is None
    shared = keras3.layers.Dense(4)
    assert mac_count(keras3.Model(inputs, shared(shared(inputs)))) is None  # called twice
    assert mac_count(kc.export(_every_kernel_kind(keras3), str(tmp_path / "saved")).path) is None


def test_tflite_counts_stay_exact_past_two_to_the_thirty_first():
    """LiteRT gives shapes as int32 arrays; ResNet50's 3.9 G multiply-accumulates overflowed them."""
    from keras_compress.formats.tflite import _operator_macs

    def shape(*sizes):
        return np.array(sizes, np.int32)

    macs = _operator_macs("CONV_2D", [shape(1, 32, 32, 2048), shape(2048, 1, 1, 2048), shape(2048)],
                          shape(1, 32, 32, 2048))
    assert macs == 32 * 32 * 2048 * 2048 > 2**31
