"""What the tf_keras and the Keras 3 `Distiller` share: checking the models, the feature
models and projections, the loss settings, and the saved configuration. Each Distiller
subclasses this and its flavour's `keras.Model`; only the training step differs."""

import numpy as np

from keras_compress._flavour import check_model, flavour_of, flavour_title, keras_for
from keras_compress.distillation.losses import check_temperature_and_alpha

__all__ = ["DistillerSettings", "check_flavour_objects", "per_example"]

_LOSS_NAMES = ("loss", "student_loss", "distillation_loss")


def check_flavour_objects(value, argument, flavour):
    """Refuses Keras objects (optimizers, losses, metrics, callbacks) of the other Keras flavour;
    keras_compress's own objects work with both."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if (type(item).__module__ or "").startswith("keras_compress"):
            continue
        other = flavour_of(item)
        if other is not None and other != flavour:
            (model_kind, model_import), (item_kind, _) = flavour_title(flavour), flavour_title(other)
            raise TypeError(
                f"{argument} is a {item_kind} object ({type(item).__module__}.{type(item).__name__}), but "
                f"the models are {model_kind} models: build it with the models' Keras ({model_import}), "
                "or pass its name as a string.")


def per_example(loss_fn, keras):
    """`loss_fn` (a Keras loss or its name) returning one value per example (Keras losses reduce
    by default); `keras` is the models' Keras."""
    loss_fn = keras.losses.get(loss_fn)
    if isinstance(loss_fn, keras.losses.Loss):
        return type(loss_fn).from_config(dict(loss_fn.get_config(), reduction="none"))
    return loss_fn


def _output_shape(model):
    """The model's output shape, or None for a subclassed model (Keras records none for it)."""
    try:
        return tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, RuntimeError, TypeError, ValueError):
        return None


def _find_layer(model, name, argument):
    """A layer by name, also inside pruning wrappers (`prune_low_magnitude_<name>`)."""
    for layer in model.layers:
        if name in (layer.name, getattr(getattr(layer, "layer", None), "name", None)):
            return layer
    raise ValueError(f"{argument} layer {name!r} does not exist in model {model.name!r}. Its layers "
                     f"are: {[layer.name for layer in model.layers]}")


class DistillerSettings:
    """The flavour-independent part of a Distiller (a mixin before `keras.Model`)."""

    def _check_models(self, models, student, teacher):
        if models or student is None or teacher is None:
            raise TypeError("Distiller takes its models by keyword: Distiller(student=..., teacher=...). "
                            "(Keras' own Distiller takes the teacher first: a positional order would "
                            "silently train the wrong model.)")
        for model, argument in ((student, "student"), (teacher, "teacher")):
            check_model(model, argument, flavours=(self.flavour,), action="distill")
            if not model.built:
                raise ValueError(f"`{argument}` is not built: give it an input shape (keras.Input) or call "
                                 "it on data once before distilling.")
        student_shape, teacher_shape = _output_shape(student), _output_shape(teacher)
        if student_shape and teacher_shape and student_shape[1:] != teacher_shape[1:]:
            raise ValueError(f"The student's output shape {student_shape} differs from the "
                             f"teacher's {teacher_shape}: they must predict the same classes.")

    def _init_settings(self, student, teacher, student_from_logits, teacher_from_logits, features,
                       cache_teacher, alpha, temperature):
        if alpha is not None or temperature is not None:
            check_temperature_and_alpha(3.0 if temperature is None else temperature,
                                        0.1 if alpha is None else alpha)
        self.alpha, self.temperature = alpha, temperature
        self.student = student
        # The teacher stays as the caller made it (trainable or not): only the student's and
        # the projections' variables are ever updated, and the teacher runs with training=False.
        self.teacher = teacher
        self.student_from_logits = bool(student_from_logits)
        self.teacher_from_logits = bool(teacher_from_logits)
        self.cache_teacher = bool(cache_teacher)
        self.features = [tuple(pair) for pair in features or []]
        self._student_features = self._teacher_features = None
        self.projections = []
        if self.features:
            self._build_feature_models()

    def _build_feature_models(self):
        keras = keras_for(self.student).keras
        for pair in self.features:
            if len(pair) != 2:
                raise ValueError(f"features must be (teacher_layer, student_layer) pairs, got {pair!r}")
        teacher_layers = [_find_layer(self.teacher, t, "Teacher") for t, _ in self.features]
        student_layers = [_find_layer(self.student, s, "Student") for _, s in self.features]
        for model, argument in ((self.teacher, "teacher"), (self.student, "student")):
            if not keras_for(model).is_graph_model(model):
                raise ValueError(f"Feature distillation needs a Sequential or functional {argument}.")
        self._teacher_features = keras.Model(
            self.teacher.inputs, [self.teacher.outputs[0]] + [layer.output for layer in teacher_layers])
        self._student_features = keras.Model(
            self.student.inputs, [self.student.outputs[0]] + [layer.output for layer in student_layers])
        for t_layer, s_layer in zip(teacher_layers, student_layers):
            t_shape, s_shape = tuple(t_layer.output.shape), tuple(s_layer.output.shape)
            if len(t_shape) != len(s_shape) or t_shape[1:-1] != s_shape[1:-1]:
                raise ValueError(f"Feature pair ({t_layer.name!r}, {s_layer.name!r}): outputs "
                                 f"{t_shape} and {s_shape} differ in more than their last axis.")
            if t_shape[-1] == s_shape[-1]:
                self.projections.append(None)
                continue
            name = f"project_{s_layer.name}"
            if len(s_shape) == 4:
                projection = keras.layers.Conv2D(t_shape[-1], 1, name=name)
            else:
                projection = keras.layers.Dense(t_shape[-1], name=name)
            projection.build(s_shape)  # built now, so a saved Distiller loads its weights
            self.projections.append(projection)

    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None,
                alpha=None, temperature=None, feature_weight=1.0, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            metrics: metrics of the student's outputs against the labels.
            student_loss_fn: the hard loss; default sparse categorical cross-entropy
                matching `student_from_logits`.
            distillation_loss_fn: `fn(teacher_soft_probs, student_soft_probs)`; default KL
                divergence. Its value is multiplied by `temperature**2`.
            alpha: weight of the student loss, in [0, 1]; the soft term gets `1 - alpha`.
                None: the saved Distiller's, else 0.1.
            temperature: softening temperature, > 0. None: the saved Distiller's, else 3.0.
            feature_weight: weight of the feature MSE term (with `features`).
        """
        keras = keras_for(self.student).keras
        self._compile_settings(optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha, temperature,
                               feature_weight, kwargs)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = per_example(student_loss_fn or keras.losses.SparseCategoricalCrossentropy(
            from_logits=self.student_from_logits), keras)
        self.distillation_loss_fn = (None if distillation_loss_fn is None
                                     else per_example(distillation_loss_fn, keras))

    def _compile_settings(self, optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha, temperature,
                          feature_weight, kwargs):
        """Checks `compile`'s arguments and stores the loss settings (before any work)."""
        alpha = alpha if alpha is not None else self.alpha if self.alpha is not None else 0.1
        temperature = temperature if temperature is not None else \
            self.temperature if self.temperature is not None else 3.0
        check_temperature_and_alpha(temperature, alpha)
        for value, argument in ((optimizer, "optimizer"), (metrics or [], "metrics"),
                                (student_loss_fn, "student_loss_fn"),
                                (distillation_loss_fn, "distillation_loss_fn")):
            check_flavour_objects(value, argument, self.flavour)
        if "loss" in kwargs:
            raise ValueError("Distiller.compile takes student_loss_fn and distillation_loss_fn, not loss.")
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)

    def _new_step_if_labels_change(self, kind, x, y):
        """Data with and without labels trace different steps, and the labeled one builds the
        metrics' variables, which a tf.function may create on its first trace only."""
        labeled = y is not None or _is_labeled_dataset(x)
        if getattr(self, f"_{kind}_labeled", labeled) != labeled:
            keras_for(self.student).forget_step_function(self, kind)
        setattr(self, f"_{kind}_labeled", labeled)

    def _cached_targets(self, x, y, sample_weight, class_weight, batch_size):
        """`(targets, sample_weight)` for `fit` with `cache_teacher`: the labels followed by the
        teacher's outputs (and features) on `x`, computed once; class weights become sample
        weights, since Keras applies them to single targets only."""
        if not isinstance(x, np.ndarray) or y is None:
            raise ValueError(
                "cache_teacher=True needs NumPy array inputs and labels: a tf.data dataset or generator "
                "may give different samples every epoch (random augmentation), so cached teacher "
                "outputs would be wrong. Pass arrays, or create the Distiller with cache_teacher=False.")
        cached = (self._teacher_features or self.teacher).predict(x, batch_size=batch_size or 32, verbose=0)
        cached = list(cached) if isinstance(cached, (list, tuple)) else [cached]
        if class_weight is not None:
            weights = np.array([class_weight[int(label)] for label in np.asarray(y).reshape(len(y))])
            sample_weight = weights if sample_weight is None else sample_weight * weights
        return (np.asarray(y), *cached), sample_weight

    def _settings_config(self, serialize):
        return {"flavour": self.flavour,
                "student": serialize(self.student), "teacher": serialize(self.teacher),
                "student_from_logits": self.student_from_logits,
                "teacher_from_logits": self.teacher_from_logits,
                "features": [list(pair) for pair in self.features], "cache_teacher": self.cache_teacher,
                "alpha": self.alpha, "temperature": self.temperature, "name": self.name}

    @classmethod
    def _from_settings_config(cls, config, deserialize):
        """The Distiller `_settings_config` describes, its models rebuilt by `deserialize`."""
        config = dict(config)
        flavour = config.pop("flavour", cls.flavour)  # files saved before the key existed lack it
        if flavour != cls.flavour:
            raise ValueError(f"This Distiller config is for {flavour} models; {cls.__name__} builds "
                             f"{cls.flavour} ones: use keras_compress.Distiller.from_config.")
        config["student"], config["teacher"] = deserialize(config["student"]), deserialize(config["teacher"])
        return cls(**config)


def _is_labeled_dataset(x):
    """Whether `x` is a tf.data dataset of `(x, y)` batches (without importing TensorFlow for
    other data: on the JAX backend it may not be installed)."""
    if not type(x).__module__.startswith("tensorflow"):
        return False
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset) and isinstance(x.element_spec, tuple)
