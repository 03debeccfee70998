"""`prune` wraps a model's layers for pruning; `strip` removes the wrappers."""

import dataclasses
import functools
import re
import warnings

import numpy as np

from keras_compress._flavour import check_graph_model, keras_for, road, supports
from keras_compress._types import Exclude, KerasModel, Schedule
from keras_compress.layer_kinds import builtin_name, kind_of, rule_for
from keras_compress.pruning._channels import ChannelGraph
from keras_compress.pruning.report import kernels
from keras_compress.pruning.schedules import ConstantSparsity, PolynomialDecay

# The wrappers load with their flavour's road (tfmot's for tf_keras), so that a Keras 3
# process never imports tf_keras or tfmot.

__all__ = ["prune", "strip"]

_M_BY_N = re.compile(r"^(\d+):(\d+)$")


def _parse_granularity(granularity):
    if granularity in ("weight", "filter"):
        return granularity, None
    match = _M_BY_N.match(granularity) if isinstance(granularity, str) else None
    if match:
        m, n = int(match.group(1)), int(match.group(2))
        if 0 < m < n:
            return "m:n", (m, n)
    raise ValueError(f'granularity must be "weight", "filter" or an "m:n" pattern with '
                     f'0 < m < n such as "2:4", got {granularity!r}')


def excluded_names(model, exclude, paths=()):
    """The names of the layers `exclude` (names, one name, or a predicate on layers) picks;
    `paths` are the names of the layers inside custom layers that it may name too."""
    names = {layer.name for layer in model.layers}
    if exclude is None:
        return set()
    if callable(exclude):
        return {layer.name for layer in model.layers if exclude(layer)}
    if isinstance(exclude, str):
        exclude = [exclude]
    exclude = set(exclude)
    unknown = sorted(exclude - names - set(paths))
    if unknown:
        raise ValueError(f"exclude names layers the model does not have: {unknown}. "
                         f"Its layers are: {sorted(names)}"
                         + (f"; inside its custom layers: {list(paths)}" if paths else ""))
    return exclude


def _inner_layers(model):
    """`keras3_sublayers.inside(model)`: the layers pruning can mask inside `model`'s custom layers
    (Keras 3; none for tf_keras)."""
    if not supports(model, "sublayer_pruning"):
        return {}
    from keras_compress.pruning.keras3_sublayers import inside

    return inside(model, road(model, "prunability"))


def _units(model):
    """`keras3_structures.find(model)`: the attention heads and nested models' width that filter
    pruning removes (Keras 3; none for tf_keras)."""
    if not supports(model, "sublayer_pruning"):
        return []
    from keras_compress.pruning.keras3_structures import find

    return find(model)


def _paired_units(units, copied, excluded, exclude):
    """The copy's `Units` (from `_units(copy)`, whose layers the copy renamed) under the paths of
    `units`, the user's model's, less those `exclude` names or picks."""
    if [(u.kind, u.size) for u in units] != [(u.kind, u.size) for u in copied]:
        raise RuntimeError("The copy of the model holds other attention layers than the model: a custom "
                           "layer's config does not rebuild what its __init__ built.")
    kept = []
    for mine, twin in zip(units, copied):
        names = mine.path.split("/")
        if any("/".join(names[:end]) in excluded for end in range(1, len(names) + 1)):
            continue
        if callable(exclude) and exclude(mine.layer):
            continue
        sliced = [(weight, axis, path, owner) for (weight, axis, _, owner), (_, _, path, _)
                  in zip(twin.sliced, mine.sliced)]
        kept.append(dataclasses.replace(twin, path=mine.path, sliced=sliced))
    return kept


def _m_by_n_problem(name, layer, m_by_n):
    """Why `layer` cannot take an m:n pattern (with the fix), or None."""
    m, n = m_by_n
    kernel_rank = len(layer.kernel.shape) if hasattr(layer, "kernel") else None
    if not kind_of(layer).m_by_n or kernel_rank not in (2, 4):
        return (f'granularity "{m}:{n}" works on Dense and Conv2D layers only; layer {name!r} is a '
                f"{type(layer).__name__}. Pass exclude=[{name!r}].")
    inputs = layer.kernel.shape[-2]
    if inputs % n:
        return (f'granularity "{m}:{n}" does not divide the weights of layer {name!r}: its {inputs} input '
                f"channels are not a multiple of {n}. Pass exclude=[{name!r}] or choose another n.")
    return None


def weights_to_prune(model, excluded=()):
    """`{layer name: [variables]}`: the weights `prune` masks with granularity "weight" in each of
    `model`'s layers outside `excluded` (names or, Keras 3, paths), inside custom layers too."""
    prunable = road(model, "prunable_weights")
    inner = _inner_layers(model)
    found = {}
    for layer in model.layers:
        if layer.name in excluded:
            continue
        weights = list(prunable(layer))
        if layer.name in inner:
            from keras_compress.pruning.keras3_sublayers import own_kernels

            weights = [variable for path, held in inner[layer.name] if path not in excluded
                       for variable in own_kernels(held)]
        if weights:
            found[layer.name] = weights
    return found


def _our_schedule(schedule):
    """A keras_compress schedule from ours or from tfmot's (same arguments)."""
    if isinstance(schedule, (PolynomialDecay, ConstantSparsity)):
        return schedule
    # tfmot's schedules (and subclasses), told by their module: a process without tfmot holds none.
    tfmot_class = next((cls.__name__ for cls in type(schedule).__mro__
                        if cls.__module__.startswith("tensorflow_model_optimization.")), None)
    if tfmot_class == "PolynomialDecay":
        return PolynomialDecay(schedule.initial_sparsity, schedule.final_sparsity, schedule.begin_step,
                               schedule.end_step, schedule.power, schedule.frequency)
    if tfmot_class == "ConstantSparsity":
        return ConstantSparsity(schedule.target_sparsity, schedule.begin_step, schedule.end_step,
                                schedule.frequency)
    raise TypeError("schedule must be a PolynomialDecay or ConstantSparsity (keras_compress.pruning's or "
                    f"tfmot's), got {type(schedule).__module__}.{type(schedule).__name__}")


def _block_size(block_size, kind, scope):
    try:
        block = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block = ()
    if len(block) != 2 or min(block) < 1 or block != tuple(block_size):
        raise ValueError(f"block_size must be two ints >= 1, got {block_size!r}")
    if block != (1, 1) and (kind != "weight" or scope != "layer"):
        raise ValueError('block_size applies to granularity="weight" with scope="layer" (tfmot\'s block '
                         f"sparsity), not to granularity={kind!r}, scope={scope!r}.")
    return block


def prune(model: KerasModel, schedule: Schedule | None = None, *, granularity: str = "weight",
          scope: str = "layer", exclude: Exclude = None, pruning_schedule: Schedule | None = None,
          block_size: tuple[int, int] = (1, 1), sparsity_m_by_n: tuple[int, int] | None = None) -> KerasModel:
    """Wraps a model's layers so that training it prunes them.

    The model is copied; the original is left as it is. Train the result with
    `PruningCallback` (it advances the schedule and applies the rankings), then
    call `strip` to get an ordinary model with zeros in place, and `shrink`
    after filter pruning to remove the zeroed filters for real.

    Args:
        model: a built Sequential or functional model, Keras 3 (TensorFlow or JAX backend)
            or tf_keras.
        schedule: `PolynomialDecay` or `ConstantSparsity`.
        granularity: "weight" (single weights by magnitude), "filter" (whole Conv1D/Conv2D
            filters, Dense units and DepthwiseConv2D channels by their L2 norm;
            channels coupled through Add joins are pruned together; on Keras 3 also
            MultiHeadAttention heads, at the top level or inside custom layers, and the
            hidden width of models nested in custom layers) or an "m:n"
            pattern such as "2:4" (m zeros in every n consecutive input weights).
        scope: "layer" (each layer reaches the target) or "global" (one ranking over
            all pruned layers; their parameter-weighted total reaches the target).
        exclude: layer names (on Keras 3 also paths inside custom layers, such as
            "transformer_block/multi_head_attention"), or a predicate on layers; those stay
            dense.
        pruning_schedule, block_size, sparsity_m_by_n: tfmot's `prune_low_magnitude`
            keywords, so `prune(model, **pruning_params)` from a tfmot script works:
            `pruning_schedule` is `schedule` (tfmot's schedule classes are taken too),
            `block_size=(h, w)` prunes blocks of weights (granularity "weight", scope
            "layer"), `sparsity_m_by_n=(m, n)` is granularity "m:n".

    Returns:
        A new model of the same kind and Keras flavour, with prunable layers wrapped.

    Example:
        >>> import keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
        >>> pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        >>> [layer.name for layer in pruned.layers]
        ['prune_low_magnitude_fc']
    """
    flavour = check_graph_model(model)
    if (schedule is None) == (pruning_schedule is None):
        raise TypeError("Pass one pruning schedule: prune(model, schedule) "
                        "or prune(model, pruning_schedule=...).")
    schedule = _our_schedule(schedule if schedule is not None else pruning_schedule)
    if sparsity_m_by_n is not None:
        if granularity != "weight":
            raise ValueError("Pass either granularity or sparsity_m_by_n, not both.")
        granularity = "{}:{}".format(*sparsity_m_by_n)
    kind, m_by_n = _parse_granularity(granularity)
    if scope not in ("layer", "global"):
        raise ValueError(f'scope must be "layer" or "global", got {scope!r}')
    if kind == "m:n" and scope == "global":
        raise ValueError('an "m:n" pattern holds in every group of n weights, so it has no '
                         'global ranking: use scope="layer".')
    block_size = _block_size(block_size, kind, scope)
    if pruning_wrappers(model):
        raise ValueError("The model is already wrapped for pruning: strip it first "
                         "(keras_compress.pruning.strip).")
    inner = _inner_layers(model) if kind != "filter" else {}  # masked in place inside custom layers
    units = _units(model) if kind == "filter" else []  # attention heads and nested models' width
    excluded = excluded_names(model, exclude, [path for pairs in inner.values() for path, _ in pairs]
                              + [units.path for units in units])
    copy = flavour.copy_model(model)
    if model.weights and not copy.trainable_weights:
        warnings.warn(f"Model {model.name!r} is frozen (trainable=False): its pruned copy is made trainable, "
                      "since pruning needs fine-tuning to recover accuracy. Freeze layers of the copy "
                      "yourself if you mean to.", stacklevel=2)
        copy.trainable = True
    layers = {layer.name: layer for layer in copy.layers}

    prunability = road(model, "prunability")
    statuses = {name: prunability(layer) for name, layer in layers.items()
                if builtin_name(layer) != "InputLayer"}
    if kind == "filter":
        graph = ChannelGraph(copy, frozen_layers=excluded)
        targets = {name for group in graph.groups.values() for name in group.producers}
        targets |= {name for name, (segments, _) in graph.inputs.items()
                    if name not in graph.outputs
                    and any(s.space in graph.groups for s in segments)}
    else:
        targets = {name for name, status in statuses.items()
                   if status == "weights" and name not in excluded}
    if kind == "m:n":
        for name in sorted(targets):
            problem = _m_by_n_problem(name, layers[name], m_by_n)
            if problem:
                raise ValueError(problem)
    triples = {}
    if inner:
        from keras_compress.pruning.keras3_sublayers import paired

        triples = paired(inner, _inner_layers(copy))

    def picked(path, layer):
        return exclude(layer) if callable(exclude) else path in excluded

    nested = {name: [(path, twin) for path, layer, twin in found if not picked(path, layer)]
              for name, found in triples.items() if name not in excluded}
    if units:
        units = _paired_units(units, _units(copy), excluded, exclude)
    with_units = {units.top for units in units}
    left_dense = {name: f"{name} ({type(layers[name]).__name__})"
                  for name, status in statuses.items()
                  if status is None and name not in targets and name not in nested and name not in excluded
                  and name not in with_units and _holds_weights_to_prune(layers[name])}
    kept = {name: _matrix_parameters(layers[name]) for name in left_dense}
    for name, found in triples.items():  # weights of custom layers outside the layers masked in them
        if name in excluded:
            continue
        kept[name] = _matrix_parameters(layers[name]) - sum(_matrix_parameters(twin) for _, _, twin in found)
        if kept[name] > 0:
            left_dense[name] = f"{name} ({type(layers[name]).__name__}: {kept[name]:,} of its weights)"
    if kind == "m:n":  # inner layers that cannot take the pattern stay dense, named
        for name, found in nested.items():
            unfit = [(path, twin) for path, twin in found if _m_by_n_problem(path, twin, m_by_n)]
            nested[name] = [pair for pair in found if pair not in unfit]
            left_dense.update({path: f"{path} ({type(twin).__name__}: no {m_by_n[0]}:{m_by_n[1]} pattern)"
                               for path, twin in unfit})
            kept.update({path: _matrix_parameters(twin) for path, twin in unfit})
    if kind == "filter":  # layers with weights but no channel rule: filter pruning leaves them whole
        left_dense.update({name: f"{name} ({type(layers[name]).__name__}: no filters to remove)"
                           for name, status in statuses.items() if status == "weights"
                           and rule_for(layers[name]) is None and name not in excluded
                           and name not in with_units})
    if not targets and not any(nested.values()) and not units:
        raise ValueError(
            f"The model has nothing to prune with granularity={granularity!r}: none of its "
            f"layers ({', '.join(sorted(statuses))}) has prunable weights"
            + (" outside `exclude`" if excluded else "")
            + (" and channels or attention heads that can be removed" if kind == "filter" else "") + ".")
    if left_dense:
        held = sum(kept[name] if name in kept else _matrix_parameters(layers[name]) for name in left_dense)
        total = sum(_matrix_parameters(layer) for layer in layers.values())
        share = f" They hold {held / total:.1%} of the model's weights." if total else ""
        warnings.warn("These layers cannot be pruned and stay dense: " + ", ".join(left_dense.values())
                      + "." + share, stacklevel=2)
    if kind == "filter":
        _warn_when_filters_reach_little(graph, layers, statuses, units)
    elif not supports(model, "depthwise_pruning"):
        _warn_when_depthwise_kernels_stay_dense(layers, excluded)

    wrapped, needs_callback = road(model, "pruning_wrap")(schedule, kind, scope, block_size, m_by_n)
    pruned = flavour.keras.models.clone_model(
        copy, clone_function=lambda layer: wrapped(layer) if layer.name in targets else layer)
    if nested:
        from keras_compress.pruning.keras3_sublayers import mask_in_place

        mask_in_place(pruned, [pair for found in nested.values() for pair in found], schedule, kind, scope,
                      block_size, m_by_n)
    if units:
        from keras_compress.pruning.keras3_structures import UnitMasks, hold

        hold(pruned, UnitMasks(units, schedule, scope))
    if needs_callback:
        _refuse_fit_without_callback(pruned, f'granularity="{granularity}", scope="{scope}"')
    return pruned


def _refuse_fit_without_callback(model, settings):
    """Makes `model.fit` refuse, before any work, a call without `PruningCallback`: these masks
    are ranked by that callback alone, and without it the model would train dense. (Its layers
    refuse too, from inside the traced step, where the message drowns in the graph's trace.)"""
    fit = model.fit

    @functools.wraps(fit)
    def fit_with_pruning_callback(*args, **kwargs):
        from keras_compress.pruning.callback import PruningCallback

        callbacks = kwargs.get("callbacks", args[5] if len(args) > 5 else None) or []
        if not any(isinstance(callback, PruningCallback) for callback in callbacks):
            raise RuntimeError(f"Model {model.name!r} is pruned by keras_compress ({settings}): train it "
                               "with callbacks=[keras_compress.pruning.PruningCallback()], which ranks and "
                               "applies the masks; without it the model would train dense.")
        return fit(*args, **kwargs)

    object.__setattr__(model, "fit", fit_with_pruning_callback)  # this copy only, untracked by Keras


def _holds_weights_to_prune(layer):
    """Kernels, or any weights of a custom layer (not Rescaling's or Normalization's constants)."""
    return bool(kernels(layer) or (layer.weights and not builtin_name(layer)))


def _matrix_parameters(layer):
    """Parameters of `layer`'s weights of two or more dimensions (kernels, embeddings: not biases)."""
    return sum(int(np.prod(variable.shape)) for variable in layer.weights if len(variable.shape) >= 2)


def _kernel_parameters(layer):
    return sum(int(np.prod(variable.shape)) for variable in kernels(layer))


def _warn_when_filters_reach_little(graph, layers, statuses, units):
    """Warns when the removable filters, heads and widths hold less than a tenth of the prunable
    weights: most of the model keeps its channels, and the pruning asked for would mostly not happen."""
    producers = sorted({name for group in graph.groups.values() for name in group.producers})
    holding = {found.top for found in units}
    reachable = sum(_kernel_parameters(layers[name]) for name in producers) + sum(
        int(np.prod(kernel.shape)) for found in units for kernel, _ in found.scored)
    total = sum(_kernel_parameters(layers[name]) for name, status in statuses.items()
                if status == "weights" or name in holding)
    if total and reachable < 0.1 * total:
        kept = sorted(name for name, status in statuses.items()
                      if status == "weights" and name not in producers and name not in holding)
        warnings.warn(
            f"Filter pruning can reach only {reachable / total:.1%} of this model's prunable weights: the "
            f"channels of {', '.join(kept)} must stay (model outputs, layers joined with those, or layers "
            "filter pruning does not know). Prune single weights (granularity=\"weight\") instead, or "
            "expect little to be removed.", stacklevel=3)


def _warn_when_depthwise_kernels_stay_dense(layers, excluded):
    """tfmot prunes no depthwise kernel (of DepthwiseConv2D and SeparableConv2D): says which stay
    dense, and how much of the model's kernels they hold, since the model ends less sparse."""
    depthwise = {name: int(np.prod(layer.depthwise_kernel.shape)) for name, layer in layers.items()
                 if getattr(layer, "depthwise_kernel", None) is not None and name not in excluded}
    if depthwise:
        share = sum(depthwise.values()) / sum(_kernel_parameters(layer) for layer in layers.values())
        warnings.warn(
            f"tfmot does not prune depthwise kernels: those of {', '.join(depthwise)} stay dense "
            f"({share:.1%} of the model's kernels), so the model's total sparsity ends below the "
            "schedule's target. Keras 3 models (`import keras`) have their depthwise kernels pruned "
            "too.", stacklevel=3)


def pruning_wrappers(model):
    """The pruning wrappers of a model (tf_keras or Keras 3), in layer order, then the masks held
    inside its custom layers (Keras 3), which offer the wrappers' protocol."""
    wrapper = _wrapper_type(model)
    wrappers = [layer for layer in model.layers if isinstance(layer, wrapper)]
    if supports(model, "sublayer_pruning"):
        from keras_compress.pruning.keras3_sublayers import holders

        wrappers += holders(model)
    return wrappers


def _wrapper_type(model):
    """The pruning wrapper class of `model`'s Keras flavour."""
    return road(model, "pruning_wrapper")


def unit_masks(model):
    """The masks of the attention heads and nested models' width that `prune(granularity="filter")`
    put on `model` (`keras3_structures.UnitMasks`), or None."""
    if not supports(model, "sublayer_pruning"):
        return None
    from keras_compress.pruning.keras3_structures import unit_masks as held

    return held(model)


def find_pruned_model(model):
    """`model`, or the first model nested in it (e.g. a Distiller's student), that holds
    pruning wrappers; None if there is none."""
    if pruning_wrappers(model):
        return model
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model
            found = find_pruned_model(layer)
            if found is not None:
                return found
    return None


def apply_masks(model):
    """Sets every wrapped weight to weight * mask (pruned weights become exact zeros)."""
    for wrapper in pruning_wrappers(model):
        for weight, mask, _ in wrapper.pruning_vars:
            weight.assign(weight * mask)


def strip(model: KerasModel) -> KerasModel:
    """Returns an ordinary Keras model with the pruning wrappers removed and zeros in place.

    The result shares nothing with `model`. A model without wrappers is copied as is.

    Example:
        >>> import keras, keras_compress as kc
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
        >>> pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
        >>> [layer.name for layer in kc.pruning.strip(pruned).layers]
        ['fc']
    """
    flavour = keras_for(model, action="strip")
    if not pruning_wrappers(model):
        check_graph_model(model, action="strip")
        return flavour.copy_model(model)
    apply_masks(model)
    return flavour.copy_model(road(model, "strip_pruning")(model))
