#!/usr/bin/env python
"""Predict throughput of a kept model against a bare torchvision ResNet18 forward pass.

Prints, in one run, images per second of: the bare `torchvision.models.resnet18` forward (float32
tensors already in memory, inference mode) at the planned input shape and evaluation batch; the
Predictor's network pass on examples already converted to uint8 (what `Model.test` runs per
checkpoint); and `ImageClassifier.predict_proba` on raw float examples (conversion included), all with
flip TTA off, measured in turn within each round (median over rounds), with their ratios to the bare
forward (target >= 0.9). With `--fit-digits`, also the validation NAUC that `ImageClassifier.fit` reaches
on scikit-learn's digits within `--fit-budget` seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.classifier import ImageClassifier  # noqa: E402
from autoclint.data.convert import ExampleConverter  # noqa: E402
from autoclint.hardware import Precision, configure_threads, pick_device  # noqa: E402
from autoclint.nn.network import AutoClintNet  # noqa: E402
from autoclint.predictor import Predictor  # noqa: E402


def images_per_second(run: Callable[[], object], count: int, rounds: list[float]) -> None:
    """Time one call of `run` over `count` images and append its rate."""
    start = time.perf_counter()
    run()
    rounds.append(count / (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width (64: the plan's largest)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--count", type=int, default=1024, help="images per measurement")
    parser.add_argument("--batch", type=int, default=256, help="evaluation batch (the configuration's default)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fit-digits", action="store_true", help="also fit on digits and print the NAUC")
    parser.add_argument("--fit-budget", type=float, default=60.0)
    args = parser.parse_args()

    device = pick_device()
    threads = configure_threads(0) if device.type == "cpu" else 0
    precision = Precision(device)  # float32: the bare forward's precision
    shape = (args.size, args.size, args.channels)
    rng = np.random.default_rng(0)
    raw = rng.random((args.count, 1, *shape), dtype=np.float32)
    converter = ExampleConverter(1, args.size, args.size, args.channels, 0.0, 1.0)
    net = AutoClintNet("resnet18", args.channels, args.classes).to(device).eval()
    predictor = Predictor(converter, net, None, 1.0, False, args.classes, False,
                          np.full(args.classes, 1.0 / args.classes, np.float32), precision, args.batch)
    clf = ImageClassifier()
    clf.predictor_, clf.classes_, clf.multilabel_ = predictor, np.arange(args.classes), False
    converted = predictor.convert(raw)

    bare = torchvision.models.resnet18(num_classes=args.classes).to(device).eval()
    tensors = torch.from_numpy(raw[:, 0]).permute(0, 3, 1, 2).contiguous().to(device)

    @torch.inference_mode()
    def bare_forward() -> None:
        for start in range(0, args.count, args.batch):
            bare(tensors[start : start + args.batch])
        if device.type == "cuda":
            torch.cuda.synchronize()

    rates: dict[str, list[float]] = {"bare resnet18 forward": [], "predictor, converted uint8": [],
                                     "predict_proba, raw float": []}
    bare_forward()  # warm-up of both paths
    predictor.predict_converted(converted[: args.batch])
    for _ in range(args.rounds):
        images_per_second(bare_forward, args.count, rates["bare resnet18 forward"])
        images_per_second(lambda: predictor.predict_converted(converted), args.count,
                          rates["predictor, converted uint8"])
        images_per_second(lambda: clf.predict_proba(raw), args.count, rates["predict_proba, raw float"])

    print(f"device {device}, {threads} threads, input {args.size}x{args.size}x{args.channels}, "
          f"batch {args.batch}, {args.count} images x {args.rounds} rounds, TTA off")
    reference = statistics.median(rates["bare resnet18 forward"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:9.1f} img/s  ratio {median / reference:.3f}")

    if args.fit_digits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = (digits.images / 16.0).astype(np.float32)[..., None]
        start = time.monotonic()
        fitted = ImageClassifier(time_budget=args.fit_budget).fit(X, digits.target)
        print(f"digits fit: {time.monotonic() - start:.1f} s of {args.fit_budget:g}, "
              f"best validation NAUC {max(p.nauc for p in fitted.learning_curve_):.4f}; {fitted.description_}")


if __name__ == "__main__":
    main()
