import numpy as np
import pytest

import keras_compress as kc

PolynomialDecay = kc.pruning.PolynomialDecay
ConstantSparsity = kc.pruning.ConstantSparsity


def _final_step_sparsity(schedule):
    should_prune, sparsity = schedule(schedule.end_step)
    return bool(should_prune), float(sparsity)


@pytest.mark.parametrize("steps_per_epoch", [1, 7, 13, 42, 250])
def test_epoch_schedule_reaches_final_sparsity_at_its_end_step(steps_per_epoch):
    schedule = PolynomialDecay(0.1, 0.8, begin_epoch=1, end_epoch=4)
    schedule.resolve(steps_per_epoch)
    assert (schedule.begin_step, schedule.end_step) == (steps_per_epoch, 4 * steps_per_epoch)
    assert schedule.prunes_at(schedule.end_step) and not schedule.prunes_at(schedule.end_step + 1)
    assert _final_step_sparsity(schedule) == (True, pytest.approx(0.8))


@pytest.mark.parametrize("end_step", [150, 257])
def test_schedule_in_steps_reaches_final_sparsity_where_tfmot_misses_it(end_step):
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=end_step)
    assert schedule.frequency == round(end_step / 10)
    assert _final_step_sparsity(schedule) == (True, pytest.approx(0.5))
    updates = [step for step in range(end_step + 5) if schedule.prunes_at(step)]
    graph_updates = [step for step in range(end_step + 5) if bool(schedule(step)[0])]
    assert updates == graph_updates and updates[-1] == end_step and len(updates) in (10, 11)
    import tensorflow_model_optimization as tfmot

    tfmot_schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=end_step)
    assert not bool(tfmot_schedule(end_step)[0])  # the reason for all this


def test_explicit_frequency_is_kept_and_still_ends_on_the_end_step():
    schedule = PolynomialDecay(0.0, 0.5, begin_step=10, end_step=115, frequency=20)
    assert schedule.resolve(steps_per_epoch=33) is False
    assert schedule.frequency == 20
    assert [s for s in range(200) if schedule.prunes_at(s)] == [15, 35, 55, 75, 95, 115]


def test_constant_sparsity_without_end_prunes_once_per_epoch():
    schedule = ConstantSparsity(0.5)
    schedule.resolve(steps_per_epoch=12)
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (0, -1, 12)
    should_prune, sparsity = schedule(24)
    assert bool(should_prune) and float(sparsity) == pytest.approx(0.5)
    assert not bool(schedule(25)[0])


def test_epoch_schedule_needs_known_steps_per_epoch():
    schedule = ConstantSparsity(0.5, begin_epoch=0, end_epoch=2)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedule.resolve(None)
    with pytest.raises(RuntimeError, match="PruningCallback"):
        schedule(3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(initial_sparsity=0.0, final_sparsity=1.2, end_step=10),
     r"final_sparsity must be in \[0, 1\), got 1.2"),
    (dict(initial_sparsity=-0.1, final_sparsity=0.5, end_step=10), "initial_sparsity must be in"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=10, end_step=5),
     r"end_step \(5\) must come after begin_step \(10\)"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_epoch=3, end_epoch=3), "end_epoch"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5), "needs an end"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_epoch=3), "not both"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, end_step=10, frequency=0), "frequency must be"),
])
def test_polynomial_decay_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolynomialDecay(**kwargs)


def test_constant_sparsity_rejects_sparsity_of_one():
    with pytest.raises(ValueError, match=r"target_sparsity must be in \[0, 1\)"):
        ConstantSparsity(1.0)


@pytest.mark.parametrize("schedule", [
    PolynomialDecay(0.2, 0.8, begin_epoch=1, end_epoch=4, power=2),
    PolynomialDecay(0.0, 0.5, begin_step=5, end_step=50, frequency=5),
    ConstantSparsity(0.3, begin_step=2),
])
def test_schedule_config_round_trips(schedule):
    config = schedule.get_config()
    assert config["class_name"].startswith("keras_compress>")
    clone = type(schedule).from_config(config["config"])
    assert clone.get_config() == config
    for steps in (10, 30):
        schedule.resolve(steps), clone.resolve(steps)
        values = [tuple(np.asarray(v).item() for v in s(20)) for s in (schedule, clone)]
        assert values[0] == values[1]


def test_numpy_numbers_are_taken_like_python_ones():
    schedule = kc.pruning.PolynomialDecay(np.float32(0.2), np.float64(0.5), begin_step=np.int64(0),
                                          end_step=np.int32(100))
    assert schedule.final_sparsity == pytest.approx(0.5)
    assert kc.pruning.ConstantSparsity(np.float32(0.5)).target_sparsity == pytest.approx(0.5)
