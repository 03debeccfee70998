"""One process of a distributed search (chief or worker, from keras-tuner's environment
variables); the chief prints the trials it collected as JSON."""

import json
import sys

import keras_compress as kc


def main(model_path, directory):
    (x, y), (x_test, y_test) = kc.datasets.digits()
    result = kc.tuning.search(kc.load_model(model_path), (x[:400], y[:400]), (x_test, y_test), max_trials=2,
                              tuner="random", epochs=1, directory=directory, project_name="distributed",
                              space={"final_sparsity": [0.5, 0.7], "qat": [False]}, max_accuracy_drop=0.5,
                              verbose=0)
    if result is not None:
        print("RESULT " + json.dumps([row["trial"] for row in result.trials]))


if __name__ == "__main__":
    main(*sys.argv[1:3])
