"""Five `keras.applications` architectures in Keras 3 (TensorFlow backend) and three in tf_keras
(`weights=None`, their smallest input, 10 classes), through every stage a user takes them: ONNX
and TFLite export with parity, quantization-aware training exported to int8 TFLite, 50% filter
pruning + `strip` + `shrink`, and 70% global weight pruning in `fit`.

Each runs in a process of its own (`application_stages.py`): TensorFlow keeps what it traced
for the whole process, and twenty large models in one would need far more memory than any one
of them. Most of a run is single-threaded Python (tracing, conversion), so the selected runs go
two at a time, started when the first of these tests asks for its result."""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

# name -> (input size, largest parameter ratio after 50% filter pruning + shrink)
APPLICATIONS = {
    "MobileNetV2": (32, 0.35), "MobileNet": (32, 0.3), "MobileNetV3Small": (32, 0.3), "ResNet50": (32, 0.3),
    "DenseNet121": (32, 0.3), "EfficientNetB0": (32, 0.3), "VGG16": (32, 0.3), "NASNetMobile": (32, 0.4),
    "Xception": (71, 0.35), "ConvNeXtTiny": (32, 0.6),
}
# QAT kernels the TFLite converter keeps float (and the export warns of): tf_keras ConvNeXt's grouped
# convolutions read residual sums written as TF ops (`x + y`), whose outputs tfmot cannot quantize.
KEPT_FLOAT = {("tf_keras", "ConvNeXtTiny"): 18}
# tf_keras architectures with depthwise kernels, which tfmot does not prune (and tf_keras pruning
# says so); ConvNeXt's depthwise convolutions are grouped Conv2D layers there, which it prunes.
DEPTHWISE = {"MobileNetV2", "MobileNet", "MobileNetV3Small", "EfficientNetB0", "NASNetMobile", "Xception"}
# Left out to keep `make test` within its time (each passes every stage run by hand:
# `python tests/application_stages.py FLAVOUR NAME 32 FOLDER`): tf_keras NASNetMobile and
# DenseNet121 took six and four minutes alone (tfmot's QAT over their 700-odd and 400-odd layers),
# Keras 3 NASNetMobile three (its QAT rebuild is tested in tests/quantization/test_qat.py); VGG16
# and MobileNet are plain chains, DenseNet121's concatenations and Xception's separable
# convolutions are tested on small models (tests/pruning, tests/quantization), and tf_keras keeps
# the three architectures where tfmot needs our changes (squeeze-excite gates, hard-swish,
# ConvNeXt's grouped convolutions reading TF ops).
LEFT_OUT = (("tf_keras", "NASNetMobile"), ("tf_keras", "DenseNet121"),
            *(("keras3", name) for name in ("NASNetMobile", "VGG16", "MobileNet", "DenseNet121", "Xception")),
            *(("tf_keras", name) for name in ("MobileNetV2", "MobileNet", "ResNet50",
                                                                   "VGG16", "Xception")))
RUNS = [(flavour, name) for flavour in ("keras3", "tf_keras") for name in APPLICATIONS
        if (flavour, name) not in LEFT_OUT]
SCRIPT = os.path.join(os.path.dirname(__file__), "application_stages.py")


def _run_stages(flavour, name, folder):
    size = APPLICATIONS[name][0]
    done = subprocess.run([sys.executable, SCRIPT, flavour, name, str(size), str(folder)],
                          capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="tensorflow"),
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ")[-1])


@pytest.fixture(scope="module")
def stage_runs(request, tmp_path_factory):
    """`(flavour, name) -> future result` for every run the session selected, two at a time."""
    selected = [item.callspec.params for item in request.session.items  # doctests among them
                if getattr(item, "originalname", None) == "test_an_application_goes_through_every_stage"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        yield {(params["flavour"], params["name"]): pool.submit(
            _run_stages, params["flavour"], params["name"],
            tmp_path_factory.mktemp(f"{params['flavour']}_{params['name']}")) for params in selected}


@pytest.mark.slow
@pytest.mark.parametrize("flavour, name", RUNS)
def test_an_application_goes_through_every_stage(flavour, name, stage_runs):
    result = stage_runs[flavour, name].result()
    print(flavour, name, "seconds per stage:", result["seconds"])  # shown with pytest -rA
    assert result["float.onnx"] <= 1e-3 and result["float.tflite"] <= 1e-3
    qat = result["qat"]
    # Keras 3: one copy, one transform (and the same for each nested model, ConvNeXt's stem and
    # downsampling Sequentials); tf_keras: one to wrap the layers (tfmot's layout transform
    # rebuilds the model once more, from its config).
    limit = 2 * (1 + qat["nested_models"]) if flavour == "keras3" else 1
    assert qat["clones"] <= limit  # the cost grows with the model, once
    assert qat["precision"] == "int8" and qat["int8_kernels"] > 0, qat
    kept_float = KEPT_FLOAT.get((flavour, name), 0)
    assert qat["int8_kernels"] == qat["quantized_kernels"] - kept_float, qat
    assert qat["kept_float_warning"] == bool(kept_float), qat
    assert result["shrunk_params"] <= APPLICATIONS[name][1] * result["params"]
    assert result["sparsity"] == pytest.approx(0.7, abs=0.01) and result["loss_finite"]
    assert result["depthwise_warning"] == (flavour == "tf_keras" and name in DEPTHWISE)
    assert result["warned_empty"] == result["empty"]  # every layer global pruning empties is named
