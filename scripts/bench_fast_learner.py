#!/usr/bin/env python
"""Fast learner against the linear baseline's first prediction: fit/predict seconds, test NAUC and log loss.

For each dataset the train and test splits are read with the TensorFlow-free reader and converted to
uint8 at the planned input size the way the trainer does (probe -> plan -> ExampleConverter). Then the
fast learner (autoclint.early) is fitted on the training examples and scored on the test set, and the
linear baseline's first prediction (8×8 thumbnails, standardised, one pass of SGD logistic regression)
is computed on the same data. Converted arrays can be kept in `--array-cache` (outside the repository)
so that reruns skip decoding.

    python scripts/bench_fast_learner.py                       # the default datasets
    python scripts/bench_fast_learner.py mnist10k cifar10_15k --array-cache ~/.cache/autoclint/arrays
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.autodl import open_dataset  # noqa: E402
from autoclint.config import ModelConfig  # noqa: E402
from autoclint.data.convert import ExampleConverter  # noqa: E402
from autoclint.early import FastLearner, FastLearnerSettings  # noqa: E402
from autoclint.experiments.datasets import prepare_dataset  # noqa: E402
from autoclint.harness.baselines.linear.model import thumbnail  # noqa: E402
from autoclint.harness.scoring import load_solution  # noqa: E402
from autoclint.metrics import nauc  # noqa: E402
from autoclint.plan import make_plan  # noqa: E402
from autoclint.probe import probe_examples  # noqa: E402

DEFAULT_DATASETS = (
    "digits", "mnist10k", "cifar10_15k", "fer2013_15k", "breastmnist", "ucmerced_a", "miniciao", "Monkeys",
)


def converted_split(folder: Path, split: str, converter: ExampleConverter | None = None):
    """(uint8 examples, labels, converter) of one split, converted at the planned size of the train split."""
    dataset = open_dataset(folder / f"{folder.name}.data" / split, backend="python").get_dataset()
    if converter is None:
        config = ModelConfig()
        sample = list(itertools.islice(iter(dataset), config.probe_size))
        probe = probe_examples(sample)
        converter = ExampleConverter.from_plan(make_plan(probe, len(dataset), config), probe)
    examples, labels = [], []
    for example, label in dataset:
        examples.append(converter(example))
        labels.append(label)
    return np.stack(examples), np.stack(labels).astype(np.float32), converter


def load_arrays(name: str, array_cache: Path | None) -> dict[str, np.ndarray]:
    """Converted train/test arrays and the test solution of a dataset, from `array_cache` when there."""
    cached = array_cache / f"{name}.npz" if array_cache else None
    if cached is not None and cached.is_file():
        with np.load(cached) as data:
            return dict(data)
    folder = prepare_dataset(name)
    x_train, y_train, converter = converted_split(folder, "train")
    x_test, _, _ = converted_split(folder, "test", converter)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test,
              "y_test": load_solution(folder / f"{folder.name}.solution").astype(np.float32)}
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **arrays)
    return arrays


def log_loss(solution: np.ndarray, probabilities: np.ndarray, multilabel: bool) -> float:
    """Mean negative log-likelihood: categorical (multiclass) or per-column binary (multilabel)."""
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    if multilabel:
        return float(-np.mean(solution * np.log(p) + (1 - solution) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(p)), solution.argmax(axis=1)])))


def baseline_first_prediction(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                              multilabel: bool) -> np.ndarray:
    """The linear baseline's first prediction: standardised 8×8 thumbnails, one shuffled SGD pass."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    train = scaler.fit_transform(np.stack([thumbnail(x) for x in x_train]))
    test = scaler.transform(np.stack([thumbnail(x) for x in x_test]))
    order = np.random.default_rng(0).permutation(len(train))
    train, targets = train[order], (y_train[order] > 0.5)
    num_classes = y_train.shape[1]
    if multilabel:
        columns = []
        for k in range(num_classes):
            classifier = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=k)
            classifier.partial_fit(train, targets[:, k].astype(int), classes=[0, 1])
            columns.append(classifier.predict_proba(test)[:, 1])
        return np.stack(columns, axis=1)
    classifier = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    classifier.partial_fit(train, targets.argmax(axis=1), classes=np.arange(num_classes))
    probabilities = np.zeros((len(test), num_classes))
    probabilities[:, classifier.classes_] = classifier.predict_proba(test)
    return probabilities


def bench_one(name: str, arrays: dict[str, np.ndarray], settings: FastLearnerSettings,
              repeats: int = 1) -> dict[str, object]:
    """Fit and score the fast learner and the baseline's first pass on one dataset."""
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    x_test, y_test = arrays["x_test"], arrays["y_test"]
    multilabel = bool(((y_train > 0.5).sum(axis=1) != 1).any())
    fit_seconds = []
    for _ in range(max(1, repeats)):  # the CPU is shared: the fastest of a few fits is the least disturbed
        learner = FastLearner(settings, multilabel, y_train.shape[1]).fit(x_train, y_train)
        fit_seconds.append(learner.fit_seconds)
    started = time.perf_counter()
    probabilities = learner.predict(x_test)
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    baseline = baseline_first_prediction(x_train, y_train, x_test, multilabel)
    baseline_seconds = time.perf_counter() - started
    return {
        "dataset": name, "n_train": len(x_train), "n_test": len(x_test),
        "shape": "x".join(str(s) for s in x_train.shape[1:]),
        "fit_s": min(fit_seconds), "fit_s_med": float(np.median(fit_seconds)), "predict_s": predict_seconds,
        "nauc": nauc(y_test, probabilities), "logloss": log_loss(y_test, probabilities, multilabel),
        "acc": float(np.mean(y_test[np.arange(len(y_test)), probabilities.argmax(axis=1)] > 0.5)),
        "base_nauc": nauc(y_test, baseline), "base_logloss": log_loss(y_test, baseline, multilabel),
        "base_s": baseline_seconds,
    }


def print_table(rows: list[dict[str, object]]) -> None:
    """One line per dataset, fixed-width columns."""
    header = ("dataset", "n_train", "n_test", "shape", "fit_s", "fit_s_med", "predict_s", "nauc", "logloss",
              "acc",
              "base_nauc", "base_logloss", "base_s")
    print(" ".join(f"{h:>12}" for h in header))
    for row in rows:
        cells = [f"{row[h]:>12.3f}" if isinstance(row[h], float) else f"{row[h]!s:>12}" for h in header]
        print(" ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=list(DEFAULT_DATASETS))
    parser.add_argument("--array-cache", type=Path, default=None,
                        help="folder (outside the repository) to keep converted arrays in between runs")
    parser.add_argument("--max-train-examples", type=int, default=FastLearnerSettings.max_train_examples)
    parser.add_argument("--random-features", type=int, default=FastLearnerSettings.random_features)
    parser.add_argument("--repeats", type=int, default=3, help="fits per dataset: fit_s is the fastest")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    settings = FastLearnerSettings(
        max_train_examples=args.max_train_examples, random_features=args.random_features
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}  cpus: {os.cpu_count()}  settings: {settings}")
    rows = []
    for name in args.datasets:
        rows.append(bench_one(name, load_arrays(name, args.array_cache), settings, args.repeats))
        print_table(rows[-1:])
    print()
    print_table(rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
