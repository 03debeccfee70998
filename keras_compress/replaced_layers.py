"""A layer of yours with some of the layers it holds replaced: smaller ones (`shrink` removes
attention heads and feed-forward width) or quantization-aware ones (`quantize_aware` reaches
inside custom layers). The copy of your layer is wrapped in `Replaced`, whose config records each
replacement by its route from your layer, so that a saved model loads with them.
"""

import contextlib
import posixpath

import keras

from keras_compress._keras3 import call_like, child_layers, replace_child
from keras_compress._layer_configs import rebuilt

__all__ = ["Replaced", "in_scope_of", "put", "replaced_copy"]


def in_scope_of(layer):
    """The name scope `layer` was built in, for a layer that replaces it: variables' paths stay unique
    (keras-hub names every encoder's attention alike)."""
    return _scope((layer.path or "").rpartition("/")[0])


@contextlib.contextmanager
def _scope(path):
    """Keras name scopes, one per name of `path` ("a/b"), entered together."""
    with contextlib.ExitStack() as stack:
        for name in filter(None, path.split("/")):
            stack.enter_context(keras.name_scope(name))
        yield


def _built_scope(layer):
    """The name scope under which rebuilding `layer` from its config gives its variables their paths."""
    paths = [variable.path for variable in layer.weights]
    if not paths:
        return ""
    common = posixpath.commonpath(paths) if len(paths) > 1 else posixpath.dirname(paths[0])
    head, _, last = common.rpartition("/")
    return head if last == layer.name else common


@keras.saving.register_keras_serializable(package="keras_compress")
class Replaced(keras.layers.Wrapper):
    """A layer of yours some of whose layers keras_compress replaced. It calls your layer; its config
    records the replacements, so that a saved model loads with them.

    Args:
        layer: your layer, already holding the replacements.
        replaced: `{route: replacement layer}`, a route being the child-layer indices, joined by "/",
            from `layer` to the layer replaced.
    """

    def __init__(self, layer, replaced, **kwargs):
        super().__init__(layer, **kwargs)
        # Not tracked: the replacements are your layer's, and Keras tracks them there.
        object.__setattr__(self, "replaced", dict(replaced))
        self.supports_masking = layer.supports_masking
        call_like(self, layer)

    def build(self, *args, **kwargs):
        self.built = True  # your layer builds when called, as it always does

    def rebuilt_copy(self):
        """A copy (as `_layer_configs.rebuilt` makes one) that needs your layer's class registered no
        more than your layer's own copy does."""
        return replaced_copy(self, {})

    def call(self, *args, **kwargs):
        return self.layer(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        # Your layer's own build runs when it is called (a layer without one warns if told to build).
        config["layer_build_config"] = config["layer"].pop("build_config", None)
        config["replaced"] = {route: keras.saving.serialize_keras_object(layer)
                              for route, layer in self.replaced.items()}
        config["scopes"] = {route: _built_scope(layer) for route, layer in self.replaced.items()}
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        scopes = config.pop("scopes")
        replaced = {}
        for route, value in config.pop("replaced").items():
            with _scope(scopes[route]):
                replaced[route] = keras.saving.deserialize_keras_object(value, custom_objects=custom_objects)
        put(layer, replaced, config.pop("layer_build_config"))
        return cls(layer, replaced, **config)


# Files written before the layer had its present name.
keras.saving.get_custom_objects()["keras_compress>Resized"] = Replaced


def _stands_in_for(new, old):
    """Whether layer `new` may replace `old`: a layer of its class (smaller), a wrapper of one
    (quantization-aware), or a model for a model (a nested feed-forward `Sequential` becomes a
    functional model in QAT)."""
    if isinstance(new, keras.Model) and isinstance(old, keras.Model):
        return True
    return type(new) is type(old) or (isinstance(new, keras.layers.Wrapper) and type(new.layer) is type(old))


def put(layer, replaced, build_config):
    """Puts each replacement of `{route: layer}` into `layer`, where its route leads; a layer with a
    build of its own (keras-hub's encoders make their layers there) is built first, from
    `build_config`, so that its first call does not build what was replaced."""
    if build_config is not None and not layer.built and type(layer).build is not keras.layers.Layer.build:
        layer.build_from_config(build_config)
    for route, new in replaced.items():
        parent, old = None, layer
        for step in map(int, route.split("/")):
            children = child_layers(old)
            if step >= len(children):
                raise ValueError(f"it holds no layer at route {route}")
            parent, old = old, children[step]
        if not _stands_in_for(new, old):
            raise ValueError(f"route {route} leads to a {type(old).__name__}, which a "
                             f"{type(new).__name__} cannot replace")
        replace_child(parent, old, new)


def replaced_copy(layer, replacements):
    """A copy of `layer` (rebuilt from its config) holding `{route tuple: new layer}`, wrapped in
    `Replaced` under `layer`'s name. The copy of a `Replaced` layer is one too, with both sets."""
    if isinstance(layer, Replaced):  # its earlier replacements copied (built, as a file loads them)
        replaced = {}
        for route, old in layer.replaced.items():
            with in_scope_of(old):
                replaced[route] = keras.saving.deserialize_keras_object(
                    keras.saving.serialize_keras_object(old), safe_mode=False)  # a layer in memory
        replaced.update({"/".join(map(str, route[1:])): new for route, new in replacements.items()})
        layer = layer.layer
    else:
        replaced = {"/".join(map(str, route)): new for route, new in replacements.items()}
    copy = rebuilt(layer)
    put(copy, replaced, layer.get_build_config())
    return Replaced(copy, replaced, name=layer.name)
