#!/usr/bin/env python
"""Training throughput of the AutoCLINT pipeline against a bare torchvision ResNet18 loop, and time to first prediction.

Prints, in one run: the bare train-step img/s (random tensors, fp32) at the planned input shape and
batch, the trainer's steady-state img/s on an in-memory data set of that shape (cache -> worker
threads -> network) without augmentation and with each `--augment` strategy in the batch workers
(`searched`: a searched-like policy, the sub-policies of 5 random candidates of 3 from the archive),
all measured in turn within each round, their ratios to the bare step (target >= 0.9), and the
seconds from Model() to the first prediction on scikit-learn's digits (1797 8×8 images; target <= 15 s).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.augment import CIFAR10_ARCHIVE, Augment, make_augment  # noqa: E402
from autoclint.augment.pipeline import sample_sub_policies  # noqa: E402
from autoclint.budget import Budget  # noqa: E402
from autoclint.config import AUGMENTATIONS, ModelConfig  # noqa: E402
from autoclint.hardware import Precision, configure_threads, pick_device, worker_count  # noqa: E402
from autoclint.loop import train_one_epoch  # noqa: E402
from autoclint.session import LoaderSettings, Session, build_session  # noqa: E402


class Metadata:
    """The metadata calls the model needs, for in-memory arrays."""

    def __init__(self, size: int, classes: int) -> None:
        self._size, self._classes = size, classes

    def size(self) -> int:
        return self._size

    def get_output_size(self) -> int:
        return self._classes


def bare_images_per_second(size: int, channels: int, batch: int, classes: int, steps: int, device: torch.device) -> float:
    """img/s of a plain torchvision resnet18 SGD train step on random tensors."""
    net = torchvision.models.resnet18(num_classes=classes).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def synthetic_pairs(count: int, size: int, channels: int, classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random images in [0, 1] with one-hot labels, as the readers deliver them."""
    rng = np.random.default_rng(0)
    labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, count)]
    images = rng.random((count, 1, size, size, channels), dtype=np.float32)
    return list(zip(images, labels))


def trainer_images_per_second(session: Session, precision: Precision, budget: Budget, epochs: int) -> float:
    """img/s of the training loop (batches from the cache through the worker threads)."""
    loader = session.start_loader()
    start = time.perf_counter()
    steps = 0
    for _ in range(epochs):
        steps += train_one_epoch(session.net, session.loss_fn, session.optimizer, session.schedule, loader,
                                 precision, steps=session.plan.steps_per_epoch, budget=budget,
                                 stop_at=math.inf).steps
    precision.synchronize()
    return steps * session.plan.batch_size / (time.perf_counter() - start)


def searched_like_augment(seed: int = 0, candidates: int = 5, per_candidate: int = 3) -> Augment:
    """What a search typically installs: the merged sub-policies of `candidates` random candidates."""
    rng = np.random.default_rng(seed)
    merged: dict = {}
    for _ in range(candidates):
        for sub_policy in sample_sub_policies(CIFAR10_ARCHIVE, per_candidate, rng):
            merged.setdefault(sub_policy, None)
    return make_augment("searched", tuple(merged), seed=seed)


def benchmark_augment(strategy: str) -> Augment | None:
    """The augmentation measured for a strategy (None: no transform at all)."""
    if strategy == "none":
        return None
    if strategy == "searched":
        return searched_like_augment()
    return make_augment(strategy, seed=0)


def use_augment(session: Session, augment: Augment | None) -> None:
    """Switch the training augmentation on a fresh loader, so that no batch built before counts."""
    session.close_loader()
    session.install_augment(augment)


def first_prediction_seconds() -> float:
    """Seconds from Model() to the first prediction on the digits data set, through the platform API."""
    from sklearn.datasets import load_digits

    from model import Model

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :, None]
    labels = np.eye(10, dtype=np.float32)[digits.target]
    train = list(zip(images[:1500], labels[:1500]))
    test = list(zip(images[1500:], np.zeros_like(labels[1500:])))
    start = time.perf_counter()
    model = Model(Metadata(len(train), 10))
    model.train(train, remaining_time_budget=1200.0)
    prediction = model.test(test, remaining_time_budget=1200.0)
    seconds = time.perf_counter() - start
    model.close()
    assert prediction is not None and prediction.shape == (len(test), 10)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side (a size the plan keeps as is)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/trainer measurements")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs per round")
    parser.add_argument("--augment", choices=[a for a in AUGMENTATIONS if a != "none"], nargs="+",
                        default=["searched"], help="augmentations measured against the unaugmented pipeline in "
                        "the same rounds (default: searched-like)")
    parser.add_argument("--workers", type=int, default=0, help="batch worker threads (0: automatic)")
    parser.add_argument("--no_first_prediction", action="store_true", help="skip the digits first-prediction timing")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")

    device = pick_device()
    threads = configure_threads(0)
    config = ModelConfig(pretrained=False, loader_workers=args.workers)
    precision = Precision.for_device(device)
    workers = worker_count(config.loader_workers)
    budget = Budget(config.safety_margin_s, config.duration_margin)
    loader_settings = LoaderSettings(config.flip, workers, config.loader_queue, config.seed, precision.pin_memory)
    session = build_session(synthetic_pairs(args.examples, args.size, args.channels, args.classes), config,
                            num_examples=args.examples, output_dim=args.classes, precision=precision,
                            loader_settings=loader_settings, budget=budget)
    session.filler.wait_for(args.examples)
    plan = session.plan
    augments = {strategy: benchmark_augment(strategy) for strategy in args.augment}
    print(f"device {device}, {threads} CPU threads, {workers} batch workers, plan "
          f"{plan.height}x{plan.width}x{plan.channels} batch {plan.batch_size}, {plan.steps_per_epoch} steps/epoch, "
          f"augmentations: {', '.join(f'{name} {augment!r}' for name, augment in augments.items())}")
    trainer_images_per_second(session, precision, budget, 1)  # warm-up
    bare, raw = [], []
    augmented: dict[str, list[float]] = {strategy: [] for strategy in augments}
    for _ in range(args.rounds):
        bare.append(bare_images_per_second(plan.height, plan.channels, plan.batch_size, args.classes,
                                           plan.steps_per_epoch * args.epochs, device))
        use_augment(session, None)
        raw.append(trainer_images_per_second(session, precision, budget, args.epochs))
        for strategy, augment in augments.items():
            use_augment(session, augment)
            augmented[strategy].append(trainer_images_per_second(session, precision, budget, args.epochs))
    session.close()
    report("bare torchvision resnet18 train step:", bare)
    report("autoclint trainer, no augmentation:  ", raw)
    print(f"ratio no augmentation / bare (best of rounds): {max(raw) / max(bare):.3f}   "
          f"(median: {np.median(raw) / np.median(bare):.3f})")
    for strategy, values in augmented.items():
        report(f"autoclint trainer, {strategy + ':':15s}   ", values)
        print(f"ratio {strategy} / bare (best of rounds): {max(values) / max(bare):.3f}   "
              f"(median: {np.median(values) / np.median(bare):.3f});  {strategy} / no augmentation: "
              f"{max(values) / max(raw):.3f}")
    if not args.no_first_prediction:
        print(f"time from Model() to first prediction on digits: {first_prediction_seconds():.2f} s")


def report(label: str, values: list[float]) -> None:
    """One line: best img/s and every round."""
    print(f"{label} {max(values):8.1f} img/s (rounds: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
