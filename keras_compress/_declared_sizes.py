"""Sizes a model file declares, checked against budgets before anything is allocated.

A small file can declare huge things: a zip member that inflates a thousandfold, a
`config.json` of gigabytes, an HDF5 dataset or checkpoint variable of billions of elements
stored as a fill value. Loading allocates what is declared before it notices that the bytes
are not there. Each check here reads only headers and refuses with what was declared and
the limit.
"""

import json
import math
import os
import shutil
import tempfile
import zipfile

from keras_compress.errors import ModelFileError

__all__ = ["check_declared_sizes", "default_memory_budget", "read_json_member"]

# A zip member or a stored weight may declare this many times its stored bytes, above the floor
# (Keras 3's own guard uses the same ratio): deflate reaches ~1000:1 only on constant data.
MAX_EXPANSION = 100
EXPANSION_FLOOR = 16 << 20
# config.json and metadata.json: the configs of the largest keras.applications are ~1 MB.
MAX_JSON_BYTES = 64 << 20
BUDGET_VARIABLE = "KERAS_COMPRESS_MEMORY_BUDGET"


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def default_memory_budget():
    """Bytes a model file may declare: `$KERAS_COMPRESS_MEMORY_BUDGET` (bytes), or half of this
    machine's memory."""
    text = os.environ.get(BUDGET_VARIABLE)
    if text is None:
        return _physical_memory() // 2
    try:
        budget = int(text)
    except ValueError:
        budget = 0
    if budget < 1:
        raise ValueError(f"{BUDGET_VARIABLE} must be a number of bytes >= 1, got {text!r}")
    return budget


def _size(count):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.2f} {unit}"
        count /= 1024


_RAISE_BUDGET = (f"If the file is genuine and this machine has the memory, raise the budget (memory_budget=, "
                 f"or ${BUDGET_VARIABLE} in bytes).")


def _refuse(path, what, declared, limit, hint=_RAISE_BUDGET):
    raise ModelFileError(f"{path} was refused: {what} declares {_size(declared)}, over the limit of "
                         f"{_size(limit)}. {hint}")


def _check_json(path, what, declared):
    if declared > MAX_JSON_BYTES:
        _refuse(path, what, declared, MAX_JSON_BYTES, "The configuration of a real model takes a few MB at "
                "most: the file is built to exhaust memory, or is damaged.")


def _check_expansion(path, what, declared, stored, budget):
    limit = max(EXPANSION_FLOOR, MAX_EXPANSION * stored)
    if declared > limit:
        raise ModelFileError(f"{path} was refused: {what} declares {_size(declared)} but only "
                             f"{_size(stored)} are stored (more than {MAX_EXPANSION}x, the limit): the "
                             "file is built to exhaust memory or disk, or is damaged.")
    if declared > budget:
        _refuse(path, what, declared, budget)


def _check_zip(path, budget, name):
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        for info in members:
            what = f"the archive member {info.filename!r}"
            if info.filename.endswith(".json"):
                _check_json(name, what, info.file_size)
            _check_expansion(name, what, info.file_size, info.compress_size, budget)
        total = sum(info.file_size for info in members)
        if total > budget:
            _refuse(name, "the archive", total, budget)
        for info in members:
            if info.filename.endswith(".h5"):  # read from disk: seeking in a zip member rereads it
                extracted = archive.extract(info, tempfile.mkdtemp(dir=os.path.dirname(path)))
                try:
                    _check_h5(name, extracted, budget, f"{info.filename}: ")
                finally:
                    shutil.rmtree(os.path.dirname(extracted), ignore_errors=True)


def _outside_reason(name, link, item):
    """Why an HDF5 link or dataset makes reading leave the file, or None."""
    import h5py

    if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
        return f"{name!r} is a link ({type(link).__name__})"
    if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
        return f"the weight {name!r} keeps its data in other files"
    return None


def _check_h5(path, source, budget, where=""):
    """HDF5 weights: nothing kept outside the file, each stored as declared, all within the budget
    (optimizer slots, loaded only with compile=True, left out of the total)."""
    import h5py
    import numpy as np

    with h5py.File(source, "r") as file:
        for key in ("model_config", "training_config"):
            text = file.attrs.get(key)
            if text is not None:
                _check_json(path, f"the HDF5 attribute {key!r}", len(text))
        links = []
        file.visititems_links(lambda name, link: links.append((name, link)))
        total = 0
        for name, link in links:
            item = file.get(name) if isinstance(link, h5py.HardLink) else None
            reason = _outside_reason(name, link, item)
            if reason:
                raise ModelFileError(f"{path} was refused: {where}{reason}; a model file holds its own "
                                     "weights (an HDF5 link or external storage would read other files).")
            if not isinstance(item, h5py.Dataset):
                continue
            declared = int(np.prod(item.shape or (), dtype=np.float64)) * item.dtype.itemsize
            if not name.startswith(("optimizer_weights", "optimizer")):
                total += declared
            _check_expansion(path, f"the weight {where}{name!r} (shape {item.shape})", declared,
                             item.id.get_storage_size(), budget)
    if total > budget:
        _refuse(path, f"the weights ({where or 'HDF5'})", total, budget)


def _check_saved_model(path, budget, name):
    import numpy as np
    import tensorflow as tf

    prefix = os.path.join(path, "variables", "variables")
    if not os.path.exists(prefix + ".index"):
        return
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    declared = sum(int(np.prod(shape, dtype=np.float64)) * max(dtypes[name].size, 1)
                   for name, shape in reader.get_variable_to_shape_map().items())
    folder = os.path.dirname(prefix)
    stored = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
                 if name.startswith("variables.data"))
    _check_expansion(name, "the variables", declared, stored, budget)


# Ops that allocate what their constant arguments ask for: a shape, a count or a limit.
_ALLOCATING_OPS = frozenset({"fill", "ones", "zeros", "range", "tile", "broadcast_to", "repeat", "one_hot",
                             "sequence_mask", "meshgrid", "math.range"})


def _declared_elements(value):
    """The most elements a constant argument of an allocating op asks for: a shape (a list of
    ints) or a count (a number), as `tf.fill`, `tf.range` or `tf.tile` take them."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) else 1 << 62
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        return math.prod(value)
    if isinstance(value, (list, dict)):
        return max(map(_declared_elements, value.values() if isinstance(value, dict) else value), default=0)
    return 0


def _declared_weight_elements(node):
    """Elements of the kernel that a Dense, convolution or Embedding layer's config declares (the
    layer's build config gives its input), allocated when the model is built."""
    config = node.get("config")
    if not isinstance(config, dict):
        return 0
    if type(config.get("input_dim")) is int and type(config.get("output_dim")) is int:
        return config["input_dim"] * config["output_dim"]
    build = node.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    units = config.get("units", config.get("filters"))
    if not (isinstance(shape, list) and shape and type(shape[-1]) is int and type(units) is int):
        return 0
    kernel = config.get("kernel_size")
    spatial = math.prod(kernel) if isinstance(kernel, list) and all(type(k) is int for k in kernel) else 1
    return shape[-1] * spatial * units


def _check_configs(path, kind, budget, name):
    """What the model's configuration makes Keras allocate while it builds the model: layer
    weights, and what op layers called on constants ask for."""
    from keras_compress._keras import OP_LAYER_NAMES
    from keras_compress._screening import model_configs, named_nodes

    for config in model_configs(path, kind):
        nodes = list(named_nodes(config))
        weights = 4 * sum(_declared_weight_elements(node) for node in nodes)  # float32
        if weights > budget:
            _refuse(name, "the configuration (its layers' weights)", weights, budget)
        for node in nodes:
            function = node["config"].get("function") if isinstance(node.get("config"), dict) else None
            asked = 4 * _declared_elements(node.get("inbound_nodes"))
            if node["class_name"] in OP_LAYER_NAMES and function in _ALLOCATING_OPS and asked > budget:
                _refuse(name, f"the op layer calling TensorFlow's {function!r}", asked, budget)


def check_declared_sizes(path, kind, budget, name=None):
    """Refuses the file at `path` (`kind` "keras", "h5" or "saved_model"; messages call it
    `name`) when what it declares exceeds `budget` bytes or far exceeds what it stores."""
    name = name or path
    if kind == "keras":
        _check_zip(path, budget, name)
    elif kind == "h5":
        _check_h5(name, path, budget)
    else:
        _check_saved_model(path, budget, name)
    _check_configs(path, kind, budget, name)


def read_json_member(archive, name):
    """The JSON member `name` of an open zip archive, refused above `MAX_JSON_BYTES`."""
    info = archive.getinfo(name)
    _check_json(archive.filename, f"the archive member {name!r}", info.file_size)
    return json.loads(archive.read(info))
