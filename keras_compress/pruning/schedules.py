"""Pruning schedules: tfmot's, given in steps or in epochs.

A schedule's `__call__(step)` returns `(should_prune, sparsity)` as in
tensorflow-model-optimization, and the constructors take tfmot's arguments in tfmot's
order (`end_step=-1` included). Two things differ from tfmot's own classes:

- `begin_epoch`/`end_epoch` may replace `begin_step`/`end_step`;
- `frequency` may be left unset.

Both are resolved by `PruningCallback` from the real number of steps per epoch
when training starts. And mask updates are counted back from the end step (tfmot
counts them forward from the begin step), so the last update always falls on the
end step and the schedule reaches its final sparsity whatever the frequency
(tfmot's default frequency of 100 silently misses it on short runs).

The classes are plain Python: only `__call__`, which tfmot's tf_keras wrapper calls inside the
training graph, imports TensorFlow. The tf_keras road registers them with tf_keras
(`keras_compress.pruning.wrapper`); the Keras 3 wrapper saves them itself.
"""

import math
import numbers

__all__ = ["PolynomialDecay", "ConstantSparsity"]

_PACKAGE = "keras_compress"  # their configs name them "keras_compress>PolynomialDecay", ...
# Number of mask updates aimed for over a pruning span when `frequency` is unset.
_UPDATES_PER_SPAN = 10
# tfmot's default, used when nothing tells how long a never-ending schedule runs.
_FALLBACK_FREQUENCY = 100


def _check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _check_count(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


class _EpochAware:
    """Shared step/epoch bookkeeping of the two schedules."""

    _requires_end = False

    def _init_timing(self, begin_step, end_step, begin_epoch, end_epoch, frequency):
        if end_step == -1 and not isinstance(end_step, bool):
            end_step = None  # tfmot's "until training stops"
        for name, value in (("begin_step", begin_step), ("end_step", end_step),
                            ("begin_epoch", begin_epoch), ("end_epoch", end_epoch)):
            _check_count(name, value)
        if frequency is not None and (isinstance(frequency, bool)
                                      or not isinstance(frequency, numbers.Integral)
                                      or frequency < 1):
            raise ValueError(f"frequency must be None or an int >= 1, got {frequency!r}")
        in_steps = begin_step is not None or end_step is not None
        in_epochs = begin_epoch is not None or end_epoch is not None
        if in_steps and in_epochs:
            raise ValueError("Give the schedule in steps (begin_step/end_step) or in epochs "
                             "(begin_epoch/end_epoch), not both.")
        if self._requires_end and end_step is None and end_epoch is None:
            raise ValueError(f"{type(self).__name__} needs an end: pass end_step or end_epoch.")
        begin, end = (begin_epoch, end_epoch) if in_epochs else (begin_step, end_step)
        begin = begin or 0
        if end is not None and (end < begin or (self._requires_end and end == begin)):
            unit = "epoch" if in_epochs else "step"
            relation = "after" if self._requires_end else "at or after"
            raise ValueError(f"end_{unit} ({end}) must come {relation} begin_{unit} ({begin}).")
        self.begin_epoch = begin if in_epochs else None
        self.end_epoch = end_epoch
        self.requested_frequency = frequency
        # tfmot reads these three attributes; `resolve` fills them in.
        self.begin_step = None if in_epochs else begin
        self.end_step = None if in_epochs else (-1 if end is None else end)
        self.frequency = None
        if not in_epochs:
            self._resolve_frequency(steps_per_epoch=None)

    @property
    def in_epochs(self):
        return self.begin_epoch is not None

    @property
    def resolved(self):
        return self.frequency is not None

    def resolve(self, steps_per_epoch):
        """Turns epochs and an unset frequency into steps. Returns True if anything changed."""
        before = (self.begin_step, self.end_step, self.frequency)
        if self.in_epochs:
            if not steps_per_epoch:
                raise ValueError(
                    "This pruning schedule is given in epochs but the number of steps per epoch "
                    "is unknown: pass steps_per_epoch to fit(), or give the schedule in steps.")
            self.begin_step = self.begin_epoch * steps_per_epoch
            self.end_step = -1 if self.end_epoch is None else self.end_epoch * steps_per_epoch
        self._resolve_frequency(steps_per_epoch)
        return before != (self.begin_step, self.end_step, self.frequency)

    def _resolve_frequency(self, steps_per_epoch):
        if self.requested_frequency is not None:
            self.frequency = self.requested_frequency
        elif self.end_step != -1:
            self.frequency = max(1, round((self.end_step - self.begin_step) / _UPDATES_PER_SPAN))
        elif steps_per_epoch:
            self.frequency = steps_per_epoch
        else:
            self.frequency = None if self.in_epochs else _FALLBACK_FREQUENCY

    def prunes_at(self, step):
        """Whether masks are updated at `step` (a Python int), as `__call__` decides in the graph."""
        begin, end = self.begin_step, self.end_step
        if step < begin or 0 <= end < step:
            return False
        return ((end - step) if end >= 0 else (step - begin)) % self.frequency == 0

    def __call__(self, step):
        """tfmot's schedule call on a step tensor: `(should_prune, sparsity)` as TensorFlow tensors,
        what `prunes_at` and `sparsity_at` say for a Python int."""
        if not self.resolved:
            raise RuntimeError(f"{type(self).__name__} is given in epochs and has not been resolved: "
                               "train with keras_compress.pruning.PruningCallback.")
        import tensorflow as tf

        step = tf.cast(step, tf.int64)
        begin, end = self.begin_step, self.end_step
        in_range = tf.logical_and(step >= begin, tf.logical_or(step <= end, end < 0))
        offset = end - step if end >= 0 else step - begin  # counted back from the end step
        should_prune = tf.logical_and(in_range, tf.equal(tf.math.floormod(offset, self.frequency), 0))
        return should_prune, tf.cast(self._sparsity_of_tensor(tf, step), tf.float32)

    def _timing_config(self):
        config = {"frequency": self.requested_frequency}
        if self.in_epochs:
            config.update(begin_epoch=self.begin_epoch, end_epoch=self.end_epoch)
        else:
            config.update(begin_step=self.begin_step,
                          end_step=None if self.end_step == -1 else self.end_step)
        return config

    def get_config(self):
        # tfmot stores {"class_name", "config"}; the registered name keeps tfmot's own
        # classes of the same name from being picked when a pruned model is loaded.
        return {"class_name": f"{_PACKAGE}>{type(self).__name__}", "config": self._own_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class PolynomialDecay(_EpochAware):
    """Sparsity grows from `initial_sparsity` to `final_sparsity` along a polynomial.

    `sparsity(step) = final + (initial - final) * (1 - (step - begin) / (end - begin)) ** power`,
    applied every `frequency` steps between `begin` and `end`.

    Args:
        initial_sparsity: sparsity at the first pruning step, in [0, 1).
        final_sparsity: sparsity reached at the end step, in [0, 1).
        begin_step, end_step: the span in training steps (tfmot semantics).
        begin_epoch, end_epoch: the span in epochs instead; `end_epoch=4` reaches
            `final_sparsity` at the last step of the fourth epoch.
        power: exponent of the decay.
        frequency: steps between mask updates, counted back from the end step; None
            gives about ten updates over the span.

    Example:
        >>> schedule = PolynomialDecay(0.2, 0.8, begin_epoch=1, end_epoch=4)
        >>> schedule.resolve(steps_per_epoch=10)
        True
        >>> schedule.begin_step, schedule.end_step, schedule.frequency
        (10, 40, 3)
    """

    _requires_end = True

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int | None = None,
                 end_step: int | None = None, power: float = 3, frequency: int | None = None, *,
                 begin_epoch: float | None = None, end_epoch: float | None = None):
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        if not isinstance(power, (int, float)) or not math.isfinite(power) or power <= 0:
            raise ValueError(f"power must be a positive number, got {power!r}")
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.power = power
        self._init_timing(begin_step, end_step, begin_epoch, end_epoch, frequency)

    @property
    def target_sparsity(self):
        return self.final_sparsity

    def sparsity_at(self, step: int) -> float:
        """The sparsity at `step` (a Python int), as `__call__` computes it in the graph."""
        progress = min(1.0, max(0.0, (step - self.begin_step) / (self.end_step - self.begin_step)))
        span = self.initial_sparsity - self.final_sparsity
        return self.final_sparsity + span * (1 - progress) ** self.power

    def _sparsity_of_tensor(self, tf, step):
        progress = tf.cast(step - self.begin_step, tf.float64) / (self.end_step - self.begin_step)
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        span = self.initial_sparsity - self.final_sparsity
        return self.final_sparsity + span * (1 - progress) ** self.power

    def _own_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "power": self.power, **self._timing_config()}


class ConstantSparsity(_EpochAware):
    """The same sparsity at every pruning step from `begin` on (until `end`, if given).

    Args:
        target_sparsity: the sparsity, in [0, 1).
        begin_step, end_step: the span in training steps; no end (or -1, as in tfmot) prunes
            until training stops.
        begin_epoch, end_epoch: the span in epochs instead.
        frequency: steps between mask updates; None gives about ten over the span, or one
            per epoch when there is no end.

    Example:
        >>> schedule = ConstantSparsity(0.5)
        >>> schedule.target_sparsity, schedule.begin_step
        (0.5, 0)
    """

    def __init__(self, target_sparsity: float, begin_step: int | None = None, end_step: int | None = None,
                 frequency: int | None = None, *, begin_epoch: float | None = None,
                 end_epoch: float | None = None):
        _check_sparsity("target_sparsity", target_sparsity)
        self.target_sparsity = float(target_sparsity)
        self._init_timing(begin_step, end_step, begin_epoch, end_epoch, frequency)

    def sparsity_at(self, step: int) -> float:
        """The sparsity at `step` (a Python int)."""
        return self.target_sparsity

    def _sparsity_of_tensor(self, tf, step):
        return tf.constant(self.target_sparsity)

    def _own_config(self):
        return {"target_sparsity": self.target_sparsity, **self._timing_config()}
