"""The training loop as plain functions: one step learns, an epoch stops before its deadline, steps are timed."""

import math

import pytest
import torch

import autoclint.loop as loop_module
from autoclint.budget import Budget, Kind
from autoclint.config import ModelConfig
from autoclint.hardware import Precision, ThreadTuner
from autoclint.loop import train_one_epoch, train_step
from autoclint.nn import make_loss
from autoclint.optim import LRSchedule, make_sgd


class FixedBatches:
    """The same uint8 batch every time: class 0 dark images, class 1 bright ones."""

    def __init__(self, count=16):
        labels = torch.arange(count) % 2
        self.examples = (labels[:, None, None, None] * 200 + 20).expand(count, 3, 8, 8).to(torch.uint8).contiguous()
        self.labels = torch.nn.functional.one_hot(labels, 2).float()
        self.calls = 0

    def next_batch(self):
        self.calls += 1
        return self.examples, self.labels


class SteppingClock:
    """A clock that moves only when a (patched) training step advances it."""

    def __init__(self):
        self.time = 0.0

    def __call__(self):
        return self.time


def tiny_parts():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    optimizer = make_sgd(net, 0.1, ModelConfig())
    return net, make_loss(False), optimizer, LRSchedule(optimizer, steps_per_epoch=5, warmup_epochs=0)


@pytest.mark.parametrize("precision", [
    Precision(torch.device("cpu")),
    Precision(torch.device("cpu"), torch.bfloat16, channels_last=True),  # the CUDA settings, on the CPU
], ids=["fp32", "bf16-channels-last"])
def test_train_step_lowers_the_loss(precision):
    torch.manual_seed(0)
    net, loss_fn, optimizer, schedule = tiny_parts()
    batches = FixedBatches()
    losses = [float(train_step(net, loss_fn, optimizer, schedule, *batches.next_batch(), precision))
              for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_an_epoch_stops_before_a_step_that_would_end_past_its_deadline(monkeypatch):
    clock = SteppingClock()
    original = loop_module.train_step

    def step_taking_a_second(*args):
        clock.time += 1.0
        return original(*args)

    monkeypatch.setattr(loop_module, "train_step", step_taking_a_second)
    net, loss_fn, optimizer, schedule = tiny_parts()
    budget = Budget(safety_margin_s=0.0, duration_margin=1.5, now=clock)
    batches = FixedBatches()
    result = train_one_epoch(net, loss_fn, optimizer, schedule, batches, Precision(torch.device("cpu")),
                             steps=50, budget=budget, stop_at=10.0, clock=clock)
    # steps planned at 1.5 s: the step starting at 8 s would end at 9.5 s, the one at 9 s past 10
    assert result.steps == 9 and clock.time <= 10.0
    assert budget.measured(Kind.STEP) == pytest.approx(1.0)
    assert budget.count(Kind.STEP) == 8  # the very first step of a run (kernel set-up) is not a measure


def test_an_unbounded_epoch_runs_all_its_steps_and_reports_the_mean_loss():
    net, loss_fn, optimizer, schedule = tiny_parts()
    budget = Budget(safety_margin_s=0.0, duration_margin=1.5)
    result = train_one_epoch(net, loss_fn, optimizer, schedule, FixedBatches(), Precision(torch.device("cpu")),
                             steps=7, budget=budget, stop_at=math.inf)
    assert result.steps == 7 and math.isfinite(result.mean_loss) and result.mean_loss > 0


def test_the_thread_tuner_sees_every_step(monkeypatch):
    seen = []
    tuner = ThreadTuner(1)
    monkeypatch.setattr(tuner, "observe", lambda seconds: seen.append(seconds))
    net, loss_fn, optimizer, schedule = tiny_parts()
    train_one_epoch(net, loss_fn, optimizer, schedule, FixedBatches(), Precision(torch.device("cpu")), steps=4,
                    budget=Budget(0.0, 1.0), stop_at=math.inf, tuner=tuner)
    assert len(seen) == 4 and all(seconds >= 0 for seconds in seen)


class SlowBatches(FixedBatches):
    """Batches that keep the loop waiting `wait_s` each (on the test's clock)."""

    def __init__(self, clock, wait_s):
        super().__init__()
        self.clock, self.wait_s = clock, wait_s

    def next_batch(self):
        self.clock.time += self.wait_s
        return super().next_batch()


def test_an_epoch_reports_the_time_spent_waiting_for_batches(monkeypatch):
    clock = SteppingClock()
    original = loop_module.train_step

    def step_taking_a_second(*args):
        clock.time += 1.0
        return original(*args)

    monkeypatch.setattr(loop_module, "train_step", step_taking_a_second)
    net, loss_fn, optimizer, schedule = tiny_parts()
    result = train_one_epoch(net, loss_fn, optimizer, schedule, SlowBatches(clock, 0.25),
                             Precision(torch.device("cpu")), steps=4, budget=Budget(0.0, 1.0),
                             stop_at=math.inf, clock=clock)
    assert result.data_wait_s == pytest.approx(1.0)  # 4 batches waited 0.25 s each
    assert result.seconds == pytest.approx(5.0) and result.data_wait_share == pytest.approx(0.2)


def test_batches_that_are_ready_cost_no_waiting_time(monkeypatch):
    """Steps take a second each on the test's clock, batches none: none of the step time counts as waiting."""
    clock = SteppingClock()

    def step_taking_a_second(*args):
        clock.time += 1.0
        return torch.zeros(())

    monkeypatch.setattr(loop_module, "train_step", step_taking_a_second)
    net, loss_fn, optimizer, schedule = tiny_parts()
    result = train_one_epoch(net, loss_fn, optimizer, schedule, FixedBatches(),
                             Precision(torch.device("cpu")), steps=3, budget=Budget(0.0, 1.0),
                             stop_at=math.inf, clock=clock)
    assert result.steps == 3 and result.seconds == pytest.approx(3.0)
    assert result.data_wait_s == 0.0 and result.data_wait_share == 0.0
