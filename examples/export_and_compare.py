"""Export to ONNX and run it in plain ONNX Runtime, as tf2onnx's Keras example does, then
compare every format against the Keras model."""

import os
import tempfile

import keras
import numpy as np
import onnxruntime

import keras_compress as kc


def main():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, _) = kc.datasets.digits()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    expected = model.predict(x_test, verbose=0)

    folder = tempfile.mkdtemp()
    onnx_file = kc.export(model, os.path.join(folder, "model.onnx"), sample_data=x_test[:64])
    session = onnxruntime.InferenceSession(onnx_file.path, providers=["CPUExecutionProvider"])
    (plain,) = session.run(None, {"image": x_test})
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-5)  # ONNX Runtime, no keras_compress
    for name in ("model.tflite", "saved_model", "model.keras"):
        artifact = kc.export(model, os.path.join(folder, name), sample_data=x_test[:64])
        difference = np.abs(artifact.load().predict(x_test) - expected).max()
        print(f"{artifact.format:12} max |diff| {difference:.2e} ({artifact.size_bytes} bytes)")
        assert difference < 1e-4


if __name__ == "__main__":
    main()
