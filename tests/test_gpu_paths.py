"""The code a CUDA GPU takes, run on the CPU: bfloat16 autocast and channels-last through a training step,
validation and the test pass; float16 with a (CPU) GradScaler; float32 logits under autocast; a CPU that
queues steps ahead of the device; one intra-op thread per batch worker; recovery from running out of memory."""

import logging
import math
import threading

import numpy as np
import pytest
import torch

import autoclint.trainer as trainer_module
from autoclint.budget import Budget, Kind
from autoclint.config import ModelConfig
from autoclint.data.batches import BatchLoader, TrainSampler
from autoclint.data.cache import ExampleCache
from autoclint.data.device_set import DeviceSet
from autoclint.evaluate import EvalSettings, FrozenScorer, logits, timed_test_pass, validate
from autoclint.hardware import Precision
from autoclint.loop import train_one_epoch, train_step
from autoclint.nn import AutoClintNet, make_loss
from autoclint.optim import LRSchedule, make_sgd
from autoclint.trainer import Trainer
from tests.test_trainer import FAST, Metadata, easy_task

BF16_CHANNELS_LAST = Precision(torch.device("cpu"), torch.bfloat16, channels_last=True)
"""What a GPU from Ampere on gets (Precision.for_device), on the CPU."""


def tiny_net(classes: int = 3) -> AutoClintNet:
    torch.manual_seed(0)
    return AutoClintNet("resnet18", 3, classes, tau=8.0)


def banded_set(count: int = 12, classes: int = 3, size: int = 16, labelled: bool = True) -> DeviceSet:
    """uint8 images [N, 1, H, W, 3] whose class is the bright band, as a set on the (CPU) device."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % classes
    images = rng.integers(0, 60, (count, 1, size, size, 3), dtype=np.uint8)
    band = size // classes
    for index, label in enumerate(labels):
        images[index, 0, label * band:(label + 1) * band] += 180
    return DeviceSet(images, np.eye(classes, dtype=np.float32)[labels] if labelled else None, torch.device("cpu"))


def parts(net: torch.nn.Module):
    optimizer = make_sgd(net, 0.05, ModelConfig())
    return make_loss(False), optimizer, LRSchedule(optimizer, steps_per_epoch=4, warmup_epochs=0)


@pytest.mark.parametrize("precision", [
    BF16_CHANNELS_LAST,
    Precision(torch.device("cpu"), torch.float16, channels_last=True),  # pre-Ampere GPUs: fp16 + GradScaler
], ids=["bf16-channels-last", "fp16-gradscaler"])
def test_a_step_validation_and_the_test_pass_run_the_cuda_settings(precision):
    if precision.dtype == torch.float16:
        assert precision.scaler.is_enabled()  # the loss scaler runs: scale, unscale, inf checks, update
    net = tiny_net().to(memory_format=torch.channels_last)
    loss_fn, optimizer, schedule = parts(net)
    train = banded_set()
    labels = torch.from_numpy(train.labels)
    before = [p.detach().clone() for p in net.parameters()]
    losses = [float(train_step(net, loss_fn, optimizer, schedule, train.examples, labels, precision))
              for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    if precision.dtype == torch.float16:
        assert precision.scaler.get_scale() > 0 and precision.scaler._scale is not None

    budget = Budget(0.0, 1.0)
    settings = EvalSettings(batch_size=8, multilabel=False, try_tta=True)
    result = validate(net, train, loss_fn, precision, settings, budget, allow_tta=True)
    assert 0.0 <= abs(result.nauc) <= 1.0 and math.isfinite(result.loss)
    assert result.scores.dtype == np.float32 and result.scores.shape == (12, 3)
    assert np.allclose(result.scores.sum(axis=1), 1.0, atol=1e-5)
    assert budget.count(Kind.FORWARD) == 1

    scores = timed_test_pass(net, banded_set(labelled=False), precision, settings, budget, use_tta=True)
    assert scores.shape == (12, 3) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert budget.count(Kind.TEST_PASS) == 1


def test_logits_under_autocast_are_computed_in_float32():
    """Scores, NAUC and the TTA and blend choices come from these logits: no bfloat16 rounding in them."""
    net = tiny_net().eval()
    features = []
    net.fc.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
    valid = banded_set()
    out = logits(net, valid, BF16_CHANNELS_LAST, batch_size=12)
    assert out.dtype == torch.float32
    with torch.no_grad():
        expected = torch.nn.functional.linear(features[0].float(), net.fc.weight, net.fc.bias) / net.tau
    assert torch.allclose(out, expected, rtol=1e-6, atol=1e-7)
    scores = FrozenScorer(net, BF16_CHANNELS_LAST, multilabel=False)(valid.examples)  # the search's scores
    with torch.no_grad():
        expected = torch.nn.functional.linear(features[-1].float(), net.fc.weight, net.fc.bias) / net.tau
    assert np.allclose(scores, torch.softmax(expected, dim=1).numpy(), rtol=1e-6, atol=1e-7)


class AsynchronousDevice(Precision):
    """A CPU precision that acts as a queueing device would: it hands out step markers and records
    what the loop waits for and every full synchronisation."""

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))
        self.marks, self.waits, self.synchronisations = 0, [], 0

    def mark(self):
        self.marks += 1
        return self.marks

    def wait(self, marker) -> None:
        self.waits.append(marker)

    def synchronize(self) -> None:
        self.synchronisations += 1


class StepClock:
    """Each training step takes one second on this clock."""

    def __init__(self) -> None:
        self.time = 0.0

    def __call__(self) -> float:
        return self.time


def test_the_cpu_queues_one_step_ahead_instead_of_synchronising_every_step(monkeypatch):
    clock = StepClock()
    original = trainer_module.train_one_epoch.__globals__["train_step"]

    def step_taking_a_second(*args):
        clock.time += 1.0
        return original(*args)

    monkeypatch.setitem(trainer_module.train_one_epoch.__globals__, "train_step", step_taking_a_second)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3))
    loss_fn, optimizer, schedule = parts(net)
    train = banded_set()

    class Batches:
        def next_batch(self):
            return train.examples, torch.from_numpy(train.labels)

    device = AsynchronousDevice()
    budget = Budget(safety_margin_s=0.0, duration_margin=1.0, now=clock)
    result = train_one_epoch(net, loss_fn, optimizer, schedule, Batches(), device, steps=20, budget=budget,
                             stop_at=10.0, clock=clock)
    assert device.synchronisations == 1  # once, at the end of the epoch; never per step
    assert device.waits == [None, *range(1, result.steps)]  # after queuing a step, the one before it
    # a step may still run on the device when the next is decided: 1 s running + 1 s planned from 8 s is 10 s
    assert result.steps == 8
    assert budget.measured(Kind.STEP) == pytest.approx(1.0)


def test_batch_workers_compute_with_one_intra_op_thread_and_leave_the_trainers_alone():
    torch.set_num_threads(2)
    cache = ExampleCache((1, 8, 8, 3), 2, capacity=16)
    for index in range(16):
        cache.append(np.full((1, 8, 8, 3), index, np.uint8), np.eye(2, dtype=np.float32)[index % 2])
    seen = []

    def recording(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return batch

    loader = BatchLoader(cache, TrainSampler(cache, np.empty(0, np.int64), 0), 4, workers=2)
    loader.set_transform(recording)
    with loader:
        for _ in range(4):
            loader.next_batch()
    assert seen and all(name.startswith("autoclint-batches") and threads == 1 for name, threads in seen)
    assert torch.get_num_threads() == 2


def test_running_out_of_device_memory_halves_the_batch_and_training_goes_on(monkeypatch, caplog):
    train, _ = easy_task(60)
    trainer = Trainer(Metadata(60, 3), FAST.replace(fast_learner=False))
    original = trainer_module.train_one_epoch
    failing = {"calls": 3}

    def out_of_memory_at_first(*args, **kwargs):
        if failing["calls"]:
            failing["calls"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_one_epoch", out_of_memory_at_first)
    try:
        with caplog.at_level(logging.WARNING):
            trainer.train(train, remaining_time_budget=30.0)
            batch = trainer.session.plan.batch_size
            trainer.train(train, remaining_time_budget=30.0)
            trainer.train(train, remaining_time_budget=30.0)  # three in a row: not three failures
            assert not trainer.done_training
            assert trainer.session.plan.batch_size == batch // 4
            trainer.train(train, remaining_time_budget=30.0)
        assert trainer.session.best.version >= 1 and trainer.epochs >= 1
        assert trainer.session.loader is not None and trainer.session.loader.alive_workers
        assert caplog.text.count("ran out of memory") == 3 and "half the batch" in caplog.text
        assert "training call failed" not in caplog.text
    finally:
        trainer.close()


def test_other_errors_still_count_as_failed_calls(monkeypatch):
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), FAST.replace(fast_learner=False))

    def broken(*args, **kwargs):
        raise RuntimeError("not a memory problem")

    monkeypatch.setattr(trainer_module, "train_one_epoch", broken)
    try:
        for _ in range(3):
            trainer.train(train, remaining_time_budget=30.0)
        assert trainer.done_training
    finally:
        trainer.close()
