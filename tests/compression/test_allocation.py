"""The allocation's pieces, on tables made up for the purpose: curves, the removal path, the bisection."""

import pytest

from keras_compress.compression.allocation import Curve, first_meeting, grid, predicted, removal_path


def test_a_curve_starts_at_zero_interpolates_and_never_falls():
    curve = Curve((0.25, 0.5, 0.75), [0.02, 0.01, 0.3])  # a noisy scan: 50% scored better than 25%
    assert curve(0) == 0
    assert curve(0.125) == pytest.approx(0.01)
    assert curve(0.5) == pytest.approx(0.02)  # flattened to the 25% value, never below it
    assert curve(0.75) == pytest.approx(0.3)
    assert Curve((0.5,), [-0.1])(0.5) == 0  # a removal that "helps" costs nothing, not less


def test_the_grid_holds_the_scanned_shares_and_sixteenths_up_to_the_largest():
    assert grid((0.25, 0.5)) == [0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5]
    assert grid((0.3,)) == [0.0625, 0.125, 0.1875, 0.25, 0.3]


def test_the_path_removes_the_cheap_group_first_and_ends_at_the_largest_shares():
    shares = [0.25, 0.5]
    drops = {"robust": Curve(shares, [0.0, 0.01]), "fragile": Curve(shares, [0.2, 0.5])}
    saves = {"robust": Curve(shares, [1.0, 2.0]), "fragile": Curve(shares, [1.0, 2.0])}
    path = removal_path(drops, {"ms": saves}, {"ms": 10.0}, {"ms": 5.0}, dict.fromkeys(drops, shares))
    assert path[0] == {"robust": 0.25, "fragile": 0.0}
    assert path[1] == {"robust": 0.5, "fragile": 0.0}
    assert path[-1] == {"robust": 0.5, "fragile": 0.5}
    for before, after in zip(path, path[1:]):  # every step removes more, nothing comes back
        assert all(after[g] >= before[g] for g in before) and after != before


def test_a_group_that_saves_nothing_is_left_out_until_the_last_plan():
    shares = [0.5]
    drops = {"a": Curve(shares, [0.0]), "useless": Curve(shares, [0.0])}
    saves = {"a": Curve(shares, [1.0]), "useless": Curve(shares, [0.0])}
    path = removal_path(drops, {"ms": saves}, {"ms": 10.0}, {"ms": 5.0}, dict.fromkeys(drops, shares))
    assert path == [{"a": 0.5, "useless": 0.0}, {"a": 0.5, "useless": 0.5}]


def test_the_path_walks_the_grid_one_sixteenth_at_a_time():
    columns = (0.25, 0.5)
    drops = {"a": Curve(columns, [0.01, 0.02]), "b": Curve(columns, [0.04, 0.08])}
    saves = {"a": Curve(columns, [1.0, 2.0]), "b": Curve(columns, [1.0, 2.0])}
    path = removal_path(drops, {"ms": saves}, {"ms": 10.0}, {"ms": 9.0},
                        dict.fromkeys(drops, grid(columns)))
    assert len(path) == 16  # 8 sixteenths per group, each its own step
    assert path[:8] == [{"a": share, "b": 0.0} for share in grid(columns)]  # the cheaper group first


def test_a_bound_predicted_to_hold_stops_steering_the_path():
    columns = (0.5,)
    # "ms" is barely missed and only group "fast" saves it; "bytes" is far off, and "small" saves it
    # at a lower drop per unit: once ms is predicted to hold, the path turns to "small".
    drops = {"fast": Curve(columns, [0.1]), "small": Curve(columns, [0.1])}
    savings = {"ms": {"fast": Curve(columns, [1.0]), "small": Curve(columns, [0.0])},
               "bytes": {"fast": Curve(columns, [10.0]), "small": Curve(columns, [500.0])}}
    path = removal_path(drops, savings, {"ms": 10.0, "bytes": 1000.0}, {"ms": 9.9, "bytes": 400.0},
                        dict.fromkeys(drops, grid(columns)))
    assert path[0]["fast"] > 0 and path[0]["small"] == 0  # ms is missed: its step comes first
    assert path[1]["fast"] == path[0]["fast"] and path[1]["small"] > 0


def test_each_group_walks_its_own_shares_to_its_own_largest():
    drops = {"filters": Curve((0.5,), [0.1]), "weights": Curve((0.5, 0.9), [0.0, 0.05])}
    saves = {"filters": Curve((0.5,), [2.0]), "weights": Curve((0.5, 0.9), [0.0, 3.0])}
    shares = {"filters": [0.25, 0.5], "weights": [0.5, 0.7, 0.9]}
    path = removal_path(drops, {"bytes": saves}, {"bytes": 10.0}, {"bytes": 1.0}, shares)
    assert path[-1] == {"filters": 0.5, "weights": 0.9}
    assert path[0] == {"filters": 0.0, "weights": 0.7}  # the cheaper saving; 0.5 saves nothing: skipped
    assert {plan["weights"] for plan in path} == {0.7, 0.9}
    assert {plan["filters"] for plan in path} == {0.0, 0.25, 0.5}


def test_a_group_that_saves_a_fraction_saves_less_of_a_smaller_model():
    savings = {"bytes": {"filters": Curve((0.5,), [50.0])}}
    fractions = {"bytes": {"weights": Curve((0.9,), [0.5])}}
    start = {"bytes": 100.0}
    assert predicted({"weights": 0.9}, "bytes", start, savings, fractions) == pytest.approx(50.0)
    both = {"filters": 0.5, "weights": 0.9}
    assert predicted(both, "bytes", start, savings, fractions) == pytest.approx(25.0)
    # Counted on the dense model, the weights' 50 bytes for 0.03 would come before "b"'s 20 for 0.02;
    # once "a" has removed 50 bytes, the weights save 25, and "b" goes first.
    savings = {"bytes": {"a": Curve((0.5,), [50.0]), "b": Curve((0.5,), [20.0])}}
    drops = {"a": Curve((0.5,), [0.02]), "b": Curve((0.5,), [0.02]), "weights": Curve((0.9,), [0.03])}
    shares = {"a": [0.5], "b": [0.5], "weights": [0.9]}
    path = removal_path(drops, savings, start, {"bytes": 1.0}, shares, fractions)
    assert path[:2] == [{"a": 0.5, "b": 0.0, "weights": 0.0}, {"a": 0.5, "b": 0.5, "weights": 0.0}]


@pytest.mark.parametrize("first_meets, guess", [(0, 9), (3, 0), (7, 5), (9, 9), (5, 5)])
def test_the_bisection_finds_the_first_plan_that_meets(first_meets, guess):
    calls = []

    def meets(index):
        calls.append(index)
        return index >= first_meets

    assert first_meeting(list(range(10)), meets, guess, tries=8) == first_meets
    assert len(calls) <= 5 and len(set(calls)) == len(calls)


def test_with_few_tries_the_bisection_keeps_a_plan_known_to_meet():
    # Probes 0 (misses), 50 (meets), 25 (misses): the earliest plan known to meet is 50.
    assert first_meeting(list(range(100)), lambda index: index >= 37, 0, tries=3) == 50
