#!/usr/bin/env python
"""AutoCLINT training throughput against a bare torchvision ResNet18 step, and time to first prediction.

Prints, in one run: the bare train-step img/s (random tensors, fp32; with `--amp` on CUDA also
autocast bf16, or fp16 with a GradScaler, channels-last) at the planned input shape and batch, the
trainer's steady-state img/s on an in-memory data set of that shape (cache -> worker threads ->
network) without augmentation and with each `--augment` strategy in the batch workers (`searched`: a
searched-like policy, the sub-policies of 5 random candidates of 3 from the archive), all measured in
turn within each round, with the share of the trainer's time spent waiting for batches, their ratios to
the bare step (the AMP one when measured; target >= 0.9), and the seconds from Model() to the first
prediction on scikit-learn's digits (1797 8×8 images; target <= 15 s). `--json` writes it all to a file.
On a CPU `--amp` is skipped: the trainer runs float32 there, so the fp32 step is its reference.

It also times the standalone batch pipeline (cache -> flip -> augmentation -> uint8 batch, no network)
with 1 and 2 workers, one line each: `pipeline <side>px <augmentation> workers=<n>: <img/s> img/s`;
`--pipeline_only` prints just those lines for `--size`, without and with the searched-like policy, with
worker processes unless `--worker_kind threads`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.augment import CIFAR10_ARCHIVE, Augment, make_augment  # noqa: E402
from autoclint.augment.pipeline import sample_sub_policies  # noqa: E402
from autoclint.budget import Budget  # noqa: E402
from autoclint.data.batches import BatchLoader, TrainSampler  # noqa: E402
from autoclint.data.cache import ExampleCache  # noqa: E402
from autoclint.data.workers import ProcessBatchLoader, WorkerPool  # noqa: E402
from autoclint.config import AUGMENTATIONS, ModelConfig  # noqa: E402
from autoclint.hardware import (  # noqa: E402
    Precision,
    autocast_dtype,
    configure_threads,
    pick_device,
    use_worker_processes,
    worker_count,
)
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


def bare_amp_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of the bare AMP step: the trainer's (bfloat16 where the GPU has it natively, else
    float16); None on a CPU."""
    return autocast_dtype(device)


def bare_images_per_second(size: int, channels: int, batch: int, classes: int, steps: int,
                           device: torch.device, amp_dtype: Optional[torch.dtype] = None) -> float:
    """img/s of a plain torchvision resnet18 SGD train step on random tensors.

    With `amp_dtype`: under torch.autocast, channels-last, a GradScaler for float16 (the usual AMP recipe).
    """
    memory_format = torch.channels_last if amp_dtype is not None else torch.contiguous_format
    net = torchvision.models.resnet18(num_classes=classes).to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, classes, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(min(3, steps)):  # warm-up
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def synthetic_pairs(count: int, size: int, channels: int,
                    classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random images in [0, 1] with one-hot labels, as the readers deliver them."""
    rng = np.random.default_rng(0)
    labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, count)]
    images = rng.random((count, 1, size, size, channels), dtype=np.float32)
    return list(zip(images, labels))


@dataclass
class Throughput:
    """The trainer's speed over some epochs and the share of that time it waited for batches."""

    images_per_second: float
    data_wait_share: float


def trainer_images_per_second(session: Session, precision: Precision, budget: Budget,
                              epochs: int) -> Throughput:
    """img/s of the training loop (batches from the cache through the worker threads)."""
    loader = session.start_loader()
    start = time.perf_counter()
    steps, waited = 0, 0.0
    for _ in range(epochs):
        result = train_one_epoch(session.net, session.loss_fn, session.optimizer, session.schedule, loader,
                                 precision, steps=session.plan.steps_per_epoch, budget=budget,
                                 stop_at=math.inf)
        steps, waited = steps + result.steps, waited + result.data_wait_s
    precision.synchronize()
    seconds = time.perf_counter() - start
    return Throughput(steps * session.plan.batch_size / seconds, waited / seconds)


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


PIPELINE_WORKERS = (1, 2)
PIPELINE_WARMUP_BATCHES = 5
PROCESS_START_TIMEOUT_S = 120.0


def random_cache(count: int, size: int, channels: int, classes: int) -> ExampleCache:
    """An example cache of random uint8 images [1, size, size, channels] with one-hot labels."""
    rng = np.random.default_rng(0)
    cache = ExampleCache((1, size, size, channels), classes, capacity=count)
    labels = np.eye(classes, dtype=np.float32)
    for index in range(count):
        cache.append(rng.integers(0, 256, (1, size, size, channels), dtype=np.uint8), labels[index % classes])
    return cache


def pipeline_images_per_second(cache: ExampleCache, batch_size: int, workers: int, augment: Augment | None,
                               seconds: float, processes: bool = False) -> float:
    """img/s of the batch workers alone: cache -> flip -> augmentation -> uint8 batch, no network (worker
    processes are started and ready before the clock starts)."""
    sampler = TrainSampler(cache, np.empty(0, dtype=np.int64), seed=0)
    pool = WorkerPool(cache, workers) if processes else None
    try:
        if pool is not None and not pool.wait_ready(PROCESS_START_TIMEOUT_S):
            raise RuntimeError("the batch worker processes did not start")
        loader = (ProcessBatchLoader(pool, sampler, batch_size, queue_size=2 * workers) if pool is not None
                  else BatchLoader(cache, sampler, batch_size, workers=workers, queue_size=2 * workers))
        with loader:
            loader.set_transform(None if augment is None else augment.augment_batch)
            for _ in range(PIPELINE_WARMUP_BATCHES):
                loader.next_batch()
            start, images = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                images += len(loader.next_batch()[0])
            return images / (time.perf_counter() - start)
    finally:
        if pool is not None:
            pool.close()


def measure_pipeline(size: int, channels: int, classes: int, batch_size: int, strategies: list[str],
                     seconds: float, examples: int = 2000, processes: bool = False) -> dict[str, float]:
    """The standalone pipeline's img/s per augmentation and worker count, each printed as it comes."""
    cache = random_cache(examples, size, channels, classes)
    results = {}
    for strategy in strategies:
        for workers in PIPELINE_WORKERS:
            rate = pipeline_images_per_second(cache, batch_size, workers, benchmark_augment(strategy), seconds,
                                              processes)
            results[f"{size}px {strategy} workers={workers}"] = rate
            print(f"pipeline {size}px {strategy} workers={workers}: {rate:.0f} img/s", flush=True)
    return results


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


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side (a size the plan keeps as is)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/trainer measurements")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs per round")
    parser.add_argument("--augment", choices=[a for a in AUGMENTATIONS if a != "none"], nargs="+",
                        default=["searched"], help="augmentations measured against the unaugmented pipeline "
                        "in the same rounds (default: searched-like)")
    parser.add_argument("--workers", type=int, default=0, help="batch workers (0: automatic)")
    parser.add_argument("--worker_kind", choices=["auto", "threads", "processes"], default="auto",
                        help="batch workers as threads or processes (auto: processes on CUDA, and for "
                        "--pipeline_only wherever shared memory allows; threads otherwise)")
    parser.add_argument("--batch_size", type=int, default=ModelConfig.batch_size,
                        help=f"training batch (default: the configuration's {ModelConfig.batch_size})")
    parser.add_argument("--steps_per_epoch", type=int, default=0, help="steps per epoch (0: planned)")
    parser.add_argument("--amp", action="store_true",
                        help="also time the bare step under autocast (CUDA only: bf16 where supported, else "
                        "fp16 with a GradScaler; channels-last); it becomes the reference of the ratios")
    parser.add_argument("--time_limit_s", type=float, default=0.0,
                        help="start no new round after this many seconds of measuring (0: no limit)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    parser.add_argument("--no_first_prediction", action="store_true",
                        help="skip the digits first-prediction timing")
    parser.add_argument("--pipeline_only", action="store_true",
                        help="only the standalone batch pipeline (no network) at --size: 1 and 2 workers, "
                        "no augmentation and the searched-like policy")
    parser.add_argument("--pipeline_seconds", type=float, default=3.0,
                        help="seconds each standalone pipeline measurement runs (0: skip it in a full run)")
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: Optional[list[str]] = None) -> dict:
    """Measure, print, and return (and with --json write) the figures."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")

    device = pick_device()
    threads = configure_threads(0)
    if args.pipeline_only:
        processes = use_worker_processes("processes" if args.worker_kind == "auto" else args.worker_kind, device)
        pipeline = measure_pipeline(args.size, args.channels, args.classes, args.batch_size, ["none", "searched"],
                                    args.pipeline_seconds, processes=processes)
        results = dict(pipeline_images_per_second=pipeline, threads=threads,
                       worker_kind="processes" if processes else "threads")
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1))
        return results
    config = ModelConfig(pretrained=False, loader_workers=args.workers, batch_size=args.batch_size,
                         steps_per_epoch=args.steps_per_epoch)
    precision = Precision.for_device(device)
    processes = use_worker_processes(args.worker_kind, device)
    workers = worker_count(config.loader_workers, processes=processes)
    amp_dtype = bare_amp_dtype(device) if args.amp else None
    if args.amp and amp_dtype is None:
        print("--amp: no CUDA, so no AMP bare step (the trainer runs float32 here; fp32 is its reference)")
    budget = Budget(config.safety_margin_s, config.duration_margin)
    loader_settings = LoaderSettings(config.flip, workers, config.loader_queue, config.seed,
                                     precision.pin_memory, processes)
    session = build_session(synthetic_pairs(args.examples, args.size, args.channels, args.classes), config,
                            num_examples=args.examples, output_dim=args.classes, precision=precision,
                            loader_settings=loader_settings, budget=budget)
    session.filler.wait_for(args.examples)
    plan = session.plan
    augments = {strategy: benchmark_augment(strategy) for strategy in args.augment}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({device_name}), precision {precision.describe()}, {threads} CPU threads, "
          f"{workers} batch worker {'processes' if processes else 'threads'}, "
          f"pinned memory {'on' if precision.pin_memory else 'off'}, plan "
          f"{plan.height}x{plan.width}x{plan.channels} batch {plan.batch_size}, "
          f"{plan.steps_per_epoch} steps/epoch, "
          f"augmentations: {', '.join(f'{name} {augment!r}' for name, augment in augments.items())}")
    trainer_images_per_second(session, precision, budget, 1)  # warm-up
    bare: dict[str, list[float]] = {"bare_fp32": []} | ({"bare_amp": []} if amp_dtype is not None else {})
    trainer: dict[str, list[Throughput]] = {name: [] for name in ["none", *augments]}
    steps = plan.steps_per_epoch * args.epochs
    measuring_since = time.perf_counter()
    for round_index in range(args.rounds):
        if round_index and args.time_limit_s and time.perf_counter() - measuring_since > args.time_limit_s:
            print(f"time limit: {round_index} of {args.rounds} rounds measured")
            break
        for name, dtype in (("bare_fp32", None), ("bare_amp", amp_dtype)):
            if name in bare:
                bare[name].append(bare_images_per_second(plan.height, plan.channels, plan.batch_size,
                                                         args.classes, steps, device, dtype))
        for strategy in trainer:
            use_augment(session, augments.get(strategy))
            trainer[strategy].append(trainer_images_per_second(session, precision, budget, args.epochs))
    session.close()
    results = summarise(bare, trainer)
    results.update(device=device.type, device_name=device_name, precision=precision.describe(),
                   threads=threads, workers=workers, pin_memory=precision.pin_memory,
                   amp_dtype=None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
                   plan=dict(height=plan.height, width=plan.width, channels=plan.channels,
                             batch_size=plan.batch_size, steps_per_epoch=plan.steps_per_epoch),
                   rounds=len(bare["bare_fp32"]), epochs=args.epochs, examples=args.examples)
    print_results(results)
    if args.pipeline_seconds > 0:
        results["pipeline_images_per_second"] = measure_pipeline(
            plan.height, plan.channels, args.classes, plan.batch_size, ["none", *args.augment], args.pipeline_seconds,
            processes=processes)
    if not args.no_first_prediction:
        results["first_prediction_s"] = first_prediction_seconds()
        print(f"time from Model() to first prediction on digits: {results['first_prediction_s']:.2f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return results


def summarise(bare: dict[str, list[float]], trainer: dict[str, list[Throughput]]) -> dict:
    """Every round's img/s, the best of each, the waiting shares and the ratios to the reference bare step."""
    images = dict(bare) | {f"trainer_{name}": [t.images_per_second for t in runs]
                           for name, runs in trainer.items()}
    best = {name: max(values) for name, values in images.items()}
    reference = "bare_amp" if "bare_amp" in bare else "bare_fp32"
    ratios = {f"{name}/{reference}": best[name] / best[reference]
              for name in images if name.startswith("trainer_")}
    ratios |= {f"trainer_{name}/trainer_none": best[f"trainer_{name}"] / best["trainer_none"]
               for name in trainer if name != "none"}
    if reference != "bare_fp32":
        ratios["bare_amp/bare_fp32"] = best["bare_amp"] / best["bare_fp32"]
    waiting = {f"trainer_{name}": [t.data_wait_share for t in runs] for name, runs in trainer.items()}
    return dict(images_per_second=images, best_images_per_second=best, reference=reference, ratios=ratios,
                data_wait_share=waiting)


def print_results(results: dict) -> None:
    """The figures as lines a person reads."""
    labels = {"bare_fp32": "bare torchvision resnet18 step, fp32:",
              "bare_amp": f"bare torchvision resnet18 step, AMP {results['amp_dtype']}:"}
    for name, values in results["images_per_second"].items():
        label = labels.get(name, f"autoclint trainer, {name.removeprefix('trainer_')}:")
        waiting = results["data_wait_share"].get(name)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        extra = "" if waiting is None else (
            f"; waiting for batches {100 * np.median(waiting):.1f}% of the time")
        print(f"{label:42s} {max(values):9.1f} img/s (rounds: {rounds}){extra}")
    for name, ratio in results["ratios"].items():
        print(f"ratio {name} (best of rounds): {ratio:.3f}")


if __name__ == "__main__":
    main()
