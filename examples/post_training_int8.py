"""Post-training full-integer quantization, as the TFLite "Post-training integer
quantization" tutorial teaches it: a `representative_dataset` generator for calibration
and uint8 inputs and outputs, for camera and microcontroller pipelines."""

import os
import tempfile

import keras
import numpy as np

import keras_compress as kc


def main():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = kc.datasets.digits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(12, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
    _, baseline = model.evaluate(x_test, y_test, verbose=0)

    def representative_data_gen():  # the tutorial's generator, unchanged: one row per step
        for row in x_train[:100]:
            yield [row[None].astype(np.float32)]

    folder = tempfile.mkdtemp()
    float_file = kc.export(model, os.path.join(folder, "float.tflite"))
    int8_file = kc.export(model, os.path.join(folder, "int8.tflite"), quantize="static",
                          calibration_data=representative_data_gen, io="uint8")
    runner = int8_file.load()
    accuracy = np.mean(runner.predict(x_test).argmax(-1) == y_test)  # the runner quantizes floats to uint8
    print(f"float {baseline:.3f} ({float_file.size_bytes} bytes), int8 {accuracy:.3f} "
          f"({int8_file.size_bytes} bytes), inputs {runner.inputs[0].dtype}")
    assert int8_file.precision == "int8" and accuracy > baseline - 0.02
    assert int8_file.size_bytes < 0.5 * float_file.size_bytes


if __name__ == "__main__":
    main()
