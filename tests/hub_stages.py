"""keras-hub models (small configs, random weights: nothing is downloaded) through the stages
keras_compress gives them, in a process of its own; `test_keras_hub.py` runs it and reads the
JSON result it prints last.

    python tests/hub_stages.py FOLDER
"""

import json
import os
import sys
import warnings

import keras
import keras_hub
import numpy as np

import keras_compress as kc
from keras_compress.pruning.keras3_structures import find
from keras_compress.pruning.prune import pruning_wrappers
from keras_compress.quantization.qat import quantized_kernel_count


def _bert_inputs(rng, rows):
    ids = rng.integers(1, 100, (rows, 16)).astype("int32")
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}, \
        (ids[:, 0] > 50).astype("int32")


def _pruned_and_exported(model, x, y, folder, name):
    """50% of the weights pruned inside the model's layers, stripped, exported: what it reached."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    stripped = kc.pruning.strip(pruned)
    result = {"masked": len(pruning_wrappers(pruned)),
              "left_dense": [str(w.message) for w in caught if "stay dense" in str(w.message)],
              "sparsity": kc.pruning.sparsity(stripped).total_sparsity}
    for suffix in (".onnx", ".tflite"):
        artifact = kc.export(stripped, os.path.join(folder, name + suffix), sample_data=x)
        result[suffix] = max(row["max_abs_diff"] for row in artifact.parity.values())
    return result


def _heads_removed(model, x, y, folder, name):
    """Half the attention heads of every layer pruned, removed by shrink, exported and reloaded."""
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5), granularity="filter")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[kc.pruning.PruningCallback()])
    stripped = kc.pruning.strip(pruned)
    small = kc.pruning.shrink(stripped)
    path = os.path.join(folder, name + "_heads.keras")
    small.save(path)
    loaded = kc.load_model(path, safe_mode=False)  # the file names keras-hub's classes
    result = {"heads": [[units.size for units in find(m) if units.kind == "heads"] for m in (model, small)],
              "parameters": [model.count_params(), small.count_params()],
              "unique_paths": all(len({w.path for w in m.weights}) == len(m.weights)
                                  for m in (small, loaded)),
              "reloaded": float(np.max(np.abs(loaded.predict(x, verbose=0)
                                              - stripped.predict(x, verbose=0))))}
    for suffix in (".onnx", ".tflite"):
        artifact = kc.export(small, os.path.join(folder, name + "_heads" + suffix), sample_data=x)
        result["heads" + suffix] = max(row["max_abs_diff"] for row in artifact.parity.values())
    return result


def _quantized_and_exported(model, x, y, folder, name):
    """Quantization-aware training inside the model's layers, saved, reloaded and exported to int8
    files: what it reached, and how far the files are from it (measured here: an untrained
    classifier's near ties make top-1 agreement meaningless)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qat = kc.quantization.quantize_aware(model)
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = os.path.join(folder, name + "_qat.keras")
    qat.save(path)
    loaded = kc.load_model(path, safe_mode=False)
    expected = qat.predict(x, verbose=0)
    result = {"kernels": quantized_kernel_count(qat),
              "left_float": [str(w.message) for w in caught if "stay float" in str(w.message)],
              "unique_paths": len({w.path for w in qat.weights}) == len(qat.weights),
              "reloaded": float(np.max(np.abs(loaded.predict(x, verbose=0) - expected))),
              "largest_output": float(np.max(np.abs(expected)))}
    for suffix in (".onnx", ".tflite"):
        artifact = kc.export(qat, os.path.join(folder, name + "_qat" + suffix), sample_data=x, verify=False)
        difference = np.max(np.abs(artifact.load().predict(x) - expected))
        result["qat" + suffix] = {"int8_tensors": artifact.settings["int8_weights"]["tensors"],
                                  "int8_parameters": artifact.settings["int8_weights"]["parameters"],
                                  "max_abs_diff": float(difference)}
    return result


def bert(folder):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2, num_heads=4, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=16)
    classifier = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None,
                                                     activation="softmax")
    x, y = _bert_inputs(rng, 64)
    return {**_pruned_and_exported(classifier, x, y, folder, "bert"),
            "heads": _heads_removed(classifier, x, y, folder, "bert"),
            "qat": _quantized_and_exported(classifier, x, y, folder, "bert")}


def encoder(folder):
    """keras-hub's TransformerEncoder used as a layer of one's own model: it makes its attention
    when built, so the copy shrink makes is built before its smaller attention goes in."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 16))
    hidden = keras_hub.layers.TransformerEncoder(intermediate_dim=32, num_heads=4)(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    x = np.random.default_rng(0).standard_normal((64, 8, 16)).astype("float32")
    return _heads_removed(model, x, (x[:, 0, 0] > 0).astype("int32"), folder, "encoder")


def gpt2(folder):
    """A decoder with a next-token head: pruned inside, and distilled per token into a narrower one,
    padding left out. (`GPT2CausalLM` itself cannot be copied: Keras' `clone_model` gives its tied
    embedding one variable more than the model has.)"""
    rng = np.random.default_rng(0)

    def model(hidden, seed):
        keras.utils.set_random_seed(seed)
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=64, num_layers=2, num_heads=2,
                                                 hidden_dim=hidden, intermediate_dim=2 * hidden,
                                                 max_sequence_length=12)
        inputs = {name: keras.Input((12,), dtype="int32", name=name)
                  for name in ("token_ids", "padding_mask")}
        return keras.Model(inputs, keras.layers.Dense(64, name="next_token")(backbone(inputs)))

    ids = rng.integers(1, 64, (64, 12)).astype("int32")
    mask = (np.arange(12)[None, :] < rng.integers(6, 13, 64)[:, None]).astype("int32")
    x = {"token_ids": ids * mask, "padding_mask": mask}
    y = np.roll(ids, -1, axis=1) * mask  # the next token
    teacher = model(32, 0)
    result = _pruned_and_exported(teacher, x, y, folder, "gpt2")
    result["heads"] = _heads_removed(teacher, x, y, folder, "gpt2")
    result["qat"] = _quantized_and_exported(teacher, x, y, folder, "gpt2")
    distiller = kc.Distiller(student=model(16, 1), teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), alpha=0.0)
    before = distiller.evaluate(x, y, sample_weight=mask, verbose=0, return_dict=True)["loss"]
    distiller.fit(x, y, sample_weight=mask, epochs=20, batch_size=16, verbose=0)
    result["distillation_loss"] = (before, distiller.evaluate(x, y, sample_weight=mask, verbose=0,
                                                              return_dict=True)["loss"])
    return result


if __name__ == "__main__":
    out = sys.argv[1]
    print("RESULT " + json.dumps({"bert": bert(out), "gpt2": gpt2(out), "encoder": encoder(out)}))
