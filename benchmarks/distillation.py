"""Distillation benchmark: distilled vs from-scratch student accuracy, and epoch cost.

The teacher is `digits_cnn`, the student `digits_student(units=48)` (about 7x smaller). Both
students see the same data, epochs and optimizer, over 3 seeds, on the whole
training split and on a 300-sample subset. The row that matters for unlabeled data:
300 labeled samples plus the rest of the training split without labels, distilled
(first on the teacher's outputs for the unlabeled rows, then on the labeled ones),
against the student trained on the 300 alone. Epoch times are ratios against the
plain student's epoch, measured in the same run.

    .venv/bin/python benchmarks/distillation.py [--quick] [--alpha A] [--temperature T]
        [--teacher-epochs N] [--seeds N]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras
from common import EpochTimer, compile_classifier  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress.demo import digits_cnn, digits_student  # noqa: E402

UNITS = 48  # the student's hidden width: 7x fewer parameters than the teacher


def student(seed=1):
    return digits_student(seed=seed, units=UNITS)


def _distiller(teacher, seed, settings, cache=False):
    distiller = kc.Distiller(student=student(seed=seed), teacher=teacher, cache_teacher=cache)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"], **settings)
    return distiller


def accuracies(teacher, settings, data, test, epochs, seeds, unlabeled=None):
    """Mean and std accuracy of the student trained from scratch on `data` and distilled on it;
    with `unlabeled` inputs, the distiller first learns them from the teacher alone."""
    x, y = data
    results = {"scratch": [], "distilled": []}
    for seed in seeds:
        scratch = compile_classifier(student(seed=seed))
        scratch.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        results["scratch"].append(scratch.evaluate(*test, verbose=0)[1])
        keras.utils.set_random_seed(seed)
        distiller = _distiller(teacher, seed, settings)
        if unlabeled is not None:
            distiller.fit(unlabeled, epochs=max(1, epochs // 5), batch_size=32, verbose=0)
        distiller.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        results["distilled"].append(distiller.evaluate(*test, verbose=0, return_dict=True)["accuracy"])
    return {name: (float(np.mean(v)), float(np.std(v))) for name, v in results.items()}


def epoch_times(teacher, settings, x, y, epochs, rounds):
    """Median epoch seconds of the plain, distilled and cached-distilled students.

    The three alternate over `rounds` so that drift in the machine's speed hits all
    of them alike; each fit's first epoch (tracing) is dropped.
    """
    makers = {"plain": lambda: compile_classifier(student()),
              "distilled": lambda: _distiller(teacher, 1, settings),
              "cached": lambda: _distiller(teacher, 1, settings, cache=True)}
    times = {name: [] for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            timer = EpochTimer()
            make().fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[timer])
            times[name] += timer.times[1:]
    median = {name: float(np.median(values)) for name, values in times.items()}
    return {"plain_epoch_s": median["plain"], "distilled_epoch_s": median["distilled"],
            "cached_epoch_s": median["cached"], "distilled_overhead": median["distilled"] / median["plain"],
            "cached_overhead": median["cached"] / median["plain"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and seeds")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the hard loss (default 0.5)")
    parser.add_argument("--temperature", type=float, default=8.0, help="softening temperature (default 8)")
    parser.add_argument("--teacher-epochs", type=int, default=10, help="the teacher's epochs (default 10)")
    parser.add_argument("--seeds", type=int, default=3, help="students per setting (default 3)")
    args = parser.parse_args()
    if not 0.0 <= args.alpha <= 1.0 or args.temperature <= 0:
        parser.error(f"--alpha must be in [0, 1] and --temperature > 0, "
                     f"got {args.alpha} and {args.temperature}")
    if args.teacher_epochs < 1 or args.seeds < 1:
        parser.error(f"--teacher-epochs and --seeds must be >= 1, got {args.teacher_epochs} and {args.seeds}")
    settings = {"alpha": args.alpha, "temperature": args.temperature}
    (x, y), test = kc.datasets.digits()
    teacher_epochs = 4 if args.quick else args.teacher_epochs
    teacher = compile_classifier(digits_cnn())
    teacher.fit(x, y, epochs=teacher_epochs, batch_size=32, verbose=0)
    seeds = [0] if args.quick else list(range(args.seeds))
    subset = np.random.default_rng(0).permutation(len(x))[:300]
    print(f"alpha {args.alpha}, temperature {args.temperature}; teacher {teacher_epochs} epochs, "
          f"teacher accuracy {teacher.evaluate(*test, verbose=0)[1]:.4f}, "
          f"params {teacher.count_params():,}; student params {student().count_params():,}")
    for label, data, epochs in (("full training split", (x, y), 10),
                                ("300-sample subset", (x[subset], y[subset]), 100)):
        if args.quick:
            epochs //= 4
        results = accuracies(teacher, settings, data, test, epochs, seeds)
        print(f"\n## {label}: {epochs} epochs, seeds {seeds}")
        for name, (mean, std) in results.items():
            print(f"{name:<12}{mean:.4f} ± {std:.4f}")
        print(f"gain        {results['distilled'][0] - results['scratch'][0]:+.4f}")
    rest = np.setdiff1d(np.arange(len(x)), subset)
    epochs = 25 if args.quick else 100
    results = accuracies(teacher, settings, (x[subset], y[subset]), test, epochs, seeds, unlabeled=x[rest])
    print(f"\n## 300 labeled + {len(rest):,} unlabeled samples: {epochs} labeled epochs, seeds {seeds}")
    print(f"{'scratch, labeled only':<24}{results['scratch'][0]:.4f} ± {results['scratch'][1]:.4f}")
    print(f"{'distilled, + unlabeled':<24}{results['distilled'][0]:.4f} ± {results['distilled'][1]:.4f}")
    print(f"{'gain':<24}{results['distilled'][0] - results['scratch'][0]:+.4f}")
    print("\n## Epoch time (full split, batch 32)")
    for key, value in epoch_times(teacher, settings, x, y, epochs=4 if args.quick else 6,
                                  rounds=1 if args.quick else 3).items():
        print(f"{key:<20}{value:8.3f}")


if __name__ == "__main__":
    main()
