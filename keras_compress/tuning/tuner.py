"""A keras-tuner tuner whose trials compress a model (keras-tuner's stock `Tuner` rejects
tf_keras models when Keras 3 is installed, so this subclasses `BaseTuner` and overrides
`run_trial`)."""

import keras_tuner

from keras_compress._flavour import flavour_of, keras_for
from keras_compress.tuning.space import declare
from keras_compress.tuning.trial import measure, train_candidate

__all__ = ["CompressionTuner", "CandidateModel", "OBJECTIVE"]

OBJECTIVE = keras_tuner.Objective("score", direction="min")


class CandidateModel(keras_tuner.HyperModel):
    """Declares the compression space and builds each trial's starting model: a copy of a
    trained model's weights, or `build_fn(hp)` (which may declare hyperparameters of its own)."""

    def __init__(self, model_or_build_fn, space):
        super().__init__()
        self.source, self.space = model_or_build_fn, space

    def build(self, hp):
        declare(hp, self.space)
        if flavour_of(self.source) is None:
            return self.source(hp)
        return keras_for(self.source).copy_model(self.source)

    def declare_hyperparameters(self, hp):
        self.build(hp)


class CompressionTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Each trial trains, compresses, exports and measures one candidate.

    The score (minimized) is the objective ("size": gzipped artifact bytes, or "latency":
    p50 ms at batch 1 on this machine); a candidate whose accuracy falls more than
    `max_accuracy_drop` below the baseline's is infeasible and scores ten times the
    baseline's value plus its drop, worse than any feasible one.
    """

    def __init__(self, oracle, hypermodel, *, baseline, objective, max_accuracy_drop, training,
                 artifact_format, **kwargs):
        super().__init__(oracle, hypermodel, **kwargs)
        self.baseline, self.objective_name = baseline, objective
        self.max_accuracy_drop, self.training = max_accuracy_drop, training
        self.artifact_format = artifact_format

    def run_trial(self, trial, train_data, validation_data, verbose=1):
        hp = trial.hyperparameters
        model = self.hypermodel.build(hp)
        values = {name: hp.get(name)
                  for name in ("final_sparsity", "granularity", "qat", "clusters", "temperature", "alpha")
                  if name in hp.values}
        epochs = hp.values.get("tuner/epochs", self.training.epochs)
        candidate = train_candidate(model, train_data, values, self.training, epochs)
        metrics = measure(candidate, self.get_trial_dir(trial.trial_id), validation_data,
                          self.artifact_format)
        drop = self.baseline["accuracy"] - metrics["accuracy"]
        feasible = drop <= self.max_accuracy_drop
        value = metrics["size_bytes" if self.objective_name == "size" else "latency_ms"]
        reference = self.baseline["size_bytes" if self.objective_name == "size" else "latency_ms"]
        score = value if feasible else 10 * reference + drop
        return dict(metrics, accuracy_drop=drop, feasible=float(feasible), score=score)
