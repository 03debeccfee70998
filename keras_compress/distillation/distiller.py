"""`Distiller`: a Keras model that trains a student on a frozen teacher's softened outputs."""

import numpy as np
import tensorflow as tf

from keras_compress._keras import check_model, forget_step_function, is_graph_model, keras
from keras_compress.distillation.losses import as_logits, check_temperature_and_alpha, soft_target_loss

__all__ = ["Distiller"]


def _per_example(loss_fn):
    """`loss_fn` returning one value per example (Keras losses reduce by default)."""
    loss_fn = keras.losses.get(loss_fn)
    if isinstance(loss_fn, keras.losses.Loss):
        config = dict(loss_fn.get_config(), reduction=keras.losses.Reduction.NONE)
        return type(loss_fn).from_config(config)
    return loss_fn


def _mean_over_features(values):
    rank = values.shape.rank
    return tf.reduce_mean(values, axis=list(range(1, rank))) if rank and rank > 1 else values


def _check_built(model, argument):
    check_model(model, argument)
    if not model.built:
        raise ValueError(f"`{argument}` is not built: give it an input shape (keras.Input) or call it "
                         "on data once before distilling.")


def _output_shape(model):
    """The model's output shape, or None for a subclassed model (Keras records none for it)."""
    try:
        return model.output_shape
    except (AttributeError, RuntimeError):
        return None


def _check_tf_keras_object(value, argument):
    """Refuses Keras 3 optimizers, losses and metrics, which a tf_keras model cannot use."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        module = type(item).__module__ or ""
        if module.split(".")[0] == "keras":
            raise TypeError(f"{argument} is a Keras 3 object "
                            f"({module}.{type(item).__name__}), but this Distiller "
                            "trains tf_keras models: build it from keras_compress.keras (tf_keras), e.g. "
                            "kc.keras.optimizers.Adam(), or pass its name as a string.")


def _find_layer(model, name, argument):
    """A layer by name, also inside pruning wrappers (`prune_low_magnitude_<name>`)."""
    for layer in model.layers:
        if name in (layer.name, getattr(getattr(layer, "layer", None), "name", None)):
            return layer
    raise ValueError(f"{argument} layer {name!r} does not exist in model {model.name!r}. Its layers "
                     f"are: {[layer.name for layer in model.layers]}")


@keras.utils.register_keras_serializable(package="keras_compress")
class Distiller(keras.Model):
    """Trains `student` to match a frozen `teacher` as well as the true labels.

    The training loss is
    `alpha * student_loss(y, student(x)) +
    (1 - alpha) * T**2 * KL(softmax(teacher(x) / T) || softmax(student(x) / T))`
    plus, with `features`, the mean squared error between paired intermediate
    outputs. The soft term is scaled by `T**2` so that its gradients keep their
    size as the temperature T changes. The teacher is never updated and always
    called with `training=False`; the caller's model is left as it was (it is not
    set to `trainable=False`). `fit` and `evaluate` report `loss` (the total above),
    `student_loss` (against the labels) and `distillation_loss` (the soft term).
    Data without labels (`fit(x)`, the usual case: a large unlabeled pool) trains
    on the teacher's outputs alone: the loss is then the soft term. Metrics and
    `predict` use the student. `distiller.student` is an ordinary model to save
    and export on its own; `alpha` and `temperature` are saved with the Distiller.

    Args:
        student: the tf_keras model to train (may be pruned or quantization-aware, or a
            built subclassed model); keyword only.
        teacher: a trained tf_keras model with the same output shape; keyword only.
        alpha, temperature: the loss settings of a saved Distiller (`compile` sets them).
        student_from_logits, teacher_from_logits: whether each outputs logits
            (True) or probabilities (False).
        features: optional `[(teacher_layer, student_layer), ...]` whose outputs are
            matched by MSE; a learned projection (1x1 convolution or Dense, not part
            of the student) bridges different widths.
        cache_teacher: compute the teacher's outputs once, before training, instead of
            every epoch. Only for array inputs (NumPy), whose samples never change
            between epochs; shuffling is fine. `fit` refuses it for `tf.data`
            datasets and generators, which may augment samples randomly.

    Example:
        >>> import numpy as np, keras_compress as kc
        >>> keras = kc.keras
        >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> distiller = kc.Distiller(student=student, teacher=teacher)
        >>> distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=3.0)
        >>> history = distiller.fit(np.ones((8, 4)), np.zeros(8), epochs=1, verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'distillation_loss', 'loss', 'student_loss']
    """

    def __init__(self, *models, student=None, teacher=None, student_from_logits=True,
                 teacher_from_logits=True,
                 features=None, cache_teacher=False, alpha=None, temperature=None, **kwargs):
        if models or student is None or teacher is None:
            raise TypeError("Distiller takes its models by keyword: Distiller(student=..., teacher=...). "
                            "(Keras' own Distiller takes the teacher first: a positional order would "
                            "silently train the wrong model.)")
        super().__init__(**kwargs)
        _check_built(student, "student")
        _check_built(teacher, "teacher")
        student_shape, teacher_shape = _output_shape(student), _output_shape(teacher)
        if student_shape and teacher_shape and student_shape[1:] != teacher_shape[1:]:
            raise ValueError(f"The student's output shape {student_shape} differs from the "
                             f"teacher's {teacher_shape}: they must predict the same classes.")
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
        self._trackers = [keras.metrics.Mean(name) for name in ("loss", "student_loss", "distillation_loss")]
        if self.features:
            self._trackers.append(keras.metrics.Mean("feature_loss"))
        self.built = True  # every weight exists already: the student's, teacher's and projections'

    def _build_feature_models(self):
        for pair in self.features:
            if len(pair) != 2:
                raise ValueError(f"features must be (teacher_layer, student_layer) pairs, got {pair!r}")
        teacher_layers = [_find_layer(self.teacher, t, "Teacher") for t, _ in self.features]
        student_layers = [_find_layer(self.student, s, "Student") for _, s in self.features]
        for model, argument in ((self.teacher, "teacher"), (self.student, "student")):
            if not is_graph_model(model):
                raise ValueError(f"Feature distillation needs a Sequential or functional {argument}.")
        self._teacher_features = keras.Model(self.teacher.inputs,
                                             [self.teacher.output]
                                             + [layer.output for layer in teacher_layers])
        self._student_features = keras.Model(self.student.inputs,
                                             [self.student.output]
                                             + [layer.output for layer in student_layers])
        for t_layer, s_layer in zip(teacher_layers, student_layers):
            t_shape, s_shape = t_layer.output_shape, s_layer.output_shape
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

    # -- Keras API ------------------------------------------------------------------
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
        alpha = alpha if alpha is not None else self.alpha if self.alpha is not None else 0.1
        temperature = temperature if temperature is not None else \
            self.temperature if self.temperature is not None else 3.0
        check_temperature_and_alpha(temperature, alpha)
        for value, argument in ((optimizer, "optimizer"), (metrics or [], "metrics"),
                                (student_loss_fn, "student_loss_fn"),
                                (distillation_loss_fn, "distillation_loss_fn")):
            _check_tf_keras_object(value, argument)
        if "loss" in kwargs:
            raise ValueError("Distiller.compile takes student_loss_fn and distillation_loss_fn, not loss.")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = _per_example(student_loss_fn or keras.losses.SparseCategoricalCrossentropy(
            from_logits=self.student_from_logits))
        self.distillation_loss_fn = (None if distillation_loss_fn is None
                                     else _per_example(distillation_loss_fn))
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.feature_weight = float(feature_weight)

    @property
    def metrics(self):
        # The loss trackers first, as Keras lists "loss" first; Keras tracks them already.
        return self._trackers + [m for m in super().metrics if all(m is not t for t in self._trackers)]

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _soft_loss(self, student_out, teacher_out):
        student_logits = as_logits(student_out, self.student_from_logits)
        teacher_logits = as_logits(teacher_out, self.teacher_from_logits)
        if self.distillation_loss_fn is None:
            return soft_target_loss(student_logits, teacher_logits, self.temperature)
        soften = lambda logits: tf.nn.softmax(tf.cast(logits, tf.float32) / self.temperature)  # noqa: E731
        loss = self.distillation_loss_fn(soften(teacher_logits), soften(student_logits))
        return _mean_over_features(loss) * self.temperature ** 2

    @staticmethod
    def _outputs(model, features, x, training):
        """`(output, [feature outputs])` of the teacher or the student."""
        if features is None:
            return model(x, training=training), []
        outputs = features(x, training=training)
        return outputs[0], list(outputs[1:])

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.cache_teacher:
            y, teacher_out, teacher_feats = y[0], y[1], list(y[2:])
        else:
            teacher_out, teacher_feats = self._outputs(self.teacher, self._teacher_features, x, False)
        with tf.GradientTape() as tape:
            student_out, student_feats = self._outputs(self.student, self._student_features, x, True)
            hard, soft, per_example = self._loss_terms(y, student_out, teacher_out)
            feature = 0.0
            if self.features:
                feature = tf.add_n([
                    _mean_over_features(tf.square((project(s) if project else s) - t))
                    for project, s, t in zip(self.projections, student_feats, teacher_feats)])
                per_example += self.feature_weight * feature
            loss = tf.nn.compute_average_loss(per_example, sample_weight=sample_weight)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        variables = self.student.trainable_variables + [
            v for project in self.projections if project for v in project.trainable_variables]
        self.optimizer.minimize(loss, variables, tape=tape)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft,
                     "feature_loss": feature}, sample_weight)
        return self.compute_metrics(x, y, student_out, sample_weight)

    def _loss_terms(self, y, student_out, teacher_out):
        """`(student loss or None, soft loss, per-example total)`; without labels the total is the
        soft loss."""
        soft = self._soft_loss(student_out, teacher_out)
        if y is None:
            return None, soft, soft
        hard = self.student_loss_fn(y, student_out)
        return hard, soft, self.alpha * hard + (1.0 - self.alpha) * soft

    def _update_trackers(self, values, sample_weight):
        for tracker in self._trackers:
            if values.get(tracker.name) is not None:
                tracker.update_state(values[tracker.name], sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_out = self.student(x, training=False)
        teacher_out = self.teacher(x, training=False)
        hard, soft, per_example = self._loss_terms(y, student_out, teacher_out)
        self._update_trackers({"loss": per_example, "student_loss": hard, "distillation_loss": soft},
                              sample_weight)
        if y is not None:
            self.compiled_metrics.update_state(y, student_out, sample_weight)
        trackers = self._trackers[:3] if y is not None else [self._trackers[0], self._trackers[2]]
        return {m.name: m.result()
                for m in trackers + (self.compiled_metrics.metrics if y is not None else [])}

    def compute_metrics(self, x, y, y_pred, sample_weight):
        if y is None:  # no labels: no student loss, no metrics
            return {m.name: m.result() for m in self._trackers if m.name != "student_loss"}
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def _new_step_if_labels_change(self, kind, x, y):
        # Data with and without labels trace different steps, and the labeled one builds the
        # metrics' variables, which a tf.function may create on its first trace only.
        labeled = y is not None or (isinstance(x, tf.data.Dataset) and isinstance(x.element_spec, tuple))
        if getattr(self, f"_{kind}_labeled", labeled) != labeled:
            forget_step_function(self, kind)
        setattr(self, f"_{kind}_labeled", labeled)

    def fit(self, x=None, y=None, *args, sample_weight=None, class_weight=None, **kwargs):
        self._new_step_if_labels_change("train", x, y)
        if not self.cache_teacher:
            return super().fit(x, y, *args, sample_weight=sample_weight, class_weight=class_weight, **kwargs)
        if not isinstance(x, np.ndarray) or y is None:
            raise ValueError(
                "cache_teacher=True needs NumPy array inputs and labels: a tf.data dataset or generator "
                "may give different samples every epoch (random augmentation), so cached teacher "
                "outputs would be wrong. Pass arrays, or create the Distiller with cache_teacher=False.")
        batch_size = kwargs.get("batch_size") or 32
        cached = (self._teacher_features or self.teacher).predict(x, batch_size=batch_size, verbose=0)
        cached = list(cached) if isinstance(cached, (list, tuple)) else [cached]
        if class_weight is not None:  # Keras applies class weights to single targets only
            weights = np.array([class_weight[int(label)] for label in np.asarray(y).reshape(len(y))])
            sample_weight = weights if sample_weight is None else sample_weight * weights
        return super().fit(x, (np.asarray(y), *cached), *args, sample_weight=sample_weight, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._new_step_if_labels_change("test", x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def get_config(self):
        return {"student": keras.layers.serialize(self.student),
                "teacher": keras.layers.serialize(self.teacher),
                "student_from_logits": self.student_from_logits,
                "teacher_from_logits": self.teacher_from_logits,
                "features": [list(pair) for pair in self.features], "cache_teacher": self.cache_teacher,
                "alpha": self.alpha, "temperature": self.temperature, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.layers.deserialize(config["student"])
        config["teacher"] = keras.layers.deserialize(config["teacher"])
        return cls(**config)
