"""Ten `keras.applications` architectures (Keras 3 on the TensorFlow backend, `weights=None`,
their smallest input, 10 classes) through every stage a user takes them: ONNX and TFLite
export with parity, quantization-aware training exported to int8 TFLite, 50% filter
pruning + `strip` + `shrink`, and 70% global weight pruning in `fit`. Each runs in a process
of its own (`application_stages.py`): TensorFlow keeps what it traced for the whole process,
and ten large models in one would need far more memory than any one of them."""

import json
import os
import subprocess
import sys

import pytest

# name -> (input size, largest parameter ratio after 50% filter pruning + shrink)
APPLICATIONS = {
    "MobileNetV2": (32, 0.35), "MobileNet": (32, 0.3), "MobileNetV3Small": (32, 0.5), "ResNet50": (32, 0.3),
    "DenseNet121": (32, 0.3), "EfficientNetB0": (32, 0.55), "VGG16": (32, 0.3), "NASNetMobile": (32, 0.4),
    "Xception": (71, 0.35), "ConvNeXtTiny": (32, 0.6),
}
# Whose QAT TFLite keeps some quantized kernels float, with a warning: ConvNeXt's pointwise Dense
# layers read rank-4 tensors, which TFLite runs as float matrix products.
SOME_KERNELS_FLOAT = {"ConvNeXtTiny"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_an_application_goes_through_every_stage(name, tmp_path):
    size, shrunk_ratio = APPLICATIONS[name]
    script = os.path.join(os.path.dirname(__file__), "application_stages.py")
    done = subprocess.run([sys.executable, script, name, str(size), str(tmp_path)], capture_output=True,
                          text=True, env=dict(os.environ, KERAS_BACKEND="tensorflow"), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ")[-1])
    print(name, "seconds per stage:", result["seconds"])  # shown with pytest -rA
    assert result["float.onnx"] <= 1e-3 and result["float.tflite"] <= 1e-3
    qat = result["qat"]
    assert qat["clones"] <= 2  # one copy, one transform: the cost grows with the model, once
    assert qat["precision"] == "int8" and qat["int8_kernels"] > 0, qat
    if name in SOME_KERNELS_FLOAT:
        assert qat["int8_kernels"] < qat["quantized_kernels"] and qat["kept_float_warning"], qat
    else:
        assert qat["int8_kernels"] == qat["quantized_kernels"] and not qat["kept_float_warning"], qat
    assert result["shrunk_params"] <= shrunk_ratio * result["params"]
    assert result["sparsity"] == pytest.approx(0.7, abs=0.01) and result["loss_finite"]
    assert result["warned_empty"] == result["empty"]  # every layer global pruning empties is named
