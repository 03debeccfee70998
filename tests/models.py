"""The models the tests build: one module, shared by every test folder, and one save/reload helper."""

import os
import sys

import tf_keras

import keras_compress as kc
from keras_compress.demo import digits_cnn

# Builders take `keras`, the Keras to build with: tf_keras (the default) or Keras 3.


def small_cnn(seed=0, keras=tf_keras):
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
        layers.BatchNormalization(name="bn_a"),
        layers.Conv2D(16, 3, activation="relu", name="conv_b"),
        layers.Flatten(name="flatten"),
        layers.Dense(32, activation="relu", name="dense_a"),
        layers.Dense(10, name="logits"),
    ], name="small_cnn")


def quantizable_cnn(seed=0, keras=tf_keras):
    """A small CNN tfmot quantizes whole: BatchNormalization right after its Conv2D."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", name="conv_a"),
        layers.BatchNormalization(momentum=0.9, name="bn_a"),
        layers.ReLU(name="relu_a"),
        layers.Conv2D(16, 3, activation="relu", name="conv_b"),
        layers.MaxPooling2D(name="pool"),
        layers.Flatten(name="flatten"),
        layers.Dense(32, activation="relu", name="dense_a"),
        layers.Dense(10, name="logits"),
    ], name="quantizable_cnn")


def residual_net(seed=0, keras=tf_keras):
    """Add joins, DepthwiseConv2D, BatchNormalization, Concatenate and pooling."""
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    stem = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    stem = L.ReLU(6.0, name="stem_relu")(L.BatchNormalization(name="stem_bn")(stem))
    branch = L.Conv2D(16, 1, name="expand")(stem)
    branch = L.DepthwiseConv2D(3, padding="same", name="dw")(branch)
    branch = L.BatchNormalization(name="dw_bn")(branch)
    branch = L.Activation("relu", name="dw_relu")(branch)
    branch = L.Conv2D(16, 1, name="project")(branch)
    joined = L.Add(name="add")([stem, branch])
    side = L.Conv2D(8, 3, padding="same", activation="relu", name="side")(joined)
    merged = L.Concatenate(name="concat")([joined, side])
    merged = L.BatchNormalization(name="concat_bn")(merged)
    pooled = L.GlobalAveragePooling2D(name="gap")(merged)
    outputs = L.Dense(10, name="logits")(L.Dropout(0.1)(pooled))
    return keras.Model(inputs, outputs, name="residual_net")


def text_model(cell, keras=tf_keras):
    """Embedding, then a recurrent layer by class name ("GRU", "LSTM")."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(50, 8)(tokens)
    x = getattr(L, cell)(16)(x)
    return keras.Model(tokens, L.Dense(3, name="logits")(x), name=f"text_{cell.lower()}")


def multi_io(keras=tf_keras):
    """Inputs and outputs whose names sort differently from their order."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    zeta, alpha = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    joined = L.Concatenate()([zeta, alpha])
    return keras.Model([zeta, alpha], [L.Dense(2, name="z_out")(joined), L.Dense(5, name="a_out")(joined)],
                       name="multi")


# The models every export format is tested on.
EXPORT_MODELS = {"cnn": digits_cnn, "residual": residual_net,
                 "gru": lambda keras=tf_keras: text_model("GRU", keras),
                 "lstm": lambda keras=tf_keras: text_model("LSTM", keras), "multi": multi_io}


def wrapped_dense(keras=tf_keras):
    """64 inputs through a custom layer around a Dense(64) (as keras.io's TransformerBlock holds its
    feed-forward; 94.1% of the weights), then a Dense(4) head."""

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(64)

        def call(self, inputs):
            return self.inner(inputs)

    inputs = keras.Input((64,))
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(Block(name="block")(inputs)))


def keras_io_transformer(maxlen=8, vocab_size=50, embed_dim=8, num_heads=2, ff_dim=8, seed=0):
    """keras.io's "Text classification with Transformer" (Keras 3) as published, from
    examples/transformer_text_classification.py: its two custom layers take no **kwargs, and hold
    an Embedding pair, a MultiHeadAttention and a Sequential feed-forward; small sizes."""
    import keras as keras3

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    from transformer_text_classification import build_model

    keras3.utils.set_random_seed(seed)
    return build_model(maxlen, vocab_size, embed_dim, num_heads, ff_dim)


def registered_block(embed_dim, num_heads, ff_dim):
    """A transformer block as a Keras user registers one (with **kwargs and get_config), so that
    models holding it save and load."""
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable("tests")
    class Block(layers.Layer):
        def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
            super().__init__(**kwargs)
            self.sizes = {"embed_dim": embed_dim, "num_heads": num_heads, "ff_dim": ff_dim}
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=4)
            self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
            self.norm = layers.LayerNormalization()

        def call(self, x):
            x = self.norm(x + self.att(x, x))
            return x + self.ffn(x)

        def get_config(self):
            return {**super().get_config(), **self.sizes}

    return Block(embed_dim, num_heads, ff_dim)


def two_blocks():
    """Embedding, a block, a MultiHeadAttention of its own, a block, a classifier (Keras 3)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = layers.Embedding(50, 8)(inputs)
    x = registered_block(8, 4, 16)(x)
    x = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(x, x)
    x = registered_block(8, 4, 16)(x)
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs)


def reloaded(model, folder, suffix=".keras"):
    """`model` saved under `folder` (".keras", ".h5", or "" for a SavedModel) and loaded back
    with keras_compress.load_model."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(str(folder), f"{model.name}{suffix}")
    model.save(path)
    return kc.load_model(path)
