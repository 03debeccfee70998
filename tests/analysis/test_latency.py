"""`kc.analysis.latency`: each channel group shrunk alone, exported and timed; measurements kept on disk."""

import importlib
import json
import os

import pytest

import keras_compress as kc


# Timing reads files, not models: the scan is the same for either flavour (`sensitivity`'s tests cover
# the channel groups of both), so its tests run on tf_keras, without a JAX export's TensorFlow rebuild.
def test_each_group_shrunk_alone_has_fewer_macs_and_parameters(tf_keras_cnn, tmp_path):
    table = kc.analysis.latency(tf_keras_cnn, ratios=(0.5,), runs=3, warmup=1, directory=str(tmp_path),
                                verbose=0)
    assert [row["name"] for row in table.rows] == ["conv_a", "conv_b", "dense_a"]
    assert table.baseline["ms"] > 0 and table.baseline["macs"] > 0
    for row in table.rows:
        cell = row["cells"][0.5]
        assert cell["ms"] > 0
        assert cell["macs"] < table.baseline["macs"] and cell["parameters"] < table.baseline["parameters"]
    # conv_b's 16 filters become 8: its own MACs and those of dense_a reading them halve.
    assert table.rows[1]["cells"][0.5]["parameters"] == table.baseline["parameters"] - (3 * 3 * 8 * 8 + 8) - (
        6 * 6 * 8 * 32)
    assert "| conv_b |" in table.to_markdown()
    json.dumps(table.to_dict())
    saved = table.baseline["ms"] - table.rows[1]["cells"][0.5]["ms"]
    assert table.saved_ms("conv_b", 0.5) == pytest.approx(saved)


def test_a_second_scan_reads_the_measurements_of_the_first(tf_keras_cnn, tmp_path, monkeypatch):
    first = kc.analysis.latency(tf_keras_cnn, runtime="onnx", ratios=(0.25,), runs=2, warmup=0,
                                directory=str(tmp_path), verbose=0)
    [saved] = os.listdir(tmp_path)
    assert saved.startswith("latency-") and saved.endswith(".json")

    def no_export(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(importlib.import_module("keras_compress.export"), "export", no_export)
    again = kc.analysis.latency(tf_keras_cnn, runtime="onnx", ratios=(0.25,), runs=2, warmup=0,
                                directory=str(tmp_path), verbose=0)
    assert again.to_dict() == first.to_dict()


def test_an_interrupted_scan_resumes_with_what_it_measured(tf_keras_cnn, tmp_path, monkeypatch):
    module = importlib.import_module("keras_compress.analysis.latency")
    measure, calls = module.measure, []

    def failing_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(*args)

    monkeypatch.setattr(module, "measure", failing_third)
    with pytest.raises(KeyboardInterrupt):
        kc.analysis.latency(tf_keras_cnn, ratios=(0.5,), runs=2, warmup=0, directory=str(tmp_path), verbose=0)
    [saved] = os.listdir(tmp_path)
    assert len(json.load(open(tmp_path / saved))) == 2  # the baseline and the first group
    calls.clear()
    monkeypatch.setattr(module, "measure", lambda *args: calls.append(1) or measure(*args))
    table = kc.analysis.latency(tf_keras_cnn, ratios=(0.5,), runs=2, warmup=0, directory=str(tmp_path),
                                verbose=0)
    assert len(calls) == 2 and len(table.rows) == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(runtime="tensorrt"), "runtime must be one of"),
    (dict(batch_size=0), "batch_size must be an integer of at least 1"),
    (dict(threads=1.5), "threads must be an integer"),
    (dict(runs=0), "runs must be an integer of at least 1"),
    (dict(ratios=()), "ratios must be a non-empty sequence"),
])
def test_bad_settings_are_refused_before_any_export(tf_keras_cnn, kwargs, message, monkeypatch):
    monkeypatch.setattr(importlib.import_module("keras_compress.export"), "export",
                        lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(ValueError, match=message):
        kc.analysis.latency(tf_keras_cnn, verbose=0, **kwargs)


def test_a_file_in_place_of_the_directory_is_refused(tf_keras_cnn, tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        kc.analysis.latency(tf_keras_cnn, directory=str(tmp_path / "taken"), verbose=0)
