"""keras-hub models (the `hub` extra: `pip install keras-compress[hub]`) through pruning inside
their layers, attention heads removed, `strip`, verified ONNX and TFLite export, and per-token
distillation of a decoder,
in a process of their own (`hub_stages.py`)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "hub_stages.py")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                    reason="needs keras-hub: pip install keras-compress[hub] (`make test` installs it)")
def test_bert_and_gpt2_prune_inside_their_layers_lose_heads_quantize_export_and_distill(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=1200, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ")[-1])
    # BERT: token and segment embeddings, 2 x (4 attention projections + 2 feed-forward), the pooler,
    # and the classifier head; GPT-2: the token embedding, 2 x 6, and the next-token head.
    assert result["bert"]["masked"] == 16 and result["gpt2"]["masked"] == 14
    for name, dense in (("bert", "BertBackbone: 512"), ("gpt2", "GPT2Backbone: 384")):
        row = result[name]
        # Only keras-hub's own PositionEmbedding stays dense (16 or 12 positions x 32), and is named.
        assert len(row["left_dense"]) == 1 and dense in row["left_dense"][0]
        assert row["sparsity"] == pytest.approx(0.49, abs=0.01)
        assert row[".onnx"] < 1e-4 and row[".tflite"] < 1e-4
        heads = row["heads"]  # half the heads of each attention layer removed by shrink
        assert heads["heads"][1] == [h // 2 for h in heads["heads"][0]] and len(heads["heads"][0]) == 2
        assert heads["parameters"][1] < heads["parameters"][0] and heads["unique_paths"]
        assert heads["reloaded"] < 1e-5 and heads["heads.onnx"] < 1e-4 and heads["heads.tflite"] < 1e-4
    # Quantization-aware inside the backbones' encoders: BERT's 2 x 6 kernels, pooler and classifier;
    # GPT-2's 2 x 6 and the next-token head. Named as float: softmax, layer normalizations, embeddings.
    bert, gpt2 = result["bert"]["qat"], result["gpt2"]["qat"]
    assert bert["kernels"] == 14 and gpt2["kernels"] == 13
    for qat in (bert, gpt2):
        assert qat["unique_paths"] and qat["reloaded"] < 1e-6
        assert "transformer_layer_1/" in qat["left_float"][0] and "/softm" in qat["left_float"][0]
        for suffix in (".onnx", ".tflite"):  # within 5% of the largest output (probabilities or logits)
            assert qat["qat" + suffix]["max_abs_diff"] < 0.05 * qat["largest_output"]
    # ONNX: BERT's 12 of 14 kernels behind DequantizeLinear (with a sequence length unknown, tf2onnx
    # reaches two attention output kernels through a Reshape it does not fold: they stay float).
    assert bert["qat.onnx"]["int8_tensors"] == 12 and gpt2["qat.onnx"]["int8_tensors"] == 13
    # TFLite: every kernel int8 (and the embeddings, which the converter quantizes itself).
    assert bert["qat.tflite"]["int8_parameters"] >= 2 * (4 * 32 * 32 + 2 * 32 * 64) + 32 * 32 + 32 * 2
    assert gpt2["qat.tflite"]["int8_parameters"] >= 2 * (4 * 32 * 32 + 2 * 32 * 64) + 32 * 64
    encoder = result["encoder"]  # keras-hub's TransformerEncoder as a layer of one's own model
    assert encoder["heads"] == [[4], [2]] and encoder["reloaded"] < 1e-5 and encoder["heads.onnx"] < 1e-4
    assert encoder["unique_paths"]
    before, after = result["gpt2"]["distillation_loss"]
    assert after < 0.2 * before
