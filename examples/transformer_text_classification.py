"""keras.io's "Text classification with Transformer", pruned and shipped.

The model is the example's as published: its `TokenAndPositionEmbedding` and
`TransformerBlock` are custom layers (without `**kwargs`) that hold Embedding,
MultiHeadAttention and Dense layers. Pruning masks those inner layers in place, so the
whole transformer reaches the target, not only the classifier head; `strip` gives the
user's own classes back with zeros in their weights. Filter pruning then removes one of
the two attention heads and half the feed-forward width for real (`shrink`), and the smaller
model trains an epoch with int8 quantization inside its blocks (`quantize_aware`). The results
are exported to ONNX (float32, static int8 and QAT int8) and TFLite, each verified against the
model and benchmarked side by side. The IMDB reviews are replaced by `kc.datasets.tokens`, a
token task that ships with the package (no downloads).
"""

import os
import tempfile

import keras
from keras import layers, ops

import keras_compress as kc


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


def build_model(maxlen, vocab_size, embed_dim, num_heads, ff_dim):
    """keras.io's classifier: the two custom layers, pooling, and a small Dense head."""
    inputs = layers.Input(shape=(maxlen,))
    x = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, num_heads, ff_dim)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def main():
    keras.utils.set_random_seed(0)
    vocab_size, maxlen = 1000, 32  # keras.io: 20000 words, 200 tokens
    embed_dim, num_heads, ff_dim = 32, 2, 32
    (x_train, y_train), (x_val, y_val) = kc.datasets.tokens(rows=4000, maxlen=maxlen, vocab_size=vocab_size)
    model = build_model(maxlen, vocab_size, embed_dim, num_heads, ff_dim)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=4, validation_data=(x_val, y_val), verbose=0)
    _, dense_accuracy = model.evaluate(x_val, y_val, verbose=0)

    # 80% of every weight matrix, inside the custom layers too, ramped up while fine-tuning.
    epochs = 3
    end_step = -(-len(x_train) // 32) * (epochs - 1)
    pruned = kc.pruning.prune(model, kc.pruning.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=end_step))
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0,
               callbacks=[kc.pruning.PruningCallback()])
    stripped = kc.pruning.strip(pruned)
    print(kc.pruning.sparsity(stripped))

    # Half the attention heads and of the feed-forward width, removed for real: one of the two heads.
    steps = -(-len(x_train) // 32)
    heads = kc.pruning.prune(model, kc.pruning.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=steps),
                             granularity="filter")
    heads.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    heads.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    small = kc.pruning.shrink(kc.pruning.strip(heads))

    # Then int8: quantization-aware training reaches the attention's projections and the
    # feed-forward layers inside the blocks (LayerNormalization and softmax stay float, named).
    qat = kc.quantization.quantize_aware(small)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    qat.fit(x_train, y_train, batch_size=32, epochs=1, verbose=0)

    folder = tempfile.mkdtemp()
    artifacts = {
        "dense.onnx": kc.export(model, os.path.join(folder, "dense.onnx")),
        "pruned.onnx": kc.export(stripped, os.path.join(folder, "pruned.onnx")),
        "pruned int8.onnx": kc.export(stripped, os.path.join(folder, "pruned_int8.onnx"), quantize="static",
                                      calibration_data=x_train[:256]),
        "pruned.tflite": kc.export(stripped, os.path.join(folder, "pruned.tflite")),
        "1 head.onnx": kc.export(small, os.path.join(folder, "heads.onnx")),
        "1 head QAT.onnx": kc.export(qat, os.path.join(folder, "heads_qat.onnx")),
        "1 head QAT.tflite": kc.export(qat, os.path.join(folder, "heads_qat.tflite")),
    }
    report = kc.benchmark(artifacts, (x_val, y_val), runs=20, memory=False, verbose=0)
    print(report)

    rows = {row["name"]: row for row in report.rows}

    def p50(name):  # milliseconds per batch of one
        return next(iter(rows[name]["latency_ms"].values()))["p50"]

    sparsity = kc.pruning.sparsity(stripped).total_sparsity
    smaller = rows["dense.onnx"]["gzipped_bytes"] / rows["pruned.onnx"]["gzipped_bytes"]
    print(f"dense accuracy {dense_accuracy:.3f}; pruned {sparsity:.0%} of the weights: "
          f"{rows['pruned.onnx']['accuracy']:.3f} (float32), "
          f"{rows['pruned int8.onnx']['accuracy']:.3f} (int8); gzipped {smaller:.1f}x smaller; "
          f"1 of 2 heads and half the feed-forward width: {rows['1 head.onnx']['accuracy']:.3f}, "
          f"{p50('dense.onnx') / p50('1 head.onnx'):.2f}x the dense model's speed; with QAT int8: "
          f"{rows['1 head QAT.onnx']['accuracy']:.3f} (ONNX), {rows['1 head QAT.tflite']['accuracy']:.3f} "
          "(TFLite)")
    assert [type(layer).__name__ for layer in stripped.layers[1:3]] == ["TokenAndPositionEmbedding",
                                                                        "TransformerBlock"]
    assert sparsity > 0.79 and dense_accuracy > 0.9
    assert rows["pruned.onnx"]["accuracy"] > dense_accuracy - 0.03
    assert rows["pruned int8.onnx"]["accuracy"] > rows["pruned.onnx"]["accuracy"] - 0.02
    assert rows["dense.onnx"]["gzipped_bytes"] > 2.5 * rows["pruned.onnx"]["gzipped_bytes"]
    block = small.get_layer("transformer_block").layer  # your TransformerBlock, with smaller layers
    assert block.att.num_heads == 1 and [layer.units for layer in block.ffn.layers] == [16, 32]
    assert rows["1 head.onnx"]["accuracy"] > dense_accuracy - 0.03
    for name in ("1 head QAT.onnx", "1 head QAT.tflite"):
        assert rows[name]["accuracy"] > dense_accuracy - 0.03


if __name__ == "__main__":
    main()
