"""`kc.analysis.sensitivity`: one layer (or channel group) compressed at a time, scored on held-out data."""

import numpy as np
import pytest

import keras_compress as kc
from conftest import compile_classifier
from models import residual_net


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_a_filter_row_scores_the_model_with_that_layers_weakest_filters_zeroed(trained_cnn, digits):
    """The cell equals the accuracy of a copy with the half of conv_b's filters of least L2 norm zeroed
    (kernel and bias), and the scan leaves the model as it was."""
    _, (x, y) = digits
    before = [w.copy() for w in trained_cnn.get_weights()]
    table = kc.analysis.sensitivity(trained_cnn, (x, y), ratios=(0.5,), verbose=0)
    assert [row["name"] for row in table.rows] == ["conv_a", "conv_b", "dense_a"]  # logits feed the output
    assert table.baseline == pytest.approx(_accuracy(trained_cnn, x, y))
    copy = kc.pruning.strip(trained_cnn)  # a copy
    kernel, bias = copy.get_layer("conv_b").get_weights()
    weakest = np.argsort(np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(0)), kind="stable")[:8]
    kernel[..., weakest], bias[weakest] = 0, 0
    copy.get_layer("conv_b").set_weights([kernel, bias])
    assert table.rows[1]["scores"][0.5] == pytest.approx(_accuracy(copy, x, y))
    assert table.drop("conv_b", 0.5) == pytest.approx(table.baseline - _accuracy(copy, x, y))
    for want, got in zip(before, trained_cnn.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_channels_an_add_ties_together_are_one_row(digits, keras_flavour):
    (x, y), (x_test, y_test) = digits
    model = compile_classifier(residual_net(keras=keras_flavour))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    table = kc.analysis.sensitivity(model, (x_test, y_test), ratios=(0.25, 0.75), verbose=0)
    names = [row["name"] for row in table.rows]
    assert "stem+project" in names and "expand" in names and "side" in names
    assert all(row["scores"][0.75] <= table.baseline + 0.02 for row in table.rows)


def test_weight_and_int8_scans_cover_every_kernel_and_every_scan_repeats_exactly(trained_cnn, digits):
    _, (x, y) = digits
    kernels = ["conv_a", "conv_b", "dense_a", "logits"]
    weights = kc.analysis.sensitivity(trained_cnn, (x, y), granularity="weight", ratios=(0.3, 0.9), verbose=0)
    assert [row["name"] for row in weights.rows] == kernels
    assert weights.to_dict() == kc.analysis.sensitivity(
        trained_cnn, (x, y), granularity="weight", ratios=(0.3, 0.9), verbose=0).to_dict()
    assert sum(row["scores"][0.9] for row in weights.rows) < sum(row["scores"][0.3] for row in weights.rows)
    assert weights.rows[0]["parameters"] == 3 * 3 * 1 * 8
    int8 = kc.analysis.sensitivity(trained_cnn, (x, y), granularity="int8", verbose=0)
    assert int8.columns == ("int8",) and [row["name"] for row in int8.rows] == kernels
    assert all(abs(int8.drop(name, "int8")) <= 0.02 for name in kernels)  # int8 weights cost little
    again = kc.analysis.sensitivity(trained_cnn, (x, y), granularity="int8", verbose=0)
    assert int8.to_dict() == again.to_dict()
    filters = kc.analysis.sensitivity(trained_cnn, (x, y), verbose=0)
    assert filters.to_dict() == kc.analysis.sensitivity(trained_cnn, (x, y), verbose=0).to_dict()


def test_a_metric_of_the_callers_and_exclude(trained_cnn, digits):
    _, (x, y) = digits

    def agreement(y_true, y_pred):
        return float(np.mean(np.argmax(y_pred, -1) == y_true))

    table = kc.analysis.sensitivity(trained_cnn, (x, y), granularity="weight", metric=agreement,
                                    exclude=["logits"], verbose=0)
    assert table.metric == "agreement" and "logits" not in [row["name"] for row in table.rows]


def test_the_table_reads_as_markdown_json_and_a_heat_map(trained_cnn, digits, tmp_path):
    import json

    _, (x, y) = digits
    table = kc.analysis.sensitivity(trained_cnn, (x[:64], y[:64]), verbose=0)
    markdown = table.to_markdown()
    assert markdown.splitlines()[0].startswith("| filter (accuracy ") and "| 25% | 50% | 75% |" in markdown
    assert "| conv_b | 1,152 |" in markdown
    json.dumps(table.to_dict())
    path = table.plot(str(tmp_path / "heat.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(granularity="channel"), ValueError, "granularity must be one of"),
    (dict(ratios=(0.5, 1.0)), ValueError, "ratios must be a non-empty sequence"),
    (dict(ratios=0.5), ValueError, "ratios must be a non-empty sequence"),
    (dict(metric="f1"), ValueError, 'metric must be "accuracy" or a function'),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(validation_data="x"), ValueError, r"validation_data must be \(x, y\)"),
    (dict(validation_data=(np.zeros((4, 8, 8, 1)), np.zeros(3))), ValueError, "same number of rows"),
    (dict(model="model.keras"), kc.UnsupportedModelError, "must be a Keras model"),
])
def test_bad_arguments_are_refused_before_any_work(trained_cnn, digits, kwargs, error, message):
    _, (x, y) = digits
    arguments = {"model": trained_cnn, "validation_data": (x, y), **kwargs}
    model, data = arguments.pop("model"), arguments.pop("validation_data")
    with pytest.raises(error, match=message):
        kc.analysis.sensitivity(model, data, verbose=0, **arguments)


def test_a_pruned_model_is_sent_to_strip(trained_cnn, digits):
    _, (x, y) = digits
    pruned = kc.pruning.prune(trained_cnn, kc.pruning.ConstantSparsity(0.5))
    with pytest.raises(kc.ModelStateError, match="strip"):
        kc.analysis.sensitivity(pruned, (x, y), verbose=0)
