import dataclasses
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import keras_compress as kc
from keras_compress._flavour import keras_for, supports
from keras_compress.export.signature import sample_inputs
from keras_compress.formats import FORMATS
from models import EXPORT_MODELS as MODELS

# Every registered format (TensorRT's engines need an NVIDIA GPU: test_tensorrt.py), by its suffix.
SUFFIXES = {name: (fmt.suffixes or ("",))[0] for name, fmt in FORMATS.items() if name != "tensorrt"}


@pytest.fixture(scope="module")
def models():
    return {name: make() for name, make in MODELS.items()}


@pytest.fixture(scope="module")
def flavour_models(keras_flavour):
    """The export models built with each Keras."""
    return {name: make(keras=keras_flavour) for name, make in MODELS.items()}


@pytest.mark.parametrize("fmt", list(SUFFIXES))
@pytest.mark.parametrize("name", ["cnn", "residual", "gru", "lstm", "multi"])
def test_every_model_exports_to_every_format_with_float32_parity(flavour_models, tmp_path, fmt, name):
    model = flavour_models[name]
    flavour = keras_for(model)
    if fmt == "h5" and not supports(model, "h5"):
        with pytest.raises(kc.ExportError, match="HDF5"):
            kc.export(model, str(tmp_path / f"{name}.h5"))
        return
    artifact = kc.export(model, str(tmp_path / f"{name}{SUFFIXES[fmt]}"))
    assert artifact.format == fmt and artifact.source == model.name and artifact.precision == "float32"
    assert artifact.size_bytes > 0 and os.path.exists(artifact.path)
    assert list(artifact.parity) == flavour.output_names(model)
    runner = artifact.load()
    assert FORMATS[fmt].runner.rpartition(":")[2].startswith(type(runner).__name__)  # its own runtime
    assert [t.name for t in runner.inputs] == flavour.input_names(model)
    assert [t.name for t in runner.outputs] == flavour.output_names(model)
    x = sample_inputs(model, rows=5, seed=1)
    expected = model.predict(x if len(x) > 1 else x[0], verbose=0)
    actual = runner.predict(x if len(x) > 1 else x[0])
    for want, got in zip(*(o if isinstance(o, list) else [o] for o in (expected, actual))):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_onnx_file_has_dynamic_batch_checker_and_metadata(models, tmp_path):
    import json

    import onnx

    artifact = kc.export(models["cnn"], str(tmp_path / "cnn.onnx"), opset=15)
    proto = onnx.load(artifact.path)
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 15 and artifact.settings == {"opset": 15}
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}["keras_compress"])
    assert metadata["source_model"] == "digits_cnn" and metadata["settings"]["opset"] == 15
    assert metadata["producer"].startswith("keras_compress")


def test_runner_batches_and_resizes(models, tmp_path, digits):
    x = digits[1][0][:37]
    artifact = kc.export(models["cnn"], str(tmp_path / "cnn.tflite"))
    runner = kc.load(artifact.path, threads=1)
    whole, batched = runner.predict(x), runner.predict(x, batch_size=8)
    np.testing.assert_allclose(whole, batched, atol=1e-6)
    assert whole.shape == (37, 10)
    with pytest.raises(ValueError, match="expects shape"):
        runner.predict(np.zeros((2, 9, 9, 1), "float32"))
    with pytest.raises(ValueError, match="batch_size"):
        runner.predict(x, batch_size=0)


def test_inputs_by_name_and_sample_data(models, tmp_path):
    model = models["multi"]
    data = {"alpha": np.ones((3, 3), "float32"), "zeta": np.zeros((3, 4), "float32")}
    artifact = kc.export(model, str(tmp_path / "multi.onnx"), sample_data=data)
    z_out, a_out = kc.load(artifact.path).predict(data)
    assert z_out.shape == (3, 2) and a_out.shape == (3, 5)
    with pytest.raises(ValueError, match="Missing inputs"):
        kc.load(artifact.path).predict({"alpha": data["alpha"]})


def test_existing_destination_is_kept_unless_overwrite(models, tmp_path):
    path = tmp_path / "cnn.onnx"
    kc.export(models["cnn"], str(path))
    first = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kc.export(models["residual"], str(path))
    assert path.read_bytes() == first
    kc.export(models["residual"], str(path), overwrite=True)
    assert (path.read_bytes() != first
            and kc.load(str(path)).metadata["source_model"] == models["residual"].name)
    folder = tmp_path / "saved"
    kc.export(models["cnn"], str(folder))
    kc.export(models["cnn"], str(folder), overwrite=True)
    assert kc.load(str(folder)).format == "saved_model"


@pytest.mark.parametrize("suffix, make", [
    ("", lambda path: (path.mkdir(), (path / "thesis.txt").write_text("years of work"))),
    (".onnx", lambda path: (path.mkdir(), (path / "thesis.txt").write_text("years of work"))),
    (".onnx", lambda path: path.write_text("years of work")),
    (".tflite", lambda path: path.write_text("years of work")),
    ("", lambda path: path.write_text("years of work")),
    (".h5", lambda path: _hdf5_data(path)),
    (".keras", lambda path: _zip_of(path)),
])
def test_overwrite_replaces_only_an_artifact_of_the_same_kind(models, tmp_path, suffix, make):
    path = tmp_path / f"target{suffix}"
    make(path)
    before = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(kc.ExportError, match="holds no .* model: overwrite replaces only a model file"):
        kc.export(models["cnn"], str(path), overwrite=True)
    assert {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def _hdf5_data(path):
    """Training data in HDF5, the container of legacy .h5 models."""
    import h5py

    with h5py.File(path, "w") as file:
        file["x"] = np.arange(12.0).reshape(3, 4)


def _zip_of(path):
    """A backup zip named like a .keras archive."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "years of work")


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_an_empty_file_made_for_the_artifact_is_taken(models, tmp_path, suffix):
    handle, path = tempfile.mkstemp(suffix=suffix, dir=tmp_path)  # as the tfmot and TFLite guides do
    os.close(handle)
    artifact = kc.export(models["cnn"], path)
    assert os.path.getsize(path) == artifact.size_bytes > 0
    assert kc.load(path).format == suffix[1:]


_HOLD_LOCK = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_partial_folders_of_dead_writers_are_cleaned_and_live_ones_kept_whatever_their_pid(models, tmp_path):
    # Names with process ids that mean nothing here: a writer in another PID namespace has them too.
    dead_export, dead_report = tmp_path / ".kc-1-abc123.partial", tmp_path / ".kc-2-def456.partial"
    live = tmp_path / ".kc-999999-fed321.partial"
    for folder in (dead_export, live):
        folder.mkdir()
        (folder / "artifact.onnx").write_bytes(b"x" * 1000)
    dead_report.write_text('{"rows": [')  # a report writer killed mid-write
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(live)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        name = "m" * 245 + ".onnx"  # as long as a file name may be
        kc.export(models["cnn"], str(tmp_path / name))
        assert sorted(os.listdir(tmp_path)) == sorted([live.name, name])
    finally:
        holder.kill()
        holder.wait()
    report = kc.benchmark({"cnn": models["cnn"]}, np.zeros((2, 8, 8, 1), "float32"), runs=1, memory=False,
                          verbose=0)
    report.to_json(str(tmp_path / "report.json"))  # the writer is dead now: its folder goes
    assert sorted(os.listdir(tmp_path)) == sorted(["report.json", name])


def test_a_target_that_appears_during_export_is_not_replaced(models, tmp_path, monkeypatch):
    path = tmp_path / "cnn.onnx"
    onnx_format = FORMATS["onnx"]

    def racing_exporter(model, target, metadata, **options):  # another process wins the race
        settings = onnx_format.export(model, target, metadata, **options)
        path.write_bytes(b"the other process's artifact")
        return settings

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(onnx_format, exporter=racing_exporter))
    with pytest.raises(FileExistsError, match="appeared while exporting"):
        kc.export(models["cnn"], str(path))
    assert path.read_bytes() == b"the other process's artifact" and os.listdir(tmp_path) == ["cnn.onnx"]


def test_overwrite_leaves_data_that_replaced_the_artifact_during_export(models, tmp_path, monkeypatch):
    path = tmp_path / "cnn.onnx"
    kc.export(models["cnn"], str(path))
    onnx_format = FORMATS["onnx"]

    def user_saves_data_there(model, target, metadata, **options):
        settings = onnx_format.export(model, target, metadata, **options)
        path.write_text("years of work")
        return settings

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(onnx_format, exporter=user_saves_data_there))
    with pytest.raises(FileExistsError, match="changed, and holds no ONNX model: it was left as it is"):
        kc.export(models["cnn"], str(path), overwrite=True)
    assert path.read_text() == "years of work"


def test_verification_cannot_pass_on_nothing_or_on_nan(models, tmp_path):
    model = models["cnn"]
    shape = (1, *model.input_shape[1:])
    with pytest.raises(kc.ExportError, match="sample_data has no rows"):
        kc.export(model, str(tmp_path / "a.onnx"), sample_data=np.zeros((0, *shape[1:]), "float32"))
    with pytest.raises(kc.ExportError, match="NaN or Inf in input"):
        kc.export(model, str(tmp_path / "a.onnx"), sample_data=np.full(shape, np.nan, "float32"))
    broken = keras.models.clone_model(model)
    broken.set_weights([np.full_like(w, 1e30) for w in model.get_weights()])  # outputs overflow
    with pytest.raises(kc.ExportVerificationError, match="NaN or Inf values"):
        kc.export(broken, str(tmp_path / "a.onnx"), sample_data=np.ones((4, *shape[1:]), "float32"))
    with pytest.raises(kc.ExportError, match="generated .* do not suit it \\(the model's outputs are NaN"):
        kc.export(broken, str(tmp_path / "a.onnx"))
    diverged = keras.models.clone_model(model)
    diverged.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    for path in ("a.onnx", "a.tflite"):  # refused before any converter runs (TFLite's may crash)
        with pytest.raises(kc.ExportError, match="Layers .* hold NaN or Inf weights \\(training diverged\\)"):
            kc.export(diverged, str(tmp_path / path), sample_data=np.ones((4, *shape[1:]), "float32"))
    assert os.listdir(tmp_path) == []


def test_a_nan_difference_fails_the_check():
    from keras_compress.export.verify import check_parity

    entry = {"max_abs_diff": float("nan"), "mean_abs_diff": float("nan"), "scale": 1.0}
    with pytest.raises(kc.ExportVerificationError, match="differs from the source model by nan"):
        check_parity({"out": entry}, "float32", "test")


def test_a_failed_export_leaves_nothing_behind(models, tmp_path, monkeypatch):
    from keras_compress.export import verify

    monkeypatch.setitem(verify.TOLERANCES, "float32", {"max_abs_diff": -1.0})  # every comparison fails
    with pytest.raises(kc.ExportVerificationError, match="differs from the source model"):
        kc.export(models["cnn"], str(tmp_path / "cnn.onnx"))
    assert os.listdir(tmp_path) == []
    with pytest.warns(UserWarning, match="differs from the source model"):
        artifact = kc.export(models["cnn"], str(tmp_path / "cnn.tflite"), verify="warn")
    assert os.listdir(tmp_path) == ["cnn.tflite"]
    assert next(iter(artifact.parity.values()))["max_abs_diff"] >= 0


def test_a_format_that_cannot_take_a_layer_names_it(tmp_path):
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Lambda(lambda t: tf_unsupported(t), name="custom_op")(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(kc.ExportError, match="TFLite cannot take layer\\(s\\) custom_op"):
        kc.export(model, str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []


def tf_unsupported(t):
    import tensorflow as tf

    return tf.strings.to_number(tf.strings.as_string(t))  # string ops have no TFLite builtin


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(path="m.xyz"), kc.ExportError, "unknown suffix '.xyz'"),
    (dict(path="m.keras", quantize="dynamic"), kc.ExportError,
     "quantize applies to ONNX, TensorRT and TFLite exports, not .keras"),
    (dict(path="m.onnx", quantize="int4"), kc.ExportError, "quantize must be None or one of"),
    (dict(path="m.onnx", quantize="static"), kc.ExportError, "needs calibration_data"),
    (dict(path="m.onnx", calibration_data=np.zeros((4, 8, 8, 1))), kc.ExportError, "only used with"),
    (dict(path="m.onnx", quantize="static", calibration_data=np.zeros((4, 8, 8, 1)), calibrate_method="mse"),
     kc.ExportError, "calibrate_method must be one of"),
    (dict(path="m.tflite", quantize="static", calibration_data=np.zeros((4, 8, 8, 1)),
          calibrate_method="entropy"), kc.ExportError,
     "calibrate_method applies to ONNX exports, not TFLite; use a .onnx path"),
    (dict(path="m.onnx", quantize="static", calibration_data=np.zeros((4, 8, 8, 1)), io="int8"),
     kc.ExportError, "io applies to TFLite exports, not ONNX"),
    (dict(path="m.tflite", quantize="dynamic", io="int8"), kc.ExportError, "full-integer TFLite"),
    (dict(path="m.onnx", precision="fp16"), kc.ExportError, "precision applies to TensorRT"),
    (dict(path="m.onnx", quantize="static", calibration_data=np.zeros((0, 8, 8, 1))), kc.ExportError,
     "empty"),
    (dict(path="m.onnx", quantize="static", calibration_data=np.zeros((4, 5, 5, 1))), ValueError,
     "expects shape"),
    (dict(path="m.onnx", format="pdf"), kc.ExportError, "format must be one of"),
    (dict(path="m.onnx", opset=3), kc.ExportError, "opset"),
    (dict(path="m.tflite", opset=13), kc.ExportError, "opset applies to ONNX"),
    (dict(path="m.onnx", verify="sometimes"), ValueError, "verify must be"),
    (dict(path="missing/m.onnx"), FileNotFoundError, "does not exist"),
])
def test_bad_export_arguments_are_refused_before_any_work(models, tmp_path, kwargs, error, message):
    kwargs = dict(kwargs, path=str(tmp_path / kwargs["path"]))
    with pytest.raises(error, match=message):
        kc.export(models["cnn"], **kwargs)
    assert os.listdir(tmp_path) == []


def test_pruned_models_must_be_stripped_first(models, tmp_path):
    pruned = kc.pruning.prune(models["cnn"], kc.pruning.ConstantSparsity(0.5))
    with pytest.raises(kc.ExportError, match="strip"):
        kc.export(pruned, str(tmp_path / "m.onnx"))


def test_a_keras3_model_quantized_by_keras_exports_where_it_can_and_is_refused_elsewhere(tmp_path, keras3):
    """`model.quantize("int8")` (Keras 3's post-training int8): ONNX keeps it exactly; TFLite and
    legacy .h5 are refused before any work, leaving nothing behind."""
    keras3.utils.set_random_seed(0)
    model = keras3.Sequential([keras3.Input((16,), name="x"), keras3.layers.Dense(32, activation="relu"),
                               keras3.layers.Dense(4, name="scores")])
    model.quantize("int8")
    x = np.random.default_rng(0).standard_normal((32, 16)).astype("float32")
    artifact = kc.export(model, str(tmp_path / "q.onnx"), sample_data=x)
    assert artifact.parity["scores"]["max_abs_diff"] < 1e-5
    for name, message in (("q.tflite", "quantized with Keras' model.quantize.*cannot be converted to TFLite"),
                          ("q.h5", "HDF5 .* is the legacy tf_keras format")):
        with pytest.raises(kc.ExportError, match=message):
            kc.export(model, str(tmp_path / name), sample_data=x)
        assert not os.path.exists(tmp_path / name)


def test_h5_export_for_serving_stacks_that_read_h5(models, tmp_path):
    artifact = kc.export(models["cnn"], str(tmp_path / "cnn.h5"))
    assert artifact.format == "h5" and open(artifact.path, "rb").read(8) == b"\x89HDF\r\n\x1a\n"
    x = sample_inputs(models["cnn"], rows=4)[0]
    np.testing.assert_allclose(kc.load_model(artifact.path).predict(x, verbose=0),
                               models["cnn"].predict(x, verbose=0), atol=1e-6)
    kc.export(models["residual"], artifact.path, overwrite=True)  # an .h5 artifact may be replaced


def test_generated_samples_suit_float_inputs_that_an_embedding_reads_as_indices(tmp_path):
    tokens = keras.Input((6,), name="tokens")  # float indices, as in tf2onnx's Embedding test model
    model = keras.Model(tokens, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.layers.Embedding(50, 4)(tokens))))
    x = sample_inputs(model)[0]
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() < 50 and np.all(x == np.round(x))
    assert kc.export(model, str(tmp_path / "embedding.onnx")).parity


def test_generated_samples_that_do_not_suit_the_model_say_to_pass_sample_data(tmp_path):
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, tf.math.sqrt(inputs))  # NaN for the negative samples
    with pytest.raises(kc.ExportError,
                       match="random sample inputs generated .* do not suit it.*pass sample_data"):
        kc.export(model, str(tmp_path / "m.onnx"))
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_constants_a_layer_computed_outside_the_graph_stay_constants_in_onnx(keras_flavour, tmp_path):
    """EfficientNetB0's Normalization captures its mean and variance as tensors: the ONNX file
    still takes the image alone."""
    model = keras_flavour.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10,
                                                      classifier_activation=None)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype="float32") * 255
    artifact = kc.export(model, str(tmp_path / "efficientnet.onnx"), sample_data=x)
    runner = artifact.load()
    assert len(runner.inputs) == 1 and max(row["max_abs_diff"] for row in artifact.parity.values()) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("keras_name", ["tf_keras", "keras"])
def test_tf2onnx_optimizer_failures_are_one_line_notes_not_tracebacks(keras_name, tmp_path, caplog):
    """tf2onnx's transpose optimizer fails on MobileNetV3Small and logs tracebacks; the graph it
    keeps converts and verifies, so a note is all the user sees. (TensorFlow backend: on JAX,
    tf2onnx runs in a child process.)"""
    import importlib
    import logging

    keras_flavour = importlib.import_module(keras_name)
    model = keras_flavour.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                                        classifier_activation=None)
    with caplog.at_level(logging.INFO, logger="tf2onnx"):
        kc.export(model, str(tmp_path / "mobilenet_v3.onnx"))
    optimizer = [record for record in caplog.records if record.name == "tf2onnx.optimizer"
                 and record.getMessage().startswith("Failed to apply")]
    assert optimizer
    assert all(record.exc_info is None and record.levelno == logging.INFO for record in optimizer)
    assert all("kept the graph as it was" in record.getMessage() for record in optimizer)


def test_grouped_convolutions_export_to_onnx(keras_flavour, tmp_path):
    """Keras 3 compiles grouped convolutions with XLA on TensorFlow (a function tf2onnx keeps as
    a call ONNX cannot run, e.g. in ConvNeXt): the export inlines it into a grouped Conv."""
    import onnx

    layers = keras_flavour.layers
    inputs = keras_flavour.Input((8, 8, 4))
    grouped = layers.Conv2D(8, 3, padding="same", groups=4, name="grouped")(inputs)
    model = keras_flavour.Model(inputs, layers.Dense(2)(layers.Flatten()(grouped)))
    artifact = kc.export(model, str(tmp_path / "grouped.onnx"))
    nodes = onnx.load(artifact.path).graph.node
    assert any(node.op_type == "Conv" and any(a.name == "group" and a.i == 4 for a in node.attribute)
               for node in nodes)
    assert max(row["max_abs_diff"] for row in artifact.parity.values()) < 1e-4


def test_function_calls_tf2onnx_leaves_are_refused_naming_the_layer(keras3):
    from onnx import helper

    from keras_compress.export.onnx import _refuse_function_calls

    inputs = keras3.Input((4,))
    model = keras3.Model(inputs, keras3.layers.Dense(2, name="scores")(inputs), name="m")
    node = helper.make_node("StatefulPartitionedCall", ["x"], ["y"], name="m/scores_1/Call")
    proto = helper.make_model(helper.make_graph([node], "g", [], []))
    with pytest.raises(kc.ExportError, match="ONNX cannot take layer.s. scores of model 'm': tf2onnx left "
                                             "StatefulPartitionedCall nodes"):
        _refuse_function_calls(proto, model)


def test_exact_gelu_exports_to_onnx(keras_flavour, tmp_path):
    """TensorFlow computes exact GELU with Erfc, which ONNX lacks (ConvNeXt): it becomes 1 - Erf."""
    import onnx

    layers = keras_flavour.layers
    inputs = keras_flavour.Input((6,))
    hidden = layers.Activation("gelu")(layers.Dense(4)(inputs))  # approximate=False by default
    model = keras_flavour.Model(inputs, layers.Dense(2)(hidden))
    x = np.random.default_rng(0).standard_normal((16, 6)).astype("float32") * 3
    artifact = kc.export(model, str(tmp_path / "gelu.onnx"), sample_data=x)
    assert "Erf" in {node.op_type for node in onnx.load(artifact.path).graph.node}
    assert max(row["max_abs_diff"] for row in artifact.parity.values()) < 1e-4


def test_a_lookup_table_travels_to_the_saved_model(tmp_path):
    """Exports track the variables and the preprocessing layers, not the whole model (which
    SavedModel would serialize layer by layer): a lookup layer's table is a resource it needs."""
    inputs = keras.Input((3,), dtype="int64")
    indices = keras.layers.IntegerLookup(vocabulary=[10, 20, 30], name="lookup")(inputs)
    embedded = keras.layers.Flatten()(keras.layers.Embedding(5, 4)(indices))
    outputs = keras.layers.Dense(2, name="scores")(embedded)
    model = keras.Model(inputs, outputs)
    x = np.array([[10, 20, 99], [30, 30, 10]], dtype="int64")
    artifact = kc.export(model, str(tmp_path / "served"), sample_data=x, compare_speed=False)
    np.testing.assert_allclose(artifact.load().predict(x), model(x).numpy(), atol=1e-6)
