"""Clustering benchmark: gzipped file size and accuracy of the tfmot guides' CNN (conv 32 ->
conv 64 -> dense 128 -> 10) on the digits, dense and compressed each way, in one run.

Variants: float32 (the baseline), pruned (float32, 85% by default), pruned + int8
(sparsity-preserving QAT), clustered + int8 (16 clusters, cluster-preserving QAT), and pruned +
clustered + int8 (8 clusters; both kept: tfmot's PCQAT). Sizes are gzipped TFLite and ONNX
files as ratios against the float32 file of the same format; accuracy is the Keras model's on
the test split, averaged over seeds.
The clustering epoch is timed against a plain epoch of the same model in the same run.

    .venv/bin/python benchmarks/clustering.py [--seeds N] [--sparsity S] [--clusters K]
        [--clusters-alone K]
"""

import argparse
import gzip
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from common import EpochTimer, compile_classifier  # noqa: E402

import keras_compress as kc  # noqa: E402


def guide_cnn(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)],
        name="guide_cnn")


def _fit(model, train, epochs, callbacks=()):
    compile_classifier(model).fit(*train, epochs=epochs, batch_size=32, verbose=0, callbacks=list(callbacks))
    return model


def _gzipped_sizes(model, sample, folder, name):
    sizes = {}
    for suffix in (".tflite", ".onnx"):
        path = os.path.join(folder, name + suffix)
        kc.export(model, path, sample_data=sample, compare_speed=False)
        with open(path, "rb") as file:
            sizes[suffix] = len(gzip.compress(file.read()))
    return sizes


def one_seed(seed, data, sparsity, clusters, clusters_alone, folder):
    train, test = data
    accuracy = {}
    sizes = {}

    def record(name, model, keras_model=None):
        accuracy[name] = (keras_model or model).evaluate(*test, verbose=0)[1]
        sizes[name] = _gzipped_sizes(model, test[0][:100], folder, f"{name}_{seed}")

    dense = _fit(guide_cnn(seed), train, 20)
    record("float32", dense)
    schedule = kc.pruning.PolynomialDecay(0.0, sparsity, begin_epoch=0, end_epoch=6)
    pruned = _fit(kc.pruning.prune(dense, schedule), train, 12, [kc.pruning.PruningCallback()])
    sparse = compile_classifier(kc.pruning.strip(pruned))
    record("pruned", sparse)
    record("pruned + int8", _fit(kc.quantization.quantize_aware(sparse), train, 3))
    clustered = kc.clustering.strip(_fit(kc.clustering.cluster(dense, clusters_alone), train, 4))
    record("clustered + int8", _fit(kc.quantization.quantize_aware(clustered), train, 3))
    both = kc.clustering.strip(_fit(kc.clustering.cluster(sparse, clusters), train, 4))
    record("pruned + clustered + int8", _fit(kc.quantization.quantize_aware(both), train, 3))
    return accuracy, sizes


def clustering_overhead(data, clusters, epochs=4):
    """Median epoch seconds of clustered fit over plain fit (first epoch dropped: tracing)."""
    train, _ = data
    times = {}
    models = {"plain": guide_cnn(0), "clustered": kc.clustering.cluster(guide_cnn(0), clusters)}
    for name, model in models.items():
        timer = EpochTimer()
        _fit(model, train, epochs, [timer])
        times[name] = float(np.median(timer.times[1:]))
    return times["clustered"] / times["plain"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.85)
    parser.add_argument("--clusters", type=int, default=8, help="clusters of the pruned model")
    parser.add_argument("--clusters-alone", type=int, default=16, help="clusters of the dense model")
    args = parser.parse_args()
    data = kc.datasets.digits()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            runs.append(one_seed(seed, data, args.sparsity, args.clusters, args.clusters_alone, folder))
            print(f"seed {seed} done", flush=True)
    print(f"\nguide CNN on the digits, {args.sparsity:.0%} pruning, {args.clusters} clusters after pruning, "
          f"{args.clusters_alone} alone, {args.seeds} seeds (gzipped size: float32 file / variant file)")
    print(f"{'variant':<28} {'accuracy':>9} {'Δ points':>9} {'TFLite ×':>9} {'ONNX ×':>8}")
    base_accuracy = np.mean([accuracy["float32"] for accuracy, _ in runs])
    for name in runs[0][0]:
        accuracy = np.mean([a[name] for a, _ in runs])
        ratios = [np.mean([s["float32"][suffix] / s[name][suffix] for _, s in runs])
                  for suffix in (".tflite", ".onnx")]
        print(f"{name:<28} {accuracy:>9.4f} {100 * (accuracy - base_accuracy):>+9.2f} "
              f"{ratios[0]:>9.1f} {ratios[1]:>8.1f}")
    print(f"\nclustering epoch / plain epoch: {clustering_overhead(data, args.clusters_alone):.2f}×")


if __name__ == "__main__":
    main()
