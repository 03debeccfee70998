"""Which share of each channel group's filters to remove so that a model meets its bounds with
the least predicted loss: a greedy path over the one-shot tables (NetAdapt's choice of the least
costly removal, made for all groups at once), along which measurements find the first plan that
meets the bounds."""

import numpy as np

__all__ = ["Curve", "predicted", "removal_path", "first_meeting", "grid"]


class Curve:
    """A quantity as a function of the share of a group's filters removed: 0 at 0, linear
    between the scanned shares, never decreasing (a noisy scan's dips are flattened)."""

    def __init__(self, shares, values):
        self.shares = np.array([0.0, *shares])
        self.values = np.maximum.accumulate(np.maximum(np.array([0.0, *values], float), 0.0))

    def __call__(self, share):
        return float(np.interp(share, self.shares, self.values))


def grid(columns, step=0.0625):
    """The shares a plan may give a group: sixteenths and the scanned columns, up to
    the largest scanned one."""
    top = max(columns)
    return sorted({*(round(step * k, 6) for k in range(1, int(top / step) + 1)), *columns})


def predicted(plan, quantity, start, savings, fractions=None):
    """What `plan` ({group: share}) is predicted to measure of `quantity`: the dense value less
    each group's saving (`savings`), times what each group of `fractions` keeps of the rest."""
    value = start[quantity] - sum(curve(plan.get(group, 0.0))
                                  for group, curve in savings.get(quantity, {}).items())
    for group, curve in (fractions or {}).get(quantity, {}).items():
        value *= 1.0 - curve(plan.get(group, 0.0))
    return value


def removal_path(drops, savings, start, bounds, shares, fractions=None):
    """The plans from every filter kept to every group at its largest share, one step apart: each
    step moves one group to its next share that saves anything, the group whose step costs the
    least predicted drop per unit of saving. A saving counts in proportion to how far its bound
    was from the dense value, and only up to what is still predicted missing (while anything is).

    Args:
        drops: `{group: Curve}` of the metric's predicted drop.
        savings: `{quantity: {group: Curve}}` of what removing the group's filters saves.
        start, bounds: `{quantity: value}` of the dense model and of the target.
        shares: `{group: the shares it may lose, ascending}`.
        fractions: `{quantity: {group: Curve}}` for groups that save a share of what is left
            (sparse weights: the fewer filters, the fewer bytes their zeros save).
    """
    weights = {q: 1.0 / (start[q] - bound) for q, bound in bounds.items() if start[q] > bound}
    plan = {group: 0.0 for group in drops}
    path = []
    while True:
        now = {q: predicted(plan, q, start, savings, fractions) for q in weights}
        gaps = {q: now[q] - bounds[q] for q in weights}
        missing = any(gap > 0 for gap in gaps.values())
        best = None
        for group, share in plan.items():
            for higher in (s for s in shares[group] if s > share):
                step = dict(plan, **{group: higher})
                saved = {q: now[q] - predicted(step, q, start, savings, fractions) for q in weights}
                benefit = sum(weight * (min(saved[q], gaps[q]) if gaps[q] > 0 else 0.0) if missing
                              else weight * saved[q] for q, weight in weights.items())
                if benefit > 0:
                    score = (drops[group](higher) - drops[group](share)) / benefit
                    if best is None or score < best[0]:
                        best = (score, group, higher)
                    break  # the group's next share that saves anything
        if best is None:
            break
        _, group, higher = best
        plan = dict(plan, **{group: higher})
        path.append(plan)
    largest = {group: shares[group][-1] for group in drops}
    if not path or path[-1] != largest:
        path.append(largest)
    return path


def first_meeting(path, meets, first_guess, tries):
    """The index of the earliest plan of `path` that `meets` (measured) found by bisection
    starting at `first_guess`, within `tries` calls; `path`'s last plan is known to meet."""
    low, high = -1, len(path) - 1  # path[low] misses (-1: none tried), path[high] meets
    probe = first_guess if low < first_guess < high else (low + high + 1) // 2
    for _ in range(tries):
        if not low < probe < high:
            break
        if meets(probe):
            high = probe
        else:
            low = probe
        probe = (low + high + 1) // 2
    return high
