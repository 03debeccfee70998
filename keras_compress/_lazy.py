"""Packages whose public names load on first use, so that importing one runs no heavy import."""

import importlib
import sys
import types

__all__ = ["lazy_exports"]


def lazy_exports(package, names, removed=None):
    """`(__getattr__, __dir__)` for `package`, whose public `names` map to `"module"` (the
    submodule itself) or `"module:attribute"`, modules relative to the package (`"..module"`
    for one beside it); `removed` maps names that are gone to what replaced them.

    A public function or class keeps its name when a submodule of the same name is
    imported later (`keras_compress.export`, the function, and `keras_compress/export/`).
    """

    class LazyPackage(types.ModuleType):
        def __setattr__(self, name, value):
            if ":" in names.get(name, "") and isinstance(value, types.ModuleType):
                return  # the import system naming a submodule: keep the public name
            super().__setattr__(name, value)

    sys.modules[package].__class__ = LazyPackage

    def __getattr__(name):
        if name in (removed or {}):
            raise AttributeError(f"{package}.{name} was removed: {removed[name]}")
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = names[name].partition(":")
        value = importlib.import_module(module if module.startswith("..") else f".{module}", package)
        value = getattr(value, attribute) if attribute else value
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
