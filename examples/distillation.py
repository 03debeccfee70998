"""Knowledge distillation, as the keras.io "Knowledge Distillation" example teaches it:
a small student learns from a larger teacher's softened outputs and the true labels,
against the same student trained from scratch."""

import keras
import numpy as np

import keras_compress as kc

L = keras.layers


def cnn(width, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(width, 3, activation="relu"), L.Flatten(),
                             L.Dense(width * 2, activation="relu"), L.Dense(10)])


def main():
    (x_train, y_train), (x_test, y_test) = kc.datasets.digits()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = cnn(32, seed=0)
    teacher.compile("adam", loss, metrics=["accuracy"])
    teacher.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)

    # keras.io's Distiller call, with the models by keyword.
    distiller = kc.Distiller(student=cnn(8, seed=1), teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(), metrics=[keras.metrics.SparseCategoricalAccuracy()],
                      student_loss_fn=loss, alpha=0.1, temperature=10)
    distiller.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    scores = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)

    scratch = cnn(8, seed=1)
    scratch.compile("adam", loss, metrics=[keras.metrics.SparseCategoricalAccuracy()])
    scratch.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    _, scratch_accuracy = scratch.evaluate(x_test, y_test, verbose=0)
    teacher_accuracy = np.mean(teacher.predict(x_test, verbose=0).argmax(-1) == y_test)
    print(f"teacher {teacher_accuracy:.3f} ({teacher.count_params():,} parameters); student distilled "
          f"{scores['sparse_categorical_accuracy']:.3f}, from scratch {scratch_accuracy:.3f} "
          f"({scratch.count_params():,} parameters); losses {scores}")
    assert teacher.count_params() > 5 * scratch.count_params()
    assert scores["sparse_categorical_accuracy"] > 0.85


if __name__ == "__main__":
    main()
