"""The command line answers bad files and unwritable outputs with a message naming the file and
exit status 2, never a traceback; `--help` does not load TensorFlow."""

import dataclasses
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_compress import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory, tf_keras_cnn):
    folder = tmp_path_factory.mktemp("cli")
    model = str(folder / "cnn.keras")
    tf_keras_cnn.save(model)
    good = folder / "good.npz"
    np.savez(good, x=np.zeros((4, 8, 8, 1), "float32"), y=np.zeros(4, "int64"))
    bad = {"folder": folder / "data_folder", "empty": folder / "empty.npz", "truncated": folder / "cut.npz",
           "wrong kind": folder / "model_as_data.npz"}
    bad["folder"].mkdir()
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(good.read_bytes()[:100])
    bad["wrong kind"].write_bytes(open(model, "rb").read())
    return model, str(good), {kind: str(path) for kind, path in bad.items()}


def _fails_naming(capsys, argv, *names):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    for name in names:
        assert name in captured.err, captured.err
    return captured


@pytest.mark.parametrize("kind", ["folder", "empty", "truncated", "wrong kind"])
@pytest.mark.parametrize("flag", ["--sample-data", "--calibration", "--data"])
def test_a_bad_data_file_is_named_with_its_flag(files, tmp_path, capsys, kind, flag):
    model, _, bad = files
    if flag == "--data":
        argv = ["benchmark", model, "--data", bad[kind], "--no-memory", "--runs", "1"]
    else:
        argv = ["export", model, "-o", str(tmp_path / "m.onnx"), flag, bad[kind]]
        argv += ["--quantize", "static"] if flag == "--calibration" else []
    _fails_naming(capsys, argv, flag, bad[kind])
    assert not os.path.exists(tmp_path / "m.onnx")


@pytest.mark.parametrize("flag", ["--markdown", "--json", "--plot"])
def test_benchmark_outputs_are_checked_before_the_benchmark_runs(files, tmp_path, capsys, flag):
    model, good, _ = files
    captured = _fails_naming(capsys,
                             ["benchmark", model, "--data", good, "--labels", "y", flag, str(tmp_path)],
                             flag, "is a folder")
    assert captured.out == ""  # nothing was measured
    _fails_naming(capsys, ["benchmark", model, "--data", good, flag, str(tmp_path / "no" / "r.md")],
                  "does not exist")


def test_an_unwritable_output_folder_is_an_error_not_a_traceback(files, capsys):
    model, _, _ = files
    _fails_naming(capsys, ["export", model, "-o", "/proc/cnn.onnx"], "/proc")


def test_a_full_disk_is_an_error_not_a_traceback(files, tmp_path, capsys, monkeypatch):
    from keras_compress.formats import FORMATS

    def full(model, target, metadata, **options):
        raise OSError(errno.ENOSPC, "No space left on device", target)

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], exporter=full))
    _fails_naming(capsys, ["export", files[0], "-o", str(tmp_path / "m.onnx")], "No space left on device")
    assert os.listdir(tmp_path) == []


def test_check_tensorrt_refuses_what_is_not_onnx(files, tmp_path, capsys, tf_keras_cnn):
    import keras_compress as kc

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    tflite = kc.export(tf_keras_cnn, str(tmp_path / "m.tflite")).path
    for path in (str(empty), tflite, str(tmp_path)):
        captured = _fails_naming(capsys, ["check-tensorrt", path], path, "is not an ONNX model")
        assert "ready" not in captured.out


def test_help_answers_without_loading_tensorflow():
    script = ("import sys\nfrom keras_compress import cli\ntry:\n    cli.main(['--help'])\n"
              "except SystemExit:\n    pass\nimport keras_compress\nkeras_compress.__version__\n"
              "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', 'onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "usage: keras-compress" in done.stdout and done.stdout.strip().endswith("[]")


def test_a_pipe_given_as_a_model_or_data_file_is_refused_without_blocking(files, tmp_path, capsys):
    model, good, _ = files
    pipe = str(tmp_path / "pipe.npz")
    os.mkfifo(pipe)
    _fails_naming(capsys, ["export", model, "-o", str(tmp_path / "m.onnx"), "--sample-data", pipe],
                  "--sample-data", "is not a regular file")
    pipe_model = str(tmp_path / "pipe.keras")
    os.mkfifo(pipe_model)
    for argv in (["export", pipe_model, "-o", str(tmp_path / "m.onnx")],
                 ["benchmark", pipe_model, "--data", good, "--no-memory"]):
        _fails_naming(capsys, argv, pipe_model, "a named pipe")


def test_search_refuses_a_directory_that_is_a_file(files, tmp_path, capsys):
    model, good, _ = files
    taken = tmp_path / "results"
    taken.write_text("not a folder")
    _fails_naming(capsys, ["search", model, "--data", good, "--labels", "y", "--max-accuracy-drop", "0.01",
                           "--trials", "1", "--directory", str(taken)], str(taken), "is a file")
    assert taken.read_text() == "not a folder"
