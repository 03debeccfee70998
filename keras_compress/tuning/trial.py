"""One candidate of a search: train, compress, export and measure it."""

import json
import os

import numpy as np

from keras_compress import clustering, pruning, quantization
from keras_compress._flavour import keras_for
from keras_compress.benchmark.weights import gzipped_bytes
from keras_compress.distillation import Distiller
from keras_compress.export import export
from keras_compress.pruning.report import kernels
from keras_compress.runtime.timing import latencies

__all__ = ["Training", "train_candidate", "measure", "outputs_logits", "head"]


def outputs_logits(model):
    """False when the model ends in a softmax (it outputs probabilities), else True."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") != "softmax"


class Training:
    """How every candidate is trained: epochs, batch size, learning rate, the teacher."""

    def __init__(self, epochs, batch_size, learning_rate, teacher, fine_tune_epochs=1):
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.teacher, self.fine_tune_epochs = teacher, fine_tune_epochs  # per clustering or QAT stage

    def loss(self, model, labels):
        keras = keras_for(model).keras
        from_logits = outputs_logits(model)
        if np.ndim(labels) == 2:
            return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)

    def fit(self, model, train_data, values, epochs, callbacks=()):
        """Fits `model` (by distillation when there is a teacher and the values say how)."""
        x, y = train_data
        optimizer = keras_for(model).keras.optimizers.Adam(self.learning_rate)
        if self.teacher is not None and "temperature" in values:
            trainer = Distiller(student=model, teacher=self.teacher,
                                student_from_logits=outputs_logits(model),
                                teacher_from_logits=outputs_logits(self.teacher))
            trainer.compile(optimizer=optimizer, student_loss_fn=self.loss(model, y),
                            temperature=values["temperature"], alpha=values["alpha"])
        else:
            trainer = model
            trainer.compile(optimizer=optimizer, loss=self.loss(model, y))
        trainer.fit(x, y, epochs=epochs, batch_size=self.batch_size, verbose=0, callbacks=list(callbacks))


def train_candidate(model, train_data, values, training, epochs):
    """Prunes `model` while training it for `epochs` (sparsity rising over the first two
    thirds), strips it, shrinks filter-pruned models, then clusters and fine-tunes with QAT if
    asked (QAT keeps the zeros and the clusters)."""
    end = (2 * epochs) // 3
    target = values["final_sparsity"]
    schedule = (pruning.PolynomialDecay(0.0, target, begin_epoch=0, end_epoch=end) if end >= 1
                else pruning.ConstantSparsity(target, begin_epoch=0))
    wrapped = pruning.prune(model, schedule, granularity=values["granularity"],
                            scope="global" if values["granularity"] == "weight" else "layer")
    training.fit(wrapped, train_data, values, epochs, callbacks=[pruning.PruningCallback()])
    candidate = pruning.strip(wrapped)
    if values["granularity"] == "filter":
        candidate = pruning.shrink(candidate)
    if values.get("clusters"):
        count = values["clusters"]
        too_small = [layer.name for layer in candidate.layers  # they keep their weights as they are
                     if any(weight.shape.num_elements() < count for weight in kernels(layer))]
        clustered = clustering.cluster(candidate, count, exclude=too_small)
        training.fit(clustered, train_data, values, training.fine_tune_epochs)
        candidate = clustering.strip(clustered)
    if values["qat"]:
        candidate = quantization.quantize_aware(candidate)
        training.fit(candidate, train_data, values, training.fine_tune_epochs)
    return candidate


def head(x, rows):
    """The first `rows` rows of an array, a list of arrays or a dict of arrays."""
    if isinstance(x, dict):
        return {key: value[:rows] for key, value in x.items()}
    if isinstance(x, (list, tuple)):
        return [value[:rows] for value in x]
    return x[:rows]


def _accuracy(outputs, labels):
    predictions = np.asarray(outputs if not isinstance(outputs, list) else outputs[0]).argmax(-1)
    labels = np.asarray(labels)
    return float(np.mean(predictions == (labels.argmax(-1) if labels.ndim == 2 else labels)))


def measure(model, folder, validation_data, artifact_format):
    """Exports `model` into `folder` and measures the artifact on this machine:
    `{"size_bytes" (gzipped), "latency_ms" (p50, one row), "accuracy"}`."""
    os.makedirs(folder, exist_ok=True)
    x, y = validation_data
    path = os.path.join(folder, f"model.{artifact_format}")
    artifact = export(model, path, sample_data=head(x, 64), overwrite=True, verify="warn",
                      compare_speed=False)
    runner = artifact.load()
    metrics = {"size_bytes": float(gzipped_bytes(path)),
               "latency_ms": float(np.median(latencies(runner, head(x, 1), warmup=3, runs=30)) * 1e3),
               "accuracy": _accuracy(runner.predict(x, batch_size=256), y)}
    model.save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "metrics.json"), "w") as file:
        json.dump(dict(metrics, artifact=os.path.basename(path), precision=artifact.precision), file)
    return metrics
