"""Transformer benchmark: keras.io's "Text classification with Transformer", compressed.

The model is the keras.io example as published (its custom `TokenAndPositionEmbedding` and
`TransformerBlock`, from `examples/transformer_text_classification.py`) at the example's sizes
(20,000 words, 200 tokens, 32-wide embeddings, 2 heads, 32-wide feed-forward), trained on
`kc.datasets.tokens` (a token task the package makes; no IMDB download). For each seed:

- dense: trained 8 epochs (about as many steps as keras.io's 2 epochs over 25,000 reviews);
- pruned: 80% of every weight matrix, inside the custom layers too (PolynomialDecay from 50%
  over 2 fine-tuning epochs), stripped;
- heads: half the attention heads and half the feed-forward width (and of the classifier's hidden
  Dense) pruned with `granularity="filter"` (PolynomialDecay from 0 to 50% over the first of 2
  fine-tuning epochs), stripped and shrunk: the block keeps 1 head and a 16-wide feed-forward;
- int8: static post-training quantization of the dense and the pruned model (ONNX Q/DQ,
  TFLite full integer), and the dense model's ONNX int8 by hand (tf2onnx, then ONNX Runtime's
  `quant_pre_process` and `quantize_static` with the same settings, the same 128 calibration rows);
- qat: the dense model trained 1 epoch quantization-aware (`quantize_aware` reaches the
  attention's projections and the feed-forward layers inside the block), exported int8;
- student: the same architecture 2x narrower (16-wide, feed-forward 16), distilled from the
  dense model with `kc.Distiller` for 8 epochs.

Accuracy is each file's, run in its runtime, on the held-out rows: mean ± std over the seeds.
Latency (batch 1, 2 threads, p50) is timed on the first seed's files in their plain runtimes
(ONNX Runtime, LiteRT), interleaved in one process; ratios are against the dense float32 file of
the same runtime.

    .venv/bin/python benchmarks/transformers.py [--seeds 3] [--runs 300] [--quick]
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from realsize import interleaved, onnx_by_hand, plain_call  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.benchmark.weights import gzipped_bytes  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from transformer_text_classification import build_model  # noqa: E402

VOCAB, MAXLEN = 20000, 200


def classifier(embed_dim=32, num_heads=2, ff_dim=32):
    """keras.io's model, at its sizes (or narrower), compiled as keras.io compiles it."""
    model = build_model(MAXLEN, VOCAB, embed_dim, num_heads, ff_dim)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def models(seed, train, epochs):
    """`{name: Keras model}`: dense, pruned (stripped), heads removed (shrunk), quantization-aware and
    the distilled student of one seed."""
    x, y = train
    keras.utils.set_random_seed(seed)
    dense = classifier()
    dense.fit(x, y, batch_size=32, epochs=epochs, verbose=0)

    steps = -(-len(x) // 32)
    pruned = kc.pruning.prune(dense, kc.pruning.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=steps))
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[kc.pruning.PruningCallback()])

    heads = kc.pruning.prune(dense, kc.pruning.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=steps),
                             granularity="filter")
    heads.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    heads.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[kc.pruning.PruningCallback()])

    qat = kc.quantization.quantize_aware(dense)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    qat.fit(x, y, batch_size=32, epochs=1, verbose=0)

    keras.utils.set_random_seed(seed)
    distiller = kc.Distiller(student=classifier(embed_dim=16, ff_dim=16), teacher=dense)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return {"dense": dense, "pruned": kc.pruning.strip(pruned),
            "heads": kc.pruning.shrink(kc.pruning.strip(heads)), "qat": qat, "student": distiller.student}


def files(built, folder, calibration):
    """`{label: path}` of every file of one seed's models."""
    paths = {}

    def export(label, model, **options):
        paths[label] = kc.export(model, os.path.join(folder, label.replace(" ", "_")), compare_speed=False,
                                 verify="warn", **options).path

    for name, model in built.items():
        for suffix in (".onnx", ".tflite"):
            export(f"{name} {'int8' if name == 'qat' else 'float32'}{suffix}", model)
            if name in ("dense", "pruned"):
                export(f"{name} int8{suffix}", model, quantize="static", calibration_data=calibration)
    paths["hand dense int8.onnx"] = onnx_by_hand(built["dense"], folder, calibration)["hand int8.onnx"]
    return paths


def accuracy(path, test):
    x, y = test
    runner = kc.load(path)
    return float(np.mean(np.argmax(runner.predict(x), axis=-1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 1,000 rows: a smoke run")
    args = parser.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    train, test = kc.datasets.tokens(rows=1000 if args.quick else 6000, maxlen=MAXLEN, vocab_size=VOCAB)
    calibration = train[0][:128].astype("float32")
    epochs = 1 if args.quick else 8
    scores, sizes, timed = {}, {}, None
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            seed_folder = os.path.join(folder, str(seed))
            os.makedirs(seed_folder)
            built = models(seed, train, epochs)
            parameters = {name: model.count_params() for name, model in built.items()}
            paths = files(built, seed_folder, calibration)
            del built
            for label, path in paths.items():
                scores.setdefault(label, []).append(accuracy(path, test))
            if seed == 0:
                sizes = {label: (parameters.get(label.split()[0], parameters["dense"]), os.path.getsize(path),
                                 gzipped_bytes(path)) for label, path in paths.items()}
                sample = test[0][:1].astype("float32")
                timed = interleaved({label: plain_call(path, sample, 2) for label, path in paths.items()},
                                    args.runs)
    print(f"keras.io transformer classifier, {len(seeds)} seed(s); latency batch 1, 2 threads, "
          f"{args.runs} interleaved runs")
    print("| file | accuracy | params | KB | gzip KB | p50 ms | vs dense float32 |")
    print("|---|---|---|---|---|---|---|")
    for label, values in scores.items():
        params, raw, gzipped = sizes[label]
        base = "dense float32" + os.path.splitext(label)[1]
        p50 = timed[label][0]
        print(f"| {label} | {np.mean(values):.3f} ± {np.std(values):.3f} | {params:,} | {raw / 1e3:.0f} | "
              f"{gzipped / 1e3:.0f} | {p50:.3f} | {timed[base][0] / p50:.2f}x |")


if __name__ == "__main__":
    main()
