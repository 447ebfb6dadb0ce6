"""The training loop: one step and one epoch, as plain functions that take everything they touch.

An epoch is a fixed number of steps; it ends early when the next step would not finish before
`stop_at`. On an asynchronous device (CUDA) the CPU queues one step ahead of the device: after queuing a
step it waits for the one before, so steps are timed from one finished step to the next (no full
synchronisation per step) and the deadline check counts the step still running. Step durations are
recorded in the budget, whose step estimate is what that check uses. The time spent waiting for the next
batch is summed, so that a slow batch pipeline shows as a share of the epoch. Running out of device
memory halves the batch (`recover_from_out_of_memory`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
from torch import nn

from autoclint.budget import Budget, Kind
from autoclint.hardware import Precision, ThreadTuner, apply_thread_count, release_cached_memory
from autoclint.optim import LRSchedule

logger = logging.getLogger(__name__)


class BatchSource(Protocol):
    """Anything that hands out (uint8 examples, float labels) training batches."""

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class ShrinkableBatches(Protocol):
    """What builds the training batches and can make them smaller (the session)."""

    def halve_batch(self) -> bool: ...


@dataclass
class EpochResult:
    """What one (possibly shortened) epoch did."""

    steps: int
    mean_loss: float
    seconds: float
    data_wait_s: float = 0.0  # inside batches.next_batch(): the device waiting for the CPU's batches

    @property
    def data_wait_share(self) -> float:
        """Share of the epoch's time spent waiting for batches (0 for an empty epoch)."""
        return self.data_wait_s / self.seconds if self.seconds > 0 else 0.0


def train_step(
    net: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    examples: torch.Tensor,
    labels: torch.Tensor,
    precision: Precision,
) -> torch.Tensor:
    """One optimiser step on a uint8 batch; returns the (detached) loss."""
    inputs = precision.to_input(examples)
    labels = labels.to(precision.device, non_blocking=True)
    with precision.autocast():
        logits = net(inputs)
    loss = loss_fn(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    precision.scaler.scale(loss).backward()
    precision.scaler.step(optimizer)
    precision.scaler.update()
    schedule.step()
    return loss.detach()


def step_estimate(budget: Budget) -> float:
    """Planned seconds of the next training step (0 before any was measured)."""
    measured = budget.measured(Kind.STEP)
    return 0.0 if measured is None else budget.planned(measured)


def train_one_epoch(
    net: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    batches: BatchSource,
    precision: Precision,
    *,
    steps: int,
    budget: Budget,
    stop_at: float,
    tuner: Optional[ThreadTuner] = None,
    clock: Callable[[], float] = time.monotonic,
) -> EpochResult:
    """Up to `steps` training steps, stopping before a step that would end after `stop_at`.

    The first step of a run also builds kernels and buffers: it is not recorded as a step duration.
    """
    net.train()
    total, done, data_wait = torch.zeros((), device=precision.device), 0, 0.0
    epoch_start = previous_end = clock()
    queued = None  # the device's marker of the last step queued and not waited for (None on a CPU)
    for _ in range(steps):
        step_start = clock()
        running = step_estimate(budget) if queued is not None else 0.0  # the queued step may still run
        if done and step_start + running + step_estimate(budget) >= stop_at:
            break
        examples, labels = batches.next_batch()
        data_wait += clock() - step_start
        total += train_step(net, loss_fn, optimizer, schedule, examples, labels, precision)
        marker = precision.mark()
        precision.wait(queued)  # the step before has finished: at most one step stays queued
        queued = marker
        step_end = clock()
        seconds, previous_end = step_end - previous_end, step_end
        if budget.count(Kind.STEP) or done:
            budget.record(Kind.STEP, seconds)
        if tuner is not None:
            apply_thread_count(tuner.observe(seconds))
        done += 1
    precision.synchronize()
    mean_loss = float(total) / max(1, done)
    schedule.end_epoch(mean_loss)
    return EpochResult(done, mean_loss, clock() - epoch_start, data_wait)


def recover_from_out_of_memory(error: BaseException, session: Optional[ShrinkableBatches],
                               device: torch.device) -> bool:
    """After the device ran out of memory: free what the failed call held, halve the training batch and
    go on (logged). False for any other error, or when the batch cannot shrink further."""
    if not isinstance(error, torch.OutOfMemoryError) or session is None:
        return False
    logger.warning("%s ran out of memory: %s", device, str(error).splitlines()[0] if str(error) else "")
    error.__traceback__ = None  # its frames hold the failed step's tensors
    release_cached_memory(device)
    if not session.halve_batch():
        return False
    logger.warning("training goes on with half the batch after running out of device memory")
    return True
