"""Everything a run builds from its training data: probe, plan, cache, split, device sets, network,
optimiser and schedule, and the batch workers that feed it.

`read_data` reads the probe sample, plans from it, starts decoding the rest in the background and holds
out the validation set; `attach_network` then builds the network, its optimiser and schedule. The two are
separate so that the fast learner can predict before the network exists. The session owns its background
threads and its batch worker processes, if any.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from autoclint.augment import Augment
from autoclint.budget import Budget, Kind
from autoclint.config import ModelConfig
from autoclint.data.batches import BatchLoader, TrainSampler
from autoclint.data.bridge import DEFAULT_PROBE_BYTES, iterate_numpy, take_probe_sample
from autoclint.data.cache import CacheFiller, ExampleCache
from autoclint.data.convert import ExampleConverter
from autoclint.data.device_set import DeviceSet
from autoclint.data.split import choose_valid_indices, must_read_all_first, prefix_needed
from autoclint.data.workers import ProcessBatchLoader, WorkerPool
from autoclint.evaluate import BestCheckpoint
from autoclint.hardware import Precision
from autoclint.nn import WeightsError, build_network, init_backbone_weights, make_loss
from autoclint.optim import LRSchedule, make_sgd
from autoclint.plan import Plan, make_plan
from autoclint.probe import Probe, probe_examples

logger = logging.getLogger(__name__)

READ_ALL_FIRST_S = 0.25
"""The rest of the training set is read before the split when that is expected to take at most this long:
breastmnist's 546 small PNGs (about 0.1 s) are then all in the first fit (test NAUC 0.69 against 0.61 on
the prefix), while ucmerced_a's 800 JPEGs (about 3 s) no longer delay the first prediction."""


@dataclass(frozen=True)
class LoaderSettings:
    """How training batches are built: flip, workers, queue length, seed, pinned memory, and whether the
    workers are processes (else threads)."""

    flip: bool
    workers: int
    queue_size: int
    seed: int
    pin_memory: bool
    processes: bool = False


@dataclass
class Session:
    """The data, network and optimiser of one run, and the batch workers feeding training."""

    probe: Probe
    plan: Plan
    converter: ExampleConverter
    cache: ExampleCache
    filler: CacheFiller
    valid: DeviceSet
    valid_indices: np.ndarray
    sampler: TrainSampler
    loader_settings: LoaderSettings
    # the network's part, built by `attach_network` (after the fast learner's first prediction)
    net: Optional[nn.Module] = None
    best: Optional[BestCheckpoint] = None
    loss_fn: Optional[nn.Module] = None
    optimizer: Optional[torch.optim.Optimizer] = None
    schedule: Optional[LRSchedule] = None
    weights_loaded: bool = False
    loader: Optional[BatchLoader | ProcessBatchLoader] = None
    augment: Optional[Augment] = None
    worker_pool: Optional[WorkerPool] = None

    @property
    def has_network(self) -> bool:
        """Whether the network, its optimiser and schedule are built."""
        return self.net is not None

    @property
    def checkpoint_version(self) -> int:
        """The best checkpoint's version: 0 before the network has one (or exists)."""
        return 0 if self.best is None else self.best.version

    def start_workers(self) -> None:
        """Start the batch worker processes, where the settings ask for them, so that they are ready by the
        first training step (each first imports torch)."""
        if self.loader_settings.processes and self.worker_pool is None and self.cache.shared_file is not None:
            try:
                self.worker_pool = WorkerPool(self.cache, self.loader_settings.workers)
            except Exception:  # e.g. a platform that forbids starting processes
                logger.exception("batch worker processes could not start: using threads")
                self.loader_settings = dataclasses.replace(self.loader_settings, processes=False)

    def start_loader(self) -> BatchLoader | ProcessBatchLoader:
        """The running batch loader (a fresh one after a failure closed the last): over the worker processes
        while any is left, else on threads."""
        if isinstance(self.loader, ProcessBatchLoader) and len(self.worker_pool) == 0:
            logger.warning("no batch worker process left: building batches on threads")
            self.close_loader()
            self.close_workers()
            self.loader_settings = dataclasses.replace(self.loader_settings, processes=False)
        if self.loader is None:
            settings = self.loader_settings
            self.start_workers()
            if self.worker_pool is not None and len(self.worker_pool) > 0:
                self.loader = ProcessBatchLoader(self.worker_pool, self.sampler, self.plan.batch_size,
                                                 flip=settings.flip, queue_size=settings.queue_size,
                                                 seed=settings.seed, pin_memory=settings.pin_memory)
            else:
                self.loader = BatchLoader(self.cache, self.sampler, self.plan.batch_size, flip=settings.flip,
                                          workers=settings.workers, queue_size=settings.queue_size,
                                          seed=settings.seed, pin_memory=settings.pin_memory)
            self._set_loader_transform()
            self.loader.start()
        return self.loader

    def install_augment(self, augment: Optional[Augment]) -> None:
        """Augment every training batch built from now on (also by loaders started later)."""
        self.augment = augment
        self._set_loader_transform()

    def _set_loader_transform(self) -> None:
        if self.loader is not None:
            self.loader.set_transform(None if self.augment is None else self.augment.augment_batch)

    def halve_batch(self) -> bool:
        """Build training batches half as large from now on, as many more per epoch (after the device ran
        out of memory); False when a batch is a single example already."""
        if self.plan.batch_size <= 1:
            return False
        self.close_loader()
        self.plan = dataclasses.replace(self.plan, batch_size=self.plan.batch_size // 2,
                                        steps_per_epoch=2 * self.plan.steps_per_epoch)
        logger.info("training batches of %d examples, %d per epoch", self.plan.batch_size, self.plan.steps_per_epoch)
        return True

    def close_loader(self) -> None:
        """Stop the batch workers (they are restarted on demand)."""
        if self.loader is not None:
            self.loader.close()
            self.loader = None

    def close(self) -> None:
        """Stop every background thread and worker process."""
        self.close_loader()
        self.filler.stop()
        self.close_workers()

    def close_workers(self) -> None:
        """Stop the worker processes (when training is over: they hold memory)."""
        if self.worker_pool is not None:
            self.worker_pool.close()
            self.worker_pool = None


def read_probe_sample(source: Any, count: int, budget: Budget) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `count` examples, fewer when they are huge (the probe's memory is bounded); records the
    reading time per example (after the first, which also pays for starting the reader)."""
    sample = list(itertools.islice(source, 1))
    first_read = budget.now()
    if sample and count > 1:
        sample.extend(take_probe_sample(source, count - 1, max(1, DEFAULT_PROBE_BYTES - sample[0][0].nbytes)))
    if len(sample) > 1:
        budget.record(Kind.READ, budget.now() - first_read, units=len(sample) - 1)
    return sample


def build_network_on(device: torch.device, precision: Precision, plan: Plan, config: ModelConfig,
                     code_dir: str | Path | None) -> tuple[nn.Module, bool]:
    """The network on the device, with ImageNet weights when configured and found; and whether they loaded."""
    net = build_network(plan, config)
    loaded = False
    if config.pretrained:
        try:
            loaded = init_backbone_weights(net.backbone, config.arch, code_dir) is not None
        except WeightsError:
            logger.exception("unusable ImageNet weights file: training from random initialisation")
    memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
    return net.to(device, memory_format=memory_format), loaded


def hold_out_validation(filler: CacheFiller, cache: ExampleCache, probe: Probe, plan: Plan, total: int,
                        config: ModelConfig, device: torch.device) -> tuple[DeviceSet, np.ndarray]:
    """Wait for enough decoded examples, choose the validation examples and put them on the device.

    After the prefix, the rest is also awaited when reading and converting it is expected to take at most
    `READ_ALL_FIRST_S` at the rate measured on the prefix: the split and the first fit then see all of it."""
    if must_read_all_first(probe, total):
        available = filler.wait_for(math.inf)
    else:
        available = filler.wait_for(prefix_needed(total, plan.num_valid, plan.batch_size, config.probe_size))
        rate = filler.seconds_per_example
        if available < total and rate is not None and (total - available) * rate <= READ_ALL_FIRST_S:
            available = filler.wait_for(total)
    num_valid = min(plan.num_valid, max(0, available - 1))
    indices = choose_valid_indices(available, num_valid, config.seed) if num_valid else np.empty(0, int)
    examples, labels = cache.gather(indices)
    return DeviceSet(examples, labels, device), indices


def read_data(dataset: Any, config: ModelConfig, *, num_examples: int, output_dim: int, budget: Budget,
              loader_settings: LoaderSettings, device: torch.device) -> Session:
    """Probe and plan from the first examples, start decoding the rest and hold out the validation set: a
    session without its network yet."""
    source = iterate_numpy(dataset)
    sample = read_probe_sample(source, config.probe_size, budget)
    probe = probe_examples(sample)
    if probe.num_classes != output_dim:
        raise ValueError(f"labels have {probe.num_classes} columns but metadata says {output_dim}")
    total = num_examples if num_examples > 0 else len(sample)
    plan = make_plan(probe, total, config)
    logger.info("plan: %s", plan)
    converter = ExampleConverter.from_plan(plan, probe)
    cache = ExampleCache(converter.shape, probe.num_classes, capacity=max(total, len(sample)))
    for examples, labels in converter.convert_chunks(sample):
        for example, label in zip(examples, labels):
            cache.append(example, label)
    filler = CacheFiller(source, cache, converter, on_finish=converter.log_nonfinite_summary).start()
    if num_examples <= 0:  # unknown size: read everything before splitting
        total = 0
    valid, valid_indices = hold_out_validation(filler, cache, probe, plan, total, config, device)
    session = Session(probe, plan, converter, cache, filler, valid, valid_indices,
                      TrainSampler(cache, valid_indices, config.seed), loader_settings)
    session.start_workers()
    return session


def attach_network(session: Session, config: ModelConfig, precision: Precision,
                   code_dir: str | Path | None = None) -> Session:
    """Build the session's network (with ImageNet weights when found), optimiser and schedule, with the
    scratch settings when no weights loaded; returns the session."""
    net, weights_loaded = build_network_on(precision.device, precision, session.plan, config, code_dir)
    if config.for_weights(weights_loaded) is not config:
        config = config.for_weights(weights_loaded)
        net.tau = config.tau
        logger.info("no ImageNet weights: training from scratch with tau %g, %d warm-up epoch(s), lr %g per 64",
                    config.tau, config.warmup_epochs, config.lr_per_64)
    plan = session.plan
    optimizer = make_sgd(net, config.lr_for_batch(plan.batch_size), config)
    session.net, session.best, session.loss_fn = net, BestCheckpoint.of(net), make_loss(plan.is_multilabel)
    session.optimizer, session.weights_loaded = optimizer, weights_loaded
    session.schedule = LRSchedule(optimizer, plan.steps_per_epoch, config.warmup_epochs, config.plateau_patience,
                                  config.plateau_factor)
    return session


def build_session(dataset: Any, config: ModelConfig, *, num_examples: int, output_dim: int,
                  precision: Precision, loader_settings: LoaderSettings, budget: Budget,
                  code_dir: str | Path | None = None) -> Session:
    """`read_data` and `attach_network` in one: a session ready to train."""
    session = read_data(dataset, config, num_examples=num_examples, output_dim=output_dim, budget=budget,
                        loader_settings=loader_settings, device=precision.device)
    return attach_network(session, config, precision, code_dir)
