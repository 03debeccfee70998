"""The one module for tensorflow-model-optimization's internals.

Every private tfmot module, class or attribute the package needs is reached here,
behind named helpers, so that the rest of the package uses tfmot's public API and
these names only. It also holds the subclasses that fix how tfmot's quantization
layers save and load.
"""

import collections
import copy
import os
from typing import Any

import numpy as np
import tensorflow as tf


def _import_tfmot():
    """Imports tfmot without its side effect on the process: on import it sets
    TF_USE_LEGACY_KERAS=1, which would turn the user's `tf.keras` into tf_keras."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    getattr(tf.keras, "version", None)  # resolves `tf.keras` as the user's environment says, once
    try:
        import tensorflow_model_optimization
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tensorflow_model_optimization


tfmot = _import_tfmot()

# The imports below read tfmot, which must be imported through the guard above first.
# ruff: noqa: E402
from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper, clustering_registry
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
    cluster_preserve_quantize_registry as _cluster_preserve,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _prune_preserve,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as _configs,
    default_8bit_quantize_layout_transform as _layout,
    default_8bit_quantize_registry as _registry,
    default_8bit_transforms as _transforms,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
    model_transformer,
)
from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
    NoOpActivation,
    QuantizeAwareActivation,
)
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry, pruning_wrapper

from keras_compress._keras import inbound_layers, keras
from keras_compress.layer_kinds import channel_masked_weights, kind_of

__all__ = ["tfmot", "TfmotPruneWrapper", "ClusterWeights", "QuantizeLayer",
           "QuantizeWrapperV2", "clusterable_weights", "data_classes",
           "is_quantization_layer", "known_to_tfmot", "leave_activation_ranges_out", "quantize_apply",
           "no_op_quantize_config", "output_quantize_config", "prunability", "prunable_weights",
           "quantizable", "quantize_scheme", "strip_pruning", "weight_quantizers"]

_quantize = tfmot.quantization.keras

# tfmot's pruning and clustering wrapper classes (public only through `prune_low_magnitude` and
# `cluster_weights`).
TfmotPruneWrapper = pruning_wrapper.PruneLowMagnitude
ClusterWeights = cluster_wrapper.ClusterWeights


def clusterable_weights(layer):
    """The weights tfmot's clustering would cluster in `layer` ([] when it can wrap the layer but
    clusters nothing in it), or None when it cannot wrap the layer."""
    if isinstance(layer, tfmot.clustering.keras.ClusterableLayer):
        return [weight for _, weight in layer.get_clusterable_weights()]
    registry = clustering_registry.ClusteringRegistry
    if not registry.supports(layer):
        return None
    if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional, keras.layers.MultiHeadAttention)):
        return [weight for weight in layer.weights if "kernel" in weight.name]
    return [getattr(layer, name) for name in registry._weight_names(layer)]


def prunable_weights(layer, channelwise=False):
    """The weights a mask prunes in `layer`: those its channel rule masks with `channelwise`,
    else those tfmot's weight pruning masks ([] where it prunes none or cannot wrap the layer)."""
    if channelwise:
        return channel_masked_weights(layer)
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return []
    if registry._is_rnn_layer(layer) or registry._is_mha_layer(layer):
        return [weight for weight in layer.weights if "kernel" in weight.name]
    return [getattr(layer, name) for name in registry._weight_names(layer)]


def prunability(layer):
    """"weights" if tfmot can wrap `layer` and prune some of its weights, "none" if it can
    wrap it but there is nothing to prune, None if tfmot cannot wrap it at all."""
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return "weights"
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return None
    return "weights" if registry._weight_names(layer) or registry._is_rnn_layer(layer) else "none"


def strip_pruning(model):
    """`model` with tfmot's pruning wrappers replaced by the layers inside them."""
    return tfmot.sparsity.keras.strip_pruning(model)


def known_to_tfmot(layer):
    """Whether tfmot's default 8-bit registry knows `layer`'s kind."""
    return _registry.Default8BitQuantizeRegistry().supports(layer)


def quantizable(layer):
    """Whether tfmot's default 8-bit registry quantizes `layer` on its own (an Activation layer only
    for the activations it knows: it raises for the others when it quantizes the model)."""
    if not known_to_tfmot(layer):
        return False
    try:
        _registry.Default8BitQuantizeRegistry().get_quantize_config(layer).get_output_quantizers(layer)
    except ValueError:
        return False
    return True


def output_quantize_config():
    """tfmot's quantize config that quantizes a layer's output alone."""
    return _configs.Default8BitOutputQuantizeConfig()


def no_op_quantize_config():
    """tfmot's quantize config that leaves a layer float."""
    return _configs.NoOpQuantizeConfig()


def data_classes():
    """tfmot's base classes whose configs hold settings only (no code): quantize configs,
    quantizers, activation wrappers and pruning schedules."""
    return (_quantize.QuantizeConfig, _quantize.quantizers.Quantizer, tfmot.sparsity.keras.PruningSchedule,
            QuantizeAwareActivation, NoOpActivation)


def is_quantization_layer(layer):
    """Whether `layer` is one of tfmot's QAT layers (a quantize wrapper or input quantizer)."""
    return isinstance(layer, (_quantize.QuantizeWrapper, _quantize_layer.QuantizeLayer))


def weight_quantizers(layer):
    """`[(weight, quantizer, quantizer variables)]` of a QAT wrapper."""
    return list(layer._weight_vars)


# The narrowest activation range the first batch sets (256 steps of 4e-6), as in Keras 3 QAT.
_MIN_RANGE = 1e-3


# tfmot's classes extended below (reached through its public API, which a type checker cannot read).
_MovingAverageQuantizer: Any = _quantize.quantizers.MovingAverageQuantizer
_QuantizeWrapperV2: Any = _quantize.QuantizeWrapperV2
_ClusterPreserveScheme: Any = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme


class FirstBatchMovingAverageQuantizer(_MovingAverageQuantizer):
    """tfmot's activation quantizer (moving average of each batch's range), with its range set
    from the first training batch instead of moved from tfmot's initial [-6, 6] at 0.1% a step,
    as Keras 3 models' `QuantizeActivations` does. A range still at exactly [-6, 6] is unset.

    From [-6, 6], small activations (an untrained model's) round to zero for hundreds of steps; a
    BatchNormalization after them sees a batch of zeros and multiplies the gradient by
    1/sqrt(epsilon), layer after layer, until it overflows: tf_keras EfficientNetB0 went to NaN
    in one step. Under a strategy of several replicas, each would set its own copy from its own
    batch: there the range starts at [-6, 6] as in tfmot."""

    def __call__(self, inputs, training, weights, **kwargs):
        if (training is not None and training is not False
                and tf.distribute.get_strategy().num_replicas_in_sync == 1):
            low, high = weights["min_var"], weights["max_var"]
            first = tf.logical_and(tf.cast(training, tf.bool),
                                   tf.logical_and(tf.equal(low, -6.0), tf.equal(high, 6.0)))

            def start():
                batch_low = tf.minimum(tf.reduce_min(inputs), 0.0)  # 0 always inside
                batch_high = tf.maximum(tf.maximum(tf.reduce_max(inputs), 0.0), batch_low + _MIN_RANGE)
                with tf.control_dependencies([low.assign(batch_low), high.assign(batch_high)]):
                    return tf.constant(True)

            with tf.control_dependencies([tf.cond(first, start, lambda: tf.constant(False))]):
                inputs = tf.identity(inputs)
        return super().__call__(inputs, training, weights, **kwargs)


def _start_ranges_from_first_batch(quantizer):
    """Turns tfmot's default activation quantizer (per tensor, asymmetric) into
    `FirstBatchMovingAverageQuantizer`; the variables and the config stay as they are."""
    if (type(quantizer) is _quantize.quantizers.MovingAverageQuantizer and not quantizer.per_axis
            and not quantizer.symmetric):
        quantizer.__class__ = FirstBatchMovingAverageQuantizer


class QuantizeAwareSwish(QuantizeAwareActivation):
    """tfmot's activation wrapper, quantizing swish's input as well as its output, as tfmot does
    for gelu: TFLite fuses no swish into the convolution before it, so without a range of its
    own the convolution's output stays float and so does the convolution (EfficientNet's
    squeeze-excite reductions)."""

    _PRE_QUANT_ACTIVATIONS = QuantizeAwareActivation._PRE_QUANT_ACTIVATIONS | {"swish"}


def _quantize_swish_input(activation, wrapper):
    """Makes a built `QuantizeAwareActivation` of swish a `QuantizeAwareSwish`, with the range
    variables it needs added to `wrapper`."""
    if type(activation) is QuantizeAwareActivation and activation._name(activation.activation) == "swish":
        activation.__class__ = QuantizeAwareSwish
        activation._pre_activation_vars = activation.quantizer.build(None, "pre_activation", wrapper)


class QuantizeLayer(_quantize_layer.QuantizeLayer):
    """tfmot's QuantizeLayer, marked built after `build`: otherwise a `.keras` load builds
    it twice (from the saved build config, then on first call) and its weights do not match.
    Same class name, so `.keras` files store its weights under the same key."""

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


class QuantizeWrapperV2(_QuantizeWrapperV2):
    """tfmot's QuantizeWrapperV2, saving its variables by name in `.keras` files and
    remembering that its weights keep their sparsity or their clusters.

    tfmot's wrapper lists its variables in a different order (and count: the kernel
    appears twice) when built while loading, so Keras' index-based restore fails; its
    config drops the sparsity- and cluster-preserving weight quantizers; the sparsity
    quantizer keeps its mask as a constant tensor computed at build time (stale after
    loading, and an extra graph input for tf2onnx); and the cluster quantizer sizes its
    centroids from the distinct values of the kernel it is built on (a random one, when
    loading). Here the mask is a non-trainable variable saved with the model, and the config
    records the centroids' shapes so that loading builds them as they were. Same class name,
    so the file layout is unchanged. Its activation ranges start from the first training batch
    (`FirstBatchMovingAverageQuantizer`), swish's input gets one (`QuantizeAwareSwish`), and a
    Dense layer on feature maps runs on rows (an int8 FULLY_CONNECTED in TFLite).
    """

    _centroid_shapes = None
    # Whether swish activations get an input range: files saved before they did load without.
    _swish_input_ranges = True

    def build(self, input_shape):
        if self._centroid_shapes is not None:
            self.layer.build(input_shape)
            self.layer.built = True
            sparse = self.quantize_config.weight_quantizer.preserve_sparsity
            for name, shape in self._centroid_shapes.items():
                weight = getattr(self.layer, name)
                weight.assign(_with_distinct_values(weight.shape, shape, sparse))
        super().build(input_shape)
        self._settle()

    def _should_use_autograph(self):
        # tfmot's wrapper branches with smart_cond and needs no autograph, whose conversion costs
        # more than building the layer (half of quantizing a model); a custom layer inside may.
        return self.layer._should_use_autograph()

    def call(self, inputs, training=None, **kwargs):
        # A Dense layer on inputs of rank 3 and more runs on rows, as in Keras 3 QAT: tf_keras'
        # tensordot reshapes by the dynamic batch size, and TFLite keeps that product float.
        shape = tuple(getattr(inputs, "shape", ()))
        if isinstance(self.layer, keras.layers.Dense) and len(shape) > 2 and None not in shape[1:]:
            outputs = super().call(tf.reshape(inputs, (-1, shape[-1])), training=training, **kwargs)
            return tf.reshape(outputs, (-1, *shape[1:-1], outputs.shape[-1]))
        return super().call(inputs, training=training, **kwargs)

    def _settle(self):
        self._keep_masks_in_variables()
        if self._swish_input_ranges:
            for activation in self._quantize_activations:
                _quantize_swish_input(activation, self)
        for quantizer in [a.quantizer for a in self._quantize_activations] + (self._output_quantizers or []):
            _start_ranges_from_first_batch(quantizer)
        # A cluster-preserved kernel is assigned from its centroids on every step, never
        # trained by gradient: listed as trainable, every step would warn that it has none.
        for kernel, _, variables in weight_quantizers(self):
            if _cluster_preserve.CLUSTER_CENTROIDS not in variables:
                continue
            for owner in (self, self.layer):
                if any(kernel is weight for weight in owner._trainable_weights):
                    owner._trainable_weights = [w for w in owner._trainable_weights if w is not kernel]
                    owner._non_trainable_weights.append(kernel)

    def _keep_masks_in_variables(self):
        for weight, _, quantizer_variables in weight_quantizers(self):
            mask = quantizer_variables.get("sparsity_mask")
            if mask is not None and not isinstance(mask, tf.Variable):
                variable = self.add_weight(f"{self._weight_name(weight.name)}_sparsity_mask",
                                           shape=weight.shape,
                                           initializer=keras.initializers.Ones(), trainable=False)
                variable.assign(mask)
                quantizer_variables["sparsity_mask"] = variable

    def _clusters(self):
        """`[(quantizer variables, centroids variable)]` of the weights whose clusters are kept."""
        key = _cluster_preserve.CLUSTER_CENTROIDS
        return [(found, found[key]) for _, _, found in weight_quantizers(self) if key in found]

    def get_config(self):
        config = dict(super().get_config(), swish_input_ranges=self._swish_input_ranges)
        quantizer = getattr(self.quantize_config, "weight_quantizer", None)
        if isinstance(quantizer, _prune_preserve.PrunePreserveDefaultWeightsQuantizer):
            config["preserve_sparsity"] = True
        if isinstance(quantizer, _cluster_preserve.ClusterPreserveDefaultWeightsQuantizer):
            config["preserve_sparsity"] = bool(quantizer.preserve_sparsity)
            key = _cluster_preserve.CLUSTER_CENTROIDS  # weights without centroids: None
            config["preserve_clusters"] = {
                self._weight_name(weight.name): list(variables[key].shape) if key in variables else None
                for weight, _, variables in weight_quantizers(self)}
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        preserve_sparsity = config.pop("preserve_sparsity", False)
        centroid_shapes = config.pop("preserve_clusters", None)
        swish_input_ranges = config.pop("swish_input_ranges", False)
        wrapper = super().from_config(config)
        wrapper._swish_input_ranges = swish_input_ranges
        if centroid_shapes is not None:
            registry = _cluster_preserve.Default8bitClusterPreserveQuantizeRegistry(preserve_sparsity)
            quantizers = registry._config_quantizer_map
            wrapper.quantize_config.weight_quantizer = quantizers[type(wrapper.quantize_config).__name__]
            wrapper._centroid_shapes = centroid_shapes
        elif preserve_sparsity:
            # tfmot's own `apply_sparsity_preserve_quantize_config` needs a built layer.
            quantizers = _prune_preserve.Default8bitPrunePreserveQuantizeRegistry()._config_quantizer_map
            wrapper.quantize_config.weight_quantizer = quantizers[type(wrapper.quantize_config).__name__]
        return wrapper

    def _own_variables(self):
        variables = {}
        for variable in self._trainable_weights + self._non_trainable_weights:
            variables.setdefault(variable.name.split("/")[-1].split(":")[0], variable)
        return variables

    def save_own_variables(self, store):
        for key, variable in self._own_variables().items():
            store[key] = variable.numpy()

    def load_own_variables(self, store):
        variables = self._own_variables()
        missing = sorted(set(variables) - set(store.keys()))
        if missing:
            raise ValueError(f"Layer {self.name!r}: the file has no values for {missing}.")
        for key, variable in variables.items():
            variable.assign(store[key])
        for quantizer_variables, centroids in self._clusters():
            if _cluster_preserve.CENTROIDS_MASK in quantizer_variables:  # which centroid is the zero
                mask = tf.constant(_zero_centroid_mask(centroids))
                quantizer_variables[_cluster_preserve.CENTROIDS_MASK] = mask


def _with_distinct_values(shape, centroid_shape, with_zero):
    """A kernel of `shape` from which tfmot's cluster quantizer builds centroids of
    `centroid_shape`: (channels, values) per output channel, (values,) over the whole kernel, or
    none at all (None: a constant kernel).

    Over the whole kernel, a Conv2D's channels must hold counts of distinct values that differ
    by more than one (else tfmot clusters it per channel): the values fill the channels one after
    another, each channel repeating its own, and the channels left over repeat the first value.
    """
    base = 0.0 if with_zero else 1.0
    if centroid_shape is None:
        return np.full(shape, base, np.float32)
    values = np.arange(centroid_shape[-1], dtype=np.float32) + base
    channels, size = shape[-1], int(np.prod(shape[:-1]))
    if len(centroid_shape) == 2:
        grid = np.tile(np.resize(values, size), (channels, 1))
    else:
        grid = np.stack([np.resize(values[c * size:(c + 1) * size], size) if c * size < values.size
                         else np.full(size, values[0], np.float32) for c in range(channels)])
    return grid.T.reshape(shape)


class _OneQuantizerPerLayer(_cluster_preserve.Default8bitClusterPreserveQuantizeRegistry):
    """tfmot's registry gives every layer of a kind the same weight quantizer, and the quantizer
    turns sparsity off for good when it builds a layer without zeros: here each layer gets a copy."""

    def get_quantize_config(self, layer):
        config = super().get_quantize_config(layer)
        quantizer = getattr(config, "weight_quantizer", None)
        if isinstance(quantizer, _cluster_preserve.ClusterPreserveDefaultWeightsQuantizer):
            config.weight_quantizer = copy.copy(quantizer)
        return config


class _ClusterPreservingScheme(_ClusterPreserveScheme):
    def get_quantize_registry(self):
        return _OneQuantizerPerLayer(self.preserve_sparsity)


class _IndexedModelTransformer(model_transformer.ModelTransformer):
    """tfmot's ModelTransformer with an index of each layer's consumers: tfmot's own lookup scans
    every layer's inputs, so matching its patterns grows with the square of the model."""

    _consumers = None

    def transform(self):
        self._consumers = None
        return super().transform()

    def _get_consuming_layers(self, check_layer):
        if self._consumers is None:
            self._consumers = collections.defaultdict(list)
            for layer in self._config["layers"]:
                # tfmot also lists keyword arguments' first items, not all of them names
                names = [name for name in self._get_inbound_layer_names(layer) if isinstance(name, str)]
                for name in dict.fromkeys(names):
                    self._consumers[name].append(layer)
        return list(self._consumers.get(check_layer["config"]["name"], ()))

    def _replace(self, match_layer_node, replacement_layer_node):
        super()._replace(match_layer_node, replacement_layer_node)
        self._consumers = None


class _KernelKeepingLayout(_layout.Default8BitQuantizeLayoutTransform):
    """tfmot's layout transform (its transforms, in its order, through `_IndexedModelTransformer`),
    except that a Conv2D, DepthwiseConv2D or Dense layer before a ReLU keeps its kernel quantized.

    To keep fake quantization out from between such a layer and its ReLU, tfmot turns the layer's
    quantization off whole, kernel included (a squeeze-excite block's first convolution, any
    `Conv2D` then `ReLU()`): its kernel never trains on the int8 grid. Here only its output is
    left unquantized, as tfmot does for a convolution before a BatchNormalization.
    """

    _TRANSFORMS = ("InputLayerQuantize", "SeparableConv1DQuantize", "SeparableConvQuantize",
                   "Conv2DReshapeBatchNormReLUQuantize", "Conv2DReshapeBatchNormActivationQuantize",
                   "Conv2DBatchNormReLUQuantize", "Conv2DBatchNormActivationQuantize",
                   "Conv2DReshapeBatchNormQuantize", "Conv2DBatchNormQuantize", "ConcatTransform6Inputs",
                   "ConcatTransform5Inputs", "ConcatTransform4Inputs", "ConcatTransform3Inputs",
                   "ConcatTransform", "DenseBatchNormQuantize", "DenseBatchNormReLUQuantize",
                   "DenseBatchNormActivationQuantize", "LayerReLUQuantize", "LayerReluActivationQuantize")

    def apply(self, model, layer_quantize_map):
        transforms = [getattr(_transforms, name)() for name in self._TRANSFORMS]
        # tfmot's transformer marks the model it reads, and tf_keras the models nested in it.
        models = [layer for layer in model._flatten_layers() if isinstance(layer, keras.Model)]
        marks = [layer.__dict__.get("use_legacy_config") for layer in models]
        try:
            transformed, quantize_map = _IndexedModelTransformer(
                model, transforms, set(layer_quantize_map), layer_quantize_map).transform()
        finally:
            for layer, mark in zip(models, marks):
                if mark is None:
                    layer.__dict__.pop("use_legacy_config", None)
                else:
                    layer.use_legacy_config = mark
        for layer in transformed.layers:
            entry = quantize_map.get(layer.name, {})
            if (isinstance(entry.get("quantize_config"), _configs.NoOpQuantizeConfig)
                    and kind_of(layer).int8 == "kernel" and layer.activation is keras.activations.linear):
                layer.activation = NoOpActivation()
                entry["quantize_config"] = None  # the scheme's own config for the layer
        return transformed, quantize_map


def quantize_apply(model, layer_quantize_map, scheme):
    """tfmot's `quantize_apply` on `model`, which it only reads, for the layers named in
    `layer_quantize_map` (name -> QuantizeConfig, or None for the scheme's own; not empty, which
    tfmot's transformer takes for every layer), with this module's loadable layer classes.
    Frozen layers stay frozen.

    tfmot's own wants the layers annotated and clones the model four times on the way; here the
    layout transform reads `model` itself and the result is wrapped in one more clone. Only the
    layers named are wrapped (tfmot also wraps a layer its registry knows for the output, where
    a quantized layer reads it).
    """
    quantize_map = {name: {"quantize_config": config} for name, config in layer_quantize_map.items()}
    for layer in model.layers:  # an input read by a quantized layer is matched by the input's transform
        if layer.name in quantize_map:
            quantize_map.update({before.name: {} for before in inbound_layers(layer)
                                 if isinstance(before, keras.layers.InputLayer)})
    transformed, quantize_map = scheme.get_layout_transformer().apply(model, quantize_map)
    registry = scheme.get_quantize_registry()
    # tfmot finds a kernel's sparsity in the trainable weights: wrap frozen layers unfrozen.
    frozen = [layer for layer in transformed.layers if not layer.trainable]
    for layer in frozen:
        layer.trainable = True

    def wrap(layer):
        if isinstance(layer, _quantize_layer.QuantizeLayer):
            config = layer.get_config()
            if len(layer._outbound_nodes) <= 1:
                config.update(quantize_map.get(layer.name, {}))
            return QuantizeLayer.from_config(config)
        if layer.name not in quantize_map:
            return layer
        config = quantize_map[layer.name].get("quantize_config")
        if not config and registry.supports(layer):
            config = registry.get_quantize_config(layer)
        if not config:
            raise RuntimeError(f"Layer {layer.name}:{type(layer)} is not supported: give it a "
                               "QuantizeConfig, or leave it out.")
        return QuantizeWrapperV2(layer, config, name_prefix="quant_")

    with _quantize.quantize_scope():
        quantized = keras.models.clone_model(transformed, clone_function=wrap)
    frozen = {layer.name for layer in frozen}
    for layer in quantized.layers:
        if layer.name in frozen or getattr(getattr(layer, "layer", None), "name", None) in frozen:
            layer.trainable = False
    return quantized


def quantize_scheme(preserve_sparsity, preserve_clusters):
    """The 8-bit QAT scheme: tfmot's default one, its sparsity-preserving one, or its
    cluster-preserving one (sparsity too, where a layer has zeros) with a weight quantizer of its
    own for every layer; each with `_KernelKeepingLayout`."""
    if preserve_clusters:
        scheme = _ClusterPreservingScheme(preserve_sparsity=preserve_sparsity)
    elif preserve_sparsity:
        scheme = _quantize.collab_opts.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = _quantize.default_8bit.Default8BitQuantizeScheme()
    scheme.get_layout_transformer = _KernelKeepingLayout
    return scheme


class _ActivationRangesLeftOut:
    """A scheme's quantize registry whose configs for the layers named quantize their weights
    (with the scheme's own weight quantizer) but not their activation's output."""

    def __init__(self, registry, names):
        self._registry, self._names = registry, frozenset(names)

    def __getattr__(self, name):
        return getattr(self._registry, name)

    def get_quantize_config(self, layer):
        config = self._registry.get_quantize_config(layer)
        if layer.name in self._names:
            config.activation_attrs = []
        return config


def leave_activation_ranges_out(scheme, names):
    """Makes `scheme` quantize no activation output of the layers named (Conv2D, Dense...)."""
    registry = scheme.get_quantize_registry()
    scheme.get_quantize_registry = lambda: _ActivationRangesLeftOut(registry, names)
    return scheme


def _zero_centroid_mask(centroids):
    """tfmot's mask that keeps the centroid nearest zero at zero, for the loaded centroids."""
    value = centroids.numpy()
    return (1.0 - np.eye(value.shape[-1], dtype=value.dtype)[np.argmin(np.abs(value), axis=-1)])


def _register_tfmot_objects():
    """Lets QAT models load with plain `load_model`, without tfmot's `quantize_scope`; names the
    caller registered already keep their objects."""
    objects = dict(_quantize.quantize_scope().custom_objects[0], QuantizeLayer=QuantizeLayer,
                   QuantizeWrapperV2=QuantizeWrapperV2,
                   FirstBatchMovingAverageQuantizer=FirstBatchMovingAverageQuantizer,
                   QuantizeAwareSwish=QuantizeAwareSwish)
    for name in ("PrunePreserveDefault8BitConvWeightsQuantizer", "PrunePreserveDefault8BitWeightsQuantizer",
                 "PrunePreserveDefaultWeightsQuantizer"):
        objects[name] = getattr(_prune_preserve, name)
    objects.update(tfmot.clustering.keras.cluster_scope().custom_objects[0])
    custom = keras.utils.get_custom_objects()
    for name, obj in objects.items():
        custom.setdefault(name, obj)


_register_tfmot_objects()
