"""Warm-up, plateau drop and learning-rate restore of the scheduled SGD."""

import pytest
from torch import nn

from autoclint.config import ModelConfig
from autoclint.optim import LRSchedule, make_sgd


def _schedule(warmup_epochs=2, patience=3, factor=0.1, steps_per_epoch=4):
    optimizer = make_sgd(nn.Linear(2, 2), 0.1, ModelConfig())
    return LRSchedule(optimizer, steps_per_epoch, warmup_epochs, patience, factor)


def test_sgd_uses_nesterov_momentum_and_weight_decay():
    group = make_sgd(nn.Linear(2, 2), 0.1, ModelConfig()).param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 2.5e-4)


def test_warmup_rises_linearly_to_the_initial_rate():
    schedule = _schedule(warmup_epochs=2, steps_per_epoch=4)
    rates = [schedule.lr]
    for _ in range(10):
        schedule.optimizer.step()
        schedule.step()
        rates.append(schedule.lr)
    assert rates[0] == pytest.approx(0.1 / 8)
    steps = [later - earlier for earlier, later in zip(rates[:8], rates[1:9])]
    assert steps == pytest.approx([steps[0]] * 8) and steps[0] > 0
    assert rates[8:] == pytest.approx([0.1] * 3)
    assert not schedule.warming_up


def test_plateau_drops_after_patience_flat_epochs_and_restore_resets():
    schedule = _schedule(warmup_epochs=0, patience=3, factor=0.1)
    schedule.end_epoch(1.0)
    for _ in range(2):
        schedule.end_epoch(1.0)
    assert schedule.lr == pytest.approx(0.1)
    schedule.end_epoch(1.0)
    assert schedule.lr == pytest.approx(0.01)
    schedule.restore_initial_lr()
    assert schedule.lr == pytest.approx(0.1)
    schedule.optimizer.step()
    schedule.step()
    assert schedule.lr == pytest.approx(0.1)  # no new warm-up


def test_loss_going_down_keeps_the_rate():
    schedule = _schedule(warmup_epochs=0, patience=2)
    for loss in [1.0, 0.9, 0.8, 0.7, 0.6]:
        schedule.end_epoch(loss)
    assert schedule.lr == pytest.approx(0.1)
