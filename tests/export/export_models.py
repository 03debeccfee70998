"""Models that exercise every export format (imported by the export tests)."""

import keras_compress as kc
from keras_compress.demo import digits_cnn

keras = kc.keras
L = keras.layers


def residual_net():
    """BatchNormalization, Dropout, residual Add and DepthwiseConv2D."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.Add()([x, L.ReLU()(y)])
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="residual")


def text_model(cell):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(50, 8)(tokens)
    x = cell(16)(x)
    return keras.Model(tokens, L.Dense(3, name="logits")(x), name=f"text_{cell.__name__.lower()}")


def multi_io():
    """Inputs and outputs whose names sort differently from their order."""
    keras.utils.set_random_seed(0)
    zeta, alpha = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    joined = L.Concatenate()([zeta, alpha])
    return keras.Model([zeta, alpha], [L.Dense(2, name="z_out")(joined), L.Dense(5, name="a_out")(joined)],
                       name="multi")


MODELS = {"cnn": digits_cnn, "residual": residual_net, "gru": lambda: text_model(L.GRU),
          "lstm": lambda: text_model(L.LSTM), "multi": multi_io}
