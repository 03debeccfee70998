import os
import warnings

import numpy as np
import pytest

import keras_compress as kc
from conftest import compile_classifier, fit_pruned
from models import quantizable_cnn, reloaded, small_cnn
from keras_compress.demo import digits_student

import tf_keras as keras
quantization = kc.quantization


def fake_quantized_zeros(model):
    """Fraction of zeros in every quantized kernel, as the model computes with them."""
    return {layer.name: float(np.mean(value == 0)) for layer in model.layers
            for variable, value, _ in quantization.quantized_weights(layer) if "kernel" in variable.name}


def test_quantize_aware_copies_the_model_and_quantizes_every_layer():
    model = quantizable_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer is quantizable: no warning
        qat = quantization.quantize_aware(model)
    assert quantization.is_quantize_aware(qat) and not quantization.is_quantize_aware(model)
    assert {layer.name for layer in qat.layers} >= {"quant_conv_a", "quant_bn_a", "quant_logits"}
    (variable, value, scale), = quantization.quantized_weights(qat.get_layer("quant_conv_a"))
    np.testing.assert_array_equal(variable.numpy(), model.get_layer("conv_a").kernel.numpy())
    assert variable is not model.get_layer("conv_a").kernel
    levels = value / scale  # per output channel, on the symmetric int8 grid
    assert scale.shape == (16,) and np.abs(levels - np.round(levels)).max() < 1e-3
    assert np.abs(levels).max() <= 127


def test_layers_tfmot_cannot_quantize_stay_float_with_one_warning():
    model = small_cnn()  # BatchNormalization after a ReLU: no tfmot pattern for it
    with pytest.warns(UserWarning, match="stay float.*bn_a") as record:
        qat = quantization.quantize_aware(model)
    assert len([w for w in record if "stay float" in str(w.message)]) == 1
    assert isinstance(qat.get_layer("bn_a"), keras.layers.BatchNormalization)
    with pytest.raises(kc.KerasCompressError, match="bn_a.*strict=False"):
        quantization.quantize_aware(model, strict=True)


@pytest.mark.parametrize("make, message", [
    (lambda m: kc.pruning.prune(m, kc.pruning.ConstantSparsity(0.5)), "pruning wrappers"),
    (lambda m: quantization.quantize_aware(m), "already quantization-aware"),
])
def test_models_that_cannot_be_made_quantization_aware_are_refused(make, message):
    model = make(quantizable_cnn())
    with pytest.raises(kc.KerasCompressError, match=message):
        quantization.quantize_aware(model)


def test_bad_preserve_sparsity_is_refused():
    with pytest.raises(ValueError, match="preserve_sparsity must be"):
        quantization.quantize_aware(quantizable_cnn(), preserve_sparsity="yes")


@pytest.fixture(scope="module")
def pruned_qat(digits):
    """A 60%-sparse CNN after two QAT epochs, and the sparsity it had before QAT."""
    pruned = kc.pruning.prune(quantizable_cnn(), kc.pruning.ConstantSparsity(0.6, begin_step=0))
    fit_pruned(pruned, digits)
    stripped = kc.pruning.strip(pruned)
    before = {row["layer"]: row["sparsity"] for row in kc.pruning.sparsity(stripped).layers}
    qat = compile_classifier(quantization.quantize_aware(stripped))
    (x, y), _ = digits
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return qat, before


def test_quantization_aware_training_keeps_a_pruned_model_sparse(pruned_qat):
    qat, before = pruned_qat
    after = fake_quantized_zeros(qat)
    assert after and all(after[f"quant_{name}"] >= before[name] - 0.01
                         for name in ("conv_a", "conv_b", "dense_a", "logits"))


def test_preserve_sparsity_false_lets_zeros_move(digits):
    pruned = kc.pruning.prune(quantizable_cnn(), kc.pruning.ConstantSparsity(0.6, begin_step=0))
    fit_pruned(pruned, digits)
    qat = compile_classifier(quantization.quantize_aware(kc.pruning.strip(pruned), preserve_sparsity=False))
    (x, y), _ = digits
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(qat)["quant_dense_a"] < 0.3


@pytest.mark.parametrize("which", ["qat", "pruned qat"])
@pytest.mark.parametrize("file_name", ["model.keras", "saved_model"])
def test_qat_models_save_and_load_without_tfmot_scopes(float_and_qat, pruned_qat, digits, tmp_path, file_name,
                                                       which):
    qat = float_and_qat[1] if which == "qat" else pruned_qat[0]
    path = str(tmp_path / file_name)
    qat.save(path)
    loaded = kc.load_model(path)
    x = digits[1][0][:32]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-5)
    assert quantization.is_quantize_aware(loaded)


def test_a_reloaded_pruned_qat_model_keeps_its_zeros_while_training(pruned_qat, digits, tmp_path):
    qat, before = pruned_qat
    loaded = compile_classifier(reloaded(qat, tmp_path))
    (x, y), _ = digits
    loaded.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(loaded)["quant_dense_a"] >= before["dense_a"] - 0.01


def test_a_distilled_student_can_be_quantization_aware(float_and_qat, digits, tmp_path):
    teacher, _ = float_and_qat
    student = quantization.quantize_aware(digits_student())
    distiller = kc.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                      student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      temperature=4.0, alpha=0.5)
    (x, y), (x_test, y_test) = digits
    distiller.fit(x, y, epochs=2, batch_size=64, verbose=0)
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    loaded = kc.load_model(path)
    assert quantization.is_quantize_aware(loaded)
    np.testing.assert_allclose(loaded.predict(x_test[:16], verbose=0),
                               distiller.student.predict(x_test[:16], verbose=0), atol=1e-5)
    assert os.path.getsize(path) > 0


def _count_clones(monkeypatch):
    calls = []
    clone = keras.models.clone_model
    monkeypatch.setattr(keras.models, "clone_model", lambda *a, **k: (calls.append(1), clone(*a, **k))[1])
    return calls


def test_quantizability_comes_from_the_graph_not_one_clone_per_refused_layer(monkeypatch):
    import tf_keras as keras
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i in range(6):  # BatchNormalization after an activation: tfmot refuses all six
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    calls = _count_clones(monkeypatch)
    with pytest.warns(UserWarning, match="bn_0, bn_1, bn_2, bn_3, bn_4, bn_5"):
        kc.quantization.quantize_aware(model)
    assert len(calls) <= 4  # two are tfmot's own (its quantize_apply clones twice)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["DenseNet121", "NASNetMobile"])
def test_large_applications_quantize_in_a_few_clones(monkeypatch, name):
    model = getattr(keras.applications, name)(weights=None, input_shape=(96, 96, 3), classes=10)
    calls = _count_clones(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = kc.quantization.quantize_aware(model)
    assert kc.quantization.is_quantize_aware(qat) and len(calls) <= 4


def test_a_frozen_sparse_model_gets_the_sparsity_preserving_scheme(float_and_qat, digits):
    model = keras.models.clone_model(float_and_qat[0])
    model.set_weights([np.where(np.abs(w) < np.quantile(np.abs(w), 0.5), 0, w) if w.ndim >= 2 else w
                       for w in float_and_qat[0].get_weights()])
    model.trainable = False  # frozen: its kernels are not trainable weights
    qat = quantization.quantize_aware(model)
    qat.trainable = True
    (x, y), _ = digits
    compile_classifier(qat).fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert fake_quantized_zeros(qat)["quant_dense_a"] >= 0.49  # the zeros did not move
