"""TensorRT: the CPU-side checks run everywhere; engine builds need an NVIDIA GPU."""

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import keras_compress as kc
from keras_compress.export.qdq import symmetric_activations


def tensorrt_available():
    try:
        from keras_compress._tensorrt import require_tensorrt

        require_tensorrt()
        return True
    except ImportError:
        return False


needs_gpu = pytest.mark.skipif(not tensorrt_available(),
                               reason="needs an NVIDIA GPU and pip install keras-compress[tensorrt]")
no_gpu = pytest.mark.skipif(tensorrt_available(), reason="TensorRT and a GPU are present here")


@pytest.fixture(scope="module")
def onnx_files(qat_pair, digits, tmp_path_factory):
    model, qat = qat_pair
    folder = tmp_path_factory.mktemp("trt")
    files = {"float32": kc.export(model, str(folder / "float.onnx")).path,
             "float16": kc.export(model, str(folder / "half.onnx"), quantize="float16",
                                  compare_speed=False).path,
             "dynamic": kc.export(model, str(folder / "dynamic.onnx"), quantize="dynamic",
                                  compare_speed=False).path,
             "qat": kc.export(qat, str(folder / "qat.onnx")).path}
    return files


@pytest.mark.parametrize("name, precision, ready", [
    ("float32", "float32", True), ("float16", "float16", True), ("qat", "int8", True),
    ("dynamic", "int8", False)])
def test_check_tensorrt_reports_precision_and_readiness(onnx_files, name, precision, ready):
    check = kc.check_tensorrt(onnx_files[name])
    assert check.precision == precision and check.ready is ready
    assert check.inputs[0][1][0] is None  # dynamic batch
    text = str(check)
    assert ("NOT ready" in text) is (not ready)
    if name == "dynamic":
        assert "MatMulInteger" in " ".join(check.problems) or "ConvInteger" in " ".join(check.problems)
    if name == "qat":
        assert check.weight_dequantize_per_channel == 4 and check.asymmetric_qdq > 0
        assert any("symmetric int8" in note for note in check.notes)


def test_symmetric_activations_keep_the_qat_model_s_predictions(onnx_files, qat_pair, digits, tmp_path):
    _, qat = qat_pair
    proto = onnx.load(onnx_files["qat"])
    assert symmetric_activations(proto) > 0
    initializers = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = initializers[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any()
    path = str(tmp_path / "symmetric.onnx")
    onnx.save(proto, path)
    x_test = digits[1][0]
    got = kc.load(path).predict(x_test).argmax(-1)
    assert np.mean(got == qat.predict(x_test, verbose=0).argmax(-1)) >= 0.98
    assert kc.check_tensorrt(path).asymmetric_qdq == 0


@no_gpu
def test_engines_without_tensorrt_or_gpu_fail_clearly_before_any_work(float_and_qat, tmp_path):
    model, _ = float_and_qat
    with pytest.raises(kc.BackendUnavailableError,
                       match=r"pip install keras-compress\[tensorrt\]|NVIDIA GPU"):
        kc.export(model, str(tmp_path / "m.engine"), precision="fp16")
    assert os.listdir(tmp_path) == []
    (tmp_path / "fake.engine").write_bytes(b"not an engine")
    with pytest.raises(kc.BackendUnavailableError, match="NVIDIA GPU"):
        kc.load(str(tmp_path / "fake.engine"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(quantize="dynamic"), "dynamic quantization has no TensorRT form"),
    (dict(quantize="float16"), 'pass precision="fp16"'),
    (dict(precision="int8"), "precision must be one of"),
    (dict(precision="fp8"), "precision must be one of"),
])
def test_bad_engine_arguments_are_refused_before_any_work(float_and_qat, tmp_path, kwargs, message):
    model, _ = float_and_qat
    with pytest.raises(kc.ExportError, match=message):
        kc.export(model, str(tmp_path / "m.engine"), **kwargs)
    assert os.listdir(tmp_path) == []


@needs_gpu
@pytest.mark.parametrize("which, kwargs, precision", [
    ("float", dict(precision="fp32"), "float32"), ("float", dict(precision="fp16"), "float16"),
    ("qat", dict(), "int8")])
def test_engines_build_run_and_match_their_source(qat_pair, digits, tmp_path, which, kwargs, precision):
    model = dict(zip(("float", "qat"), qat_pair))[which]
    x_test = digits[1][0]
    artifact = kc.export(model, str(tmp_path / "m.engine"), sample_data=x_test, **kwargs)
    assert artifact.format == "tensorrt" and artifact.precision == precision
    counts = artifact.settings["layer_precisions"]
    if precision == "int8":
        assert counts.get("int8", 0) > 0  # int8 kernels were chosen
    runner = kc.load(artifact.path)
    expected = model.predict(x_test[:32], verbose=0)
    tolerance = {"float32": 1e-3, "float16": 5e-2, "int8": 2.5e-1}[precision] * np.abs(expected).max()
    for batch in (1, 7, 32):  # any batch within the profile, each matching the Keras model
        got = runner.predict(x_test[:batch])
        assert got.shape == (batch, 10)
        assert np.abs(got - expected[:batch]).max() <= tolerance
        assert np.mean(got.argmax(-1) == expected[:batch].argmax(-1)) >= (0.9 if batch > 1 else 1.0)
