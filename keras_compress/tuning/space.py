"""The compression search space: what a trial may change, validated before any trial runs."""

from keras_compress._flavour import flavour_of, supports
from keras_compress._types import KerasModel

__all__ = ["default_space", "check_space", "declare"]

GRANULARITIES = ("weight", "filter")


def default_space(teacher: KerasModel | None = None, model: KerasModel | None = None) -> dict:
    """Final sparsity, granularity (weight, or filter with shrink), QAT on/off, weight clustering
    (0: off, else the number of clusters) when `model` is a tf_keras model and, with a teacher,
    distillation temperature and alpha."""
    space = {"final_sparsity": (0.3, 0.9), "granularity": ["weight", "filter"], "qat": [False, True]}
    if model is not None and supports(model, "clustering"):
        space["clusters"] = [0, 16]
    if teacher is not None:
        space.update(temperature=[2.0, 4.0, 8.0], alpha=(0.1, 0.9))
    return space


def _check_range(name, value, low, high, open_high=False):
    if isinstance(value, tuple):
        if len(value) != 2 or not low <= value[0] <= value[1] or value[1] > high \
                or (open_high and value[1] >= high):
            raise ValueError(f"space[{name!r}] must be a (low, high) range within [{low}, {high}"
                             f"{')' if open_high else ']'} with low <= high, got {value!r}")
    elif isinstance(value, list):
        if not value or any(not isinstance(v, (int, float)) or not low <= v <= high
                            or (open_high and v >= high) for v in value):
            raise ValueError(f"space[{name!r}] must be a non-empty list of numbers in [{low}, {high}"
                             f"{')' if open_high else ']'}, got {value!r}")
    else:
        raise ValueError(f"space[{name!r}] must be a (low, high) tuple or a list of values, got {value!r}")


def check_space(space, teacher=None, model=None):
    """The space to search (the default one when None), or a ValueError naming what is wrong."""
    if space is None:
        return default_space(teacher, model)
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict, e.g. {'final_sparsity': (0.5, 0.9), "
                         "'granularity': ['weight'], 'qat': [True]}; pass None for the default space.")
    known = {"final_sparsity", "granularity", "qat", "clusters", "temperature", "alpha"}
    unknown = sorted(set(space) - known)
    if unknown:
        raise ValueError(f"Unknown space entries {unknown}; the space takes {sorted(known)} (a build_fn "
                         "may add its own hyperparameters).")
    if teacher is None and {"temperature", "alpha"} & set(space):
        raise ValueError("space has distillation settings (temperature, alpha) but no teacher was given: "
                         "pass teacher= or drop them.")
    result = dict(space)
    result.setdefault("final_sparsity", default_space()["final_sparsity"])
    result.setdefault("granularity", ["weight"])
    result.setdefault("qat", [False])
    if teacher is not None:
        result.setdefault("temperature", [4.0])
        result.setdefault("alpha", [0.1])
    _check_range("final_sparsity", result["final_sparsity"], 0.0, 1.0, open_high=True)
    if not isinstance(result["granularity"], list) or not result["granularity"] \
            or any(g not in GRANULARITIES for g in result["granularity"]):
        raise ValueError(f"space['granularity'] must be a non-empty list of {GRANULARITIES}, "
                         f"got {result['granularity']!r}")
    if not isinstance(result["qat"], list) or not result["qat"] \
            or any(not isinstance(q, bool) for q in result["qat"]):
        raise ValueError(f"space['qat'] must be a non-empty list of booleans, got {result['qat']!r}")
    clusters = result.get("clusters", [0])
    if not isinstance(clusters, list) or not clusters \
            or any(type(c) is not int or c in (1, 2) or not 0 <= c <= 256 for c in clusters):
        raise ValueError(f"space['clusters'] must be a non-empty list of 0 (no clustering) or cluster counts "
                         f"from 3 to 256 (a pruned layer keeps its zeros in one), got {clusters!r}")
    if any(clusters) and flavour_of(model) is not None and not supports(model, "clustering"):
        raise ValueError("space['clusters'] asks for weight clustering, which works on tf_keras models only: "
                         "drop it for a Keras 3 model.")
    if teacher is not None:
        _check_range("temperature", result["temperature"], 1.0, 100.0)
        _check_range("alpha", result["alpha"], 0.0, 1.0)
    return result


def _declare_number(hp, name, value):
    if isinstance(value, tuple):
        if value[0] == value[1]:
            return hp.Fixed(name, value[0])
        return hp.Float(name, value[0], value[1], step=0.05 if name != "temperature" else 1.0)
    return hp.Choice(name, sorted(set(value))) if len(set(value)) > 1 else hp.Fixed(name, value[0])


def declare(hp, space):
    """Declares the space on keras-tuner `HyperParameters`; returns the trial's values."""
    values = {"final_sparsity": _declare_number(hp, "final_sparsity", space["final_sparsity"])}
    values["granularity"] = (hp.Choice("granularity", space["granularity"])
                             if len(set(space["granularity"])) > 1
                             else hp.Fixed("granularity", space["granularity"][0]))
    values["qat"] = (hp.Boolean("qat") if len(set(space["qat"])) > 1 else hp.Fixed("qat", space["qat"][0]))
    for name in ("clusters", "temperature", "alpha"):
        if name in space:
            values[name] = _declare_number(hp, name, space[name])
    return values
