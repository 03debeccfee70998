"""Quantization-aware training, as tfmot's "Quantization aware training in Keras" guide
teaches it, then a full-integer TFLite model that keeps the QAT model's accuracy."""

import os
import tempfile

import numpy as np
import tf_keras as keras

import keras_compress as kc


def main():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = kc.datasets.digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0)
    _, baseline = model.evaluate(x_test, y_test, verbose=0)

    q_aware = kc.quantization.quantize_aware(model)
    q_aware.compile("adam", loss, metrics=["accuracy"])
    q_aware.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0, validation_split=0.1)
    _, qat_accuracy = q_aware.evaluate(x_test, y_test, verbose=0)

    artifact = kc.export(q_aware, os.path.join(tempfile.mkdtemp(), "qat.tflite"))
    tflite_accuracy = np.mean(artifact.load().predict(x_test).argmax(-1) == y_test)
    print(f"float {baseline:.3f}, QAT {qat_accuracy:.3f}, int8 TFLite {tflite_accuracy:.3f} "
          f"({artifact.settings['int8_weights']['tensors']} int8 weight tensors, "
          f"{artifact.size_bytes} bytes)")
    assert artifact.precision == "int8" and abs(tflite_accuracy - qat_accuracy) < 0.01
    assert qat_accuracy > baseline - 0.03


if __name__ == "__main__":
    main()
