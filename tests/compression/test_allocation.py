"""The allocation's pieces, on tables made up for the purpose: curves, the removal path, the bisection."""

import pytest

from keras_compress.compression.allocation import Curve, first_meeting, grid, removal_path


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
    path = removal_path(drops, {"ms": saves}, {"ms": 1.0}, shares)
    assert path[0] == {"robust": 0.25, "fragile": 0.0}
    assert path[1] == {"robust": 0.5, "fragile": 0.0}
    assert path[-1] == {"robust": 0.5, "fragile": 0.5}
    for before, after in zip(path, path[1:]):  # every step removes more, nothing comes back
        assert all(after[g] >= before[g] for g in before) and after != before


def test_a_group_that_saves_nothing_is_left_out_until_the_last_plan():
    shares = [0.5]
    drops = {"a": Curve(shares, [0.0]), "useless": Curve(shares, [0.0])}
    saves = {"a": Curve(shares, [1.0]), "useless": Curve(shares, [0.0])}
    path = removal_path(drops, {"ms": saves}, {"ms": 1.0}, shares)
    assert path == [{"a": 0.5, "useless": 0.0}, {"a": 0.5, "useless": 0.5}]


@pytest.mark.parametrize("first_meets, guess", [(0, 9), (3, 0), (7, 5), (9, 9), (5, 5)])
def test_the_bisection_finds_the_first_plan_that_meets(first_meets, guess):
    calls = []

    def meets(index):
        calls.append(index)
        return index >= first_meets

    assert first_meeting(list(range(10)), meets, guess, tries=8) == first_meets
    assert len(calls) <= 5 and len(set(calls)) == len(calls)


def test_with_few_tries_the_bisection_keeps_a_plan_known_to_meet():
    found = first_meeting(list(range(100)), lambda index: index >= 37, 0, tries=3)
    assert found >= 37
