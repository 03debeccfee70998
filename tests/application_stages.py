"""One `keras.applications` architecture (`weights=None`) through every stage, in a process of
its own: `python tests/application_stages.py FLAVOUR NAME SIZE FOLDER` (FLAVOUR: keras3 or
tf_keras) prints one line, `RESULT {...}`, with what each stage gave. `test_applications.py`
runs it and checks the result."""

import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _compile(keras, model):
    # Eagerly: tracing the training step of a model of hundreds of layers takes a minute or two
    # for the two steps each fit here runs (three times the whole run, for NASNetMobile). The
    # exports trace the inference graph of each model; the compiled training step of each layer
    # kind is tested on small models.
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    return model


def _fit_pruned(keras, pruned, x, y):
    import keras_compress as kc

    callbacks = [kc.pruning.PruningCallback()]
    history = _compile(keras, pruned).fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=callbacks)
    return history.history["loss"][-1]


def _named_layers(message):
    """The layer names in "Global pruning removes every weight of layer(s) a, b (the ..."."""
    return message.split("layer(s) ", 1)[1].split(" (the smallest", 1)[0].split(", ")


def _keras(flavour):
    if flavour == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def run(flavour, name, size, folder):
    keras = _keras(flavour)

    import keras_compress as kc
    from keras_compress.pruning.report import kernels
    from keras_compress.quantization.qat import quantized_weights, weight_quantized_layers

    seconds, last = {}, [time.perf_counter()]

    def lap(stage):  # the seconds each stage took, in the result
        now = time.perf_counter()
        seconds[stage], last[0] = round(now - last[0], 1), now

    options = {"alpha": 0.35} if name == "MobileNetV2" else {}
    keras.utils.set_random_seed(0)
    model = _compile(keras, getattr(keras.applications, name)(
        input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None, **options))
    rng = np.random.default_rng(0)
    x = rng.random((16, size, size, 3), dtype="float32")
    y = rng.integers(0, 10, 16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # BatchNormalization statistics move
    result = {"params": model.count_params(), "seconds": seconds}
    lap("build and fit")
    for suffix in (".onnx", ".tflite"):
        artifact = kc.export(model, os.path.join(folder, f"float{suffix}"), sample_data=x[:4])
        result[f"float{suffix}"] = max(row["max_abs_diff"] for row in artifact.parity.values())
        lap(f"export {suffix[1:]}")

    clones = []
    clone = keras.models.clone_model
    keras.models.clone_model = lambda *a, **k: (clones.append(1), clone(*a, **k))[1]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            qat = _compile(keras, kc.quantization.quantize_aware(model))
    finally:
        keras.models.clone_model = clone
    qat.fit(x, y, epochs=1, batch_size=8, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifact = kc.export(qat, os.path.join(folder, "qat.tflite"), sample_data=x[:8], compare_speed=False)
    lap("qat")
    nested = sum(isinstance(layer, keras.Model) for layer in model.layers)  # each quantized as a graph too
    result["qat"] = {"clones": len(clones), "nested_models": nested, "precision": artifact.precision,
                     "int8_kernels": artifact.settings["int8_weights"]["tensors"],
                     "quantized_kernels": sum(len(quantized_weights(layer))
                                              for layer in weight_quantized_layers(qat)),
                     "kept_float_warning": any("kept" in str(w.message) for w in caught)}

    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    _fit_pruned(keras, pruned, x, y)
    small = kc.pruning.shrink(kc.pruning.strip(pruned))  # checks its outputs against the stripped model
    result["shrunk_params"] = small.count_params()
    lap("filter pruning and shrink")

    schedule = kc.pruning.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=1)
    # Untrained, DenseNet121's stem holds the smallest weights: global pruning would remove it
    # whole (and says so), and training then diverges to NaN. As the warning advises:
    stem = next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    exclude = [stem] if name == "DenseNet121" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = kc.pruning.prune(model, schedule, scope="global", exclude=exclude)
    result["depthwise_warning"] = any("does not prune depthwise" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = _fit_pruned(keras, pruned, x, y)
    # Untrained (Glorot-initialized), the deep layers of most of these models hold only small
    # weights, and one global threshold removes them whole: the warning must name each of them.
    result["warned_empty"] = sorted({name for w in caught if "removes every weight" in str(w.message)
                                     for name in _named_layers(str(w.message))})
    report = kc.pruning.sparsity(pruned)
    result["empty"] = sorted(row["layer"] for row in report.layers if row["sparsity"] == 1.0)
    # tfmot prunes no depthwise kernel and nothing inside a nested model (ConvNeXt's stem and
    # downsampling blocks); the warnings name those left dense. In tf_keras, the target holds for
    # the other kernels.
    pruned_kernels = [weight.numpy() for layer in kc.pruning.strip(pruned).layers for weight in kernels(layer)
                      if flavour == "keras3" or not (isinstance(layer, keras.Model)
                                                     or "depthwise_kernel" in weight.name)]
    zeros = sum(int(np.sum(weight == 0)) for weight in pruned_kernels)
    result["sparsity"] = zeros / sum(weight.size for weight in pruned_kernels)
    result["loss_finite"] = bool(np.isfinite(loss))
    lap("global pruning")
    return result


if __name__ == "__main__":
    flavour, name, size, folder = sys.argv[1:]
    print("RESULT " + json.dumps(run(flavour, name, int(size), folder)), flush=True)
